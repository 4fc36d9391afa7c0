"""Lookup: which segments a visitor is in, for the partner the authorizer identified.

One GetItem per visitor (one BatchGetItem per 100), names and freshness from the
catalog of the published build held in the warm Lambda. A partner only ever sees
segments whose `destinations` name it."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.core.hits import is_visitor_id
from functions.core.storage import MembershipStore, SegmentsBucket
from functions.lookup.catalog import Catalog, CatalogCache
from functions.lookup.models import (
    CatalogAnswer,
    CatalogEntry,
    LookupAnswer,
    LookupRequest,
    LookupResult,
    OpenRtbAnswer,
    OpenRtbData,
    OpenRtbSegment,
    OpenRtbUser,
    SegmentRef,
    UserSegments,
)

settings = Settings.from_env(require=("membership_table", "bucket"))
logger = Logger(service="lookup")
metrics = Metrics(service="lookup")
# No Powertools Tracer: the X-Ray SDK import costs ~100 ms of every cold start inside a
# bidder's time budget. Lambda's active tracing still records each invocation.
membership = MembershipStore(settings.membership_table)
catalogs = CatalogCache(SegmentsBucket(settings.bucket), settings.catalog_refresh_seconds)
CACHE_CONTROL = f"private, max-age={min(settings.catalog_refresh_seconds, 300)}"

# An answer that breaks its own schema is our bug: a 500, never a 400 blaming the caller.
app = APIGatewayRestResolver(
    enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR
)


class BadLookup(ValueError):
    pass


def _error(status: int, code: str, message: str) -> Response[Any]:
    metrics.add_metric(name=f"refused_{code}", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=status, content_type="application/json", body={"error": {"code": code, "message": message}}
    )


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p not in ('body', 'query', 'path'))}: {e['msg']}"
        for e in error.errors()
    )
    return _error(400, "invalid_request", problems or "invalid request")


@app.exception_handler(BadLookup)
def _bad_lookup(error: BadLookup) -> Response:
    return _error(400, "invalid_request", str(error))


@app.exception_handler(UnauthorizedError)
def _unauthorized(error: UnauthorizedError) -> Response:
    return _error(401, "unauthorized", str(error.msg))


def _partner() -> str:
    context = app.current_event.raw_event.get("requestContext", {}).get("authorizer") or {}
    partner = context.get("partner")
    if not partner:
        raise UnauthorizedError("no partner in the authorizer context")
    return str(partner)


def _refs(catalog: Catalog, partner: str, segment_ids: list[str]) -> list[SegmentRef]:
    return [SegmentRef(id=s.id, name=s.name) for s in catalog.visible(partner, segment_ids)]


def _answer(model: Any, route: str) -> Response[Any]:
    metrics.add_metric(name=f"answers_{route}", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=200,
        content_type="application/json",
        body=model.model_dump(mode="json"),
        headers={"Cache-Control": CACHE_CONTROL},
    )


@app.get("/v1/users/<uid>/segments", summary="Segments of one visitor", responses={200: {"description": "ok"}})
def user_segments(
    uid: Annotated[str, Path(description="visitor id")],
    format: Annotated[str, Query(pattern="^(json|openrtb)$", description="answer format")] = "json",
) -> Response[UserSegments | OpenRtbAnswer]:
    partner = _partner()
    if not is_visitor_id(uid):
        raise BadLookup("uid must match [A-Za-z0-9_-]{8,64}")
    catalog = catalogs.get()
    refs = _refs(catalog, partner, membership.get(uid))
    if format == "openrtb":
        data = OpenRtbData(
            id=settings.data_provider_id,
            name=settings.data_provider_name,
            segment=[OpenRtbSegment(id=r.id, name=r.name) for r in refs],
            ext={"segtax": settings.segtax} if settings.segtax is not None else None,
        )
        return _answer(
            OpenRtbAnswer(user=OpenRtbUser(data=[data]), build_id=catalog.build_id, evaluated_at=catalog.evaluated_at),
            "user_openrtb",
        )
    return _answer(
        UserSegments(uid=uid, segments=refs, build_id=catalog.build_id, evaluated_at=catalog.evaluated_at), "user"
    )


@app.post("/v1/lookup", summary="Segments of up to 100 visitors")
def lookup(request: LookupRequest) -> Response[LookupAnswer]:
    partner = _partner()
    catalog = catalogs.get()
    found = membership.get_many(request.uids)
    results = [LookupResult(uid=uid, segments=_refs(catalog, partner, found.get(uid, []))) for uid in request.uids]
    return _answer(LookupAnswer(build_id=catalog.build_id, evaluated_at=catalog.evaluated_at, results=results), "batch")


@app.get("/v1/segments", summary="Segments this partner may see")
def segments() -> Response[CatalogAnswer]:
    partner = _partner()
    catalog = catalogs.get()
    entries = [
        CatalogEntry(
            id=s.id,
            name=s.name,
            description=s.description,
            size=s.size,
            build_id=catalog.build_id or "",
            updated_at=catalog.evaluated_at or "",
        )
        for s in catalog.visible(partner)
    ]
    return _answer(CatalogAnswer(segments=entries), "catalog")


_openapi_document: dict[str, Any] | None = None


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[dict[str, Any]]:
    global _openapi_document
    if _openapi_document is None:
        _openapi_document = json.loads(app.get_openapi_json_schema(title="DMP lookup API", version="1.0.0"))
    metrics.add_metric(name="answers_openapi", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=200,
        content_type="application/json",
        body=_openapi_document,
        headers={"Cache-Control": "public, max-age=300"},
    )


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
