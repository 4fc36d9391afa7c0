"""Lookup: which segments a visitor is in, for the partner the authorizer identified.

One GetItem per visitor (one BatchGetItem per 100), names and freshness from the
catalog of the published build held in the warm Lambda; a lookup by the partner's own
id adds one read of the ID map before it. A partner only ever sees segments whose
`destinations` name it. The routes, validation and OpenAPI document are in api.py.

Cold start: importing this module sets up only what every request needs (settings,
logging, metrics, the stores). A bidder's well-formed `GET /v1/users/{uid}/segments` is
answered by the fast path (fast_path.py) without ever building the API; the API --
pydantic and Powertools' validation layer, ~100 ms of imports -- is built on the first
request that needs it, and each model only when a route first uses it. Where Lambda
initialises ahead of requests (provisioned concurrency, SnapStart) the API is built
during init instead. No S3 client either: the catalog comes from DynamoDB, and only
`GET /v1/exports/latest` (or a catalog too large for its item) creates one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from functions.core.config import Settings, initialised_ahead_of_requests
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.catalog import CatalogStore
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.membership import MembershipStore
from functions.core.storage.partner_exports import PartnerExports
from functions.lookup import fast_path
from functions.lookup.catalog import CatalogCache
from functions.lookup.visitors import Visitors

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = Settings.from_env(require=("membership_table", "catalog_table", "id_map_table", "bucket"))
logger = Logger(service="lookup")
metrics = Metrics(service="lookup")
# No Powertools Tracer: the X-Ray SDK import costs ~100 ms of every cold start inside a
# bidder's time budget. Lambda's active tracing still records each invocation.
# One DynamoDB client for every table. S3 clients only on first use: the catalog's when
# its item cannot answer, the exports' for `GET /v1/exports/latest` (it signs URLs).
membership = MembershipStore(settings.membership_table)
id_map = IdMapStore(settings.id_map_table, same_client_as=membership)
visitors = Visitors(membership, id_map)
bucket = SegmentsBucket(settings.bucket)
exports = PartnerExports(settings.bucket)
catalogs = CatalogCache(
    CatalogStore(settings.catalog_table, same_client_as=membership), bucket, settings.catalog_refresh_seconds
)
_api: APIGatewayRestResolver | None = None


def api() -> APIGatewayRestResolver:
    global _api
    if _api is None:
        from functions.lookup.api import create_api

        _api = create_api(
            membership, catalogs, id_map=id_map, exports=exports, settings=settings, logger=logger, metrics=metrics
        )
    return _api


if initialised_ahead_of_requests():
    api()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = fast_path.answer(event, visitors, catalogs, settings=settings, metrics=metrics)
    return answer if answer is not None else api().resolve(event, context)
