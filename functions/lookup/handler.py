"""Lookup: which segments a visitor is in, for the partner the authorizer identified.

One GetItem per visitor (one BatchGetItem per 100), names and freshness from the
catalog of the published build held in the warm Lambda. A partner only ever sees
segments whose `destinations` name it. The routes, validation and OpenAPI document are
in api.py.

Cold start: importing this module sets up only what every request needs (settings,
logging, metrics, the stores). A bidder's well-formed `GET /v1/users/{uid}/segments` is
answered by the fast path (fast_path.py) without ever building the API; the API --
pydantic and Powertools' validation layer, ~100 ms of imports -- is built on the first
request that needs it, and each model only when a route first uses it. Where Lambda
initialises ahead of requests (provisioned concurrency, SnapStart) the API is built
during init instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from functions.core.config import Settings, initialised_ahead_of_requests
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.catalog import CatalogStore
from functions.core.storage.membership import MembershipStore
from functions.lookup import fast_path
from functions.lookup.catalog import CatalogCache

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = Settings.from_env(require=("membership_table", "catalog_table", "bucket"))
logger = Logger(service="lookup")
metrics = Metrics(service="lookup")
# No Powertools Tracer: the X-Ray SDK import costs ~100 ms of every cold start inside a
# bidder's time budget. Lambda's active tracing still records each invocation.
membership = MembershipStore(settings.membership_table)
catalogs = CatalogCache(
    CatalogStore(settings.catalog_table, same_client_as=membership),
    SegmentsBucket(settings.bucket),
    settings.catalog_refresh_seconds,
)
_api: APIGatewayRestResolver | None = None


def api() -> APIGatewayRestResolver:
    global _api
    if _api is None:
        from functions.lookup.api import create_api

        _api = create_api(membership, catalogs, settings=settings, logger=logger, metrics=metrics)
    return _api


if initialised_ahead_of_requests():
    api()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = fast_path.answer(event, membership, catalogs, settings=settings, metrics=metrics)
    return answer if answer is not None else api().resolve(event, context)
