"""Importer: a second- or third-party file dropped under `imports/<source>/` becomes the
visitors' traits (see logic.py).

Invoked by EventBridge: S3's "Object Created" event of the file, or the importer's own
"Import Continued" event when a large file goes on in a new invocation. A file that
cannot be imported is reported and the invocation succeeds; anything else that fails
raises, so Lambda retries the event and then dead-letters it."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from functions.core.config import Settings
from functions.core.storage.events import EventStore
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.imports import ImportBucket, ImportContinuations
from functions.core.storage.suppression import SuppressionStore
from functions.importer.logic import ImportRequest, ImportStores, run_import

settings = Settings.from_env(require=("events_table", "suppression_table", "bucket"))
logger = Logger(service="importer")
metrics = Metrics(service="importer")
events = EventStore(settings.events_table)
stores = ImportStores(
    objects=ImportBucket(settings.bucket),
    traits=events,
    suppression=SuppressionStore(settings.suppression_table, same_client_as=events),
    continuations=ImportContinuations(),
    trait_item=EventStore.trait_item,
    id_map=IdMapStore(settings.id_map_table, same_client_as=events) if settings.id_map_table else None,
)


class _Bucket(BaseModel):
    name: str


class _Object(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key: str
    etag: str | None = Field(default=None, alias="eTag")


class ImportDetail(BaseModel):
    """The `detail` of S3's EventBridge event (and of the importer's continuation)."""

    bucket: _Bucket
    object: _Object


class ImportEvent(BaseModel):
    detail_type: str = Field(alias="detail-type")
    detail: ImportDetail

    def request(self) -> ImportRequest:
        return ImportRequest(self.detail.bucket.name, self.detail.object.key, self.detail.object.etag or None)


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ImportEvent.model_validate(event).request()
    outcome = run_import(request, stores, remaining_ms=context.get_remaining_time_in_millis, now_s=int(time.time()))
    metrics.add_metric(name=f"imports_{outcome.outcome.replace(' ', '_')}", unit=MetricUnit.Count, value=1)
    if outcome.outcome == "done" and outcome.tally is not None:
        for name in ("rows", "stored", "unresolved", "suppressed", "rejected_rows"):
            metrics.add_metric(name=f"import_{name}", unit=MetricUnit.Count, value=getattr(outcome.tally, name))
    answer = outcome.to_json()
    logger.info("import", **answer)
    return answer
