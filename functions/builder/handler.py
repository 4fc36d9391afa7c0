"""Builder: evaluates every segment definition over the events table on a schedule and
publishes the build (see build.py). Triggered by an EventBridge scheduled event, whose
`time` is the build's evaluation time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.builder.build import Builder, parse_time
from functions.core.config import Settings
from functions.core.segments import DefinitionErrors
from functions.core.storage import EventStore, MembershipStore, SegmentsBucket

settings = Settings.from_env(require=("events_table", "membership_table", "bucket"))
logger = Logger(service="builder")
metrics = Metrics(service="builder")
tracer = Tracer(service="builder")

builder = Builder(
    EventStore(settings.events_table), MembershipStore(settings.membership_table), SegmentsBucket(settings.bucket)
)


def evaluation_time(event: dict[str, Any]) -> datetime:
    """The scheduled event's `time`; an `at` field (manual runs) wins over it."""
    if "at" in event:
        return parse_time(str(event["at"]))
    if "time" in event:
        scheduled = EventBridgeModel.model_validate(event)
        return scheduled.time.astimezone(UTC).replace(microsecond=0)
    return datetime.now(UTC).replace(microsecond=0)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        manifest = builder.build(evaluation_time(event), int(event.get("shards", settings.build_shards)))
    except DefinitionErrors as errors:
        logger.error("segment definitions are invalid; the published build is unchanged", problems=str(errors))
        metrics.add_metric(name="builds_refused", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="builds_published", unit=MetricUnit.Count, value=1 if manifest.get("published") else 0)
    metrics.add_metric(name="membership_changes", unit=MetricUnit.Count, value=manifest.get("membership_changes", 0))
    summary = {s["id"]: s["size"] for s in manifest["segments"]}
    logger.info("build finished", build_id=manifest["build_id"], sizes=summary)
    return {"build_id": manifest["build_id"], "evaluated_at": manifest["evaluated_at"], "sizes": summary}
