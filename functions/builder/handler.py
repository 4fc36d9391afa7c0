"""Builder: evaluates every segment definition over the events table and publishes the
build (see build.py).

In AWS a Step Functions state machine, started by the schedule, calls this function
once per stage — `{"stage": "plan", "time": ...}`, then `{"stage": "shard", "build_id",
"shard"}` for every shard in parallel, then `{"stage": "publish", "build_id"}`. An event
without a stage (a scheduled event sent straight here, or a manual `{"at": ...}`) runs
all three stages in this invocation, as `dmp build` does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.builder.build import Builder, build_id_for, build_time_now, parse_time
from functions.core.config import Settings
from functions.core.segments import DefinitionErrors
from functions.core.storage import CatalogStore, EventStore, MembershipStore, SegmentsBucket

settings = Settings.from_env(require=("events_table", "membership_table", "catalog_table", "bucket"))
logger = Logger(service="builder")
metrics = Metrics(service="builder")
tracer = Tracer(service="builder")

builder = Builder(
    EventStore(settings.events_table),
    MembershipStore(settings.membership_table),
    SegmentsBucket(settings.bucket),
    CatalogStore(settings.catalog_table),
)


def evaluation_time(event: dict[str, Any]) -> datetime:
    """The scheduled event's `time`; an `at` field (manual runs) wins over it."""
    if "at" in event:
        return parse_time(str(event["at"]))
    if "time" in event:
        if "detail-type" in event:
            return EventBridgeModel.model_validate(event).time.astimezone(UTC).replace(microsecond=0)
        return parse_time(str(event["time"]))
    return build_time_now()


def _count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _plan(event: dict[str, Any]) -> dict[str, Any]:
    moment = evaluation_time(event)
    build_id = build_id_for(moment)
    if builder.is_published(build_id):
        # Its catalog item is rewritten all the same, in case the publish failed after latest.json.
        builder.publish_catalog(build_id)
        logger.info("build already published; nothing to do", build_id=build_id)
        _count("builds_repeated")
        return {"build_id": build_id, "skip": True, "shards": []}
    plan = builder.plan(moment, int(event.get("shards", settings.build_shards)))
    _count("builds_planned")
    return {"build_id": plan.build_id, "skip": False, "shards": list(range(plan.shards))}


def _shard(event: dict[str, Any]) -> dict[str, Any]:
    result = builder.run_shard(builder.load_plan(str(event["build_id"])), int(event["shard"]))
    _count("shard_items_scanned", result.items_scanned)
    return {"build_id": event["build_id"], "shard": result.shard, "visitors": result.visitors_scanned}


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    _count("builds_published", 1 if manifest.get("published") else 0)
    _count("membership_changes", manifest.get("membership_changes", 0))
    sizes = {s["id"]: s["size"] for s in manifest["segments"]}
    logger.info("build finished", build_id=manifest["build_id"], sizes=sizes, published=manifest.get("published"))
    return {"build_id": manifest["build_id"], "evaluated_at": manifest["evaluated_at"], "sizes": sizes}


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    stage = event.get("stage")
    try:
        if stage == "plan":
            return _plan(event)
        if stage == "shard":
            return _shard(event)
        if stage == "publish":
            return _summary(builder.publish(builder.load_plan(str(event["build_id"]))))
        if stage is not None:
            raise ValueError(f"unknown build stage {stage!r}")
        return _summary(builder.build(evaluation_time(event), int(event.get("shards", settings.build_shards))))
    except DefinitionErrors as errors:
        logger.error("segment definitions are invalid; the published build is unchanged", problems=str(errors))
        _count("builds_refused")
        raise
    except Exception:
        _count("build_stage_failed")
        raise
