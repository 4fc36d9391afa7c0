"""Builder: evaluates every segment definition over the events table and publishes the
build (see build.py).

In AWS a Step Functions state machine, started by the schedule, calls this function
once per stage (stages.py): plan, then every shard in parallel, then publish, then
export. An event without a stage runs all four in this invocation, as `dmp build` does."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.builder.build import build, start
from functions.builder.export import PartnerExport, export
from functions.builder.plan import build_time_now, load_plan
from functions.builder.publish import PublishResult, publish
from functions.builder.shard import run_shard
from functions.builder.stages import (
    BuildAnswer,
    ExportAnswer,
    ExportStage,
    PlanAnswer,
    PlanStage,
    ShardAnswer,
    ShardStage,
    StageEvent,
)
from functions.builder.stores import BuildStores
from functions.core.config import Settings
from functions.core.segments import DefinitionErrors
from functions.core.times import parse_time

settings = Settings.from_env(require=("events_table", "membership_table", "catalog_table", "bucket"))
logger = Logger(service="builder")
metrics = Metrics(service="builder")
tracer = Tracer(service="builder")
stores = BuildStores.connect(
    events_table=settings.events_table,
    membership_table=settings.membership_table,
    bucket=settings.bucket,
    catalog_table=settings.catalog_table,
    suppression_table=settings.suppression_table,
    id_map_table=settings.id_map_table,
    due_table=settings.due_table,
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


def _plan(stage: PlanStage) -> PlanAnswer:
    plan = start(
        stores,
        parse_time(stage.time),
        stage.shards or settings.build_shards,
        retention_seconds=settings.retention_seconds,
        due_horizon_seconds=settings.due_horizon_seconds,
    )
    if isinstance(plan, PublishResult):
        logger.info("build already published; nothing to do", build_id=plan.manifest.build_id)
        _count("builds_repeated")
        return PlanAnswer(build_id=plan.manifest.build_id, skip=True, shards=[])
    _count("builds_planned")
    return PlanAnswer(build_id=plan.build_id, skip=False, shards=list(range(plan.shards)))


def _shard(stage: ShardStage) -> ShardAnswer:
    plan = load_plan(stores.bucket, stage.build_id)
    result = run_shard(
        plan, stage.shard, events=stores.events, bucket=stores.bucket, suppressed=stores.suppressed_visitors()
    )
    _count("shard_items_scanned", result.items_scanned)
    return ShardAnswer(build_id=stage.build_id, shard=result.shard, visitors=result.visitors_scanned)


def _summary(result: PublishResult) -> BuildAnswer:
    manifest = result.manifest
    _count("builds_published", 1 if result.published else 0)
    _count("membership_changes", result.membership_changes or 0)
    sizes = {s.id: s.size for s in manifest.segments}
    if result.published:
        # The published build's size, graphed on the dashboard (infra/monitoring.py).
        _count("build_visitors_scanned", manifest.visitors_scanned)
        _count("build_memberships", sum(sizes.values()))
    logger.info("build finished", build_id=manifest.build_id, sizes=sizes, published=result.published)
    return BuildAnswer(
        build_id=manifest.build_id,
        evaluated_at=manifest.evaluated_at,
        sizes=sizes,
        exports=_export_rows(result.exports),
    )


def _export(stage: ExportStage) -> ExportAnswer:
    return ExportAnswer(build_id=stage.build_id, exports=_export_rows(export(stage.build_id, stores)))


def _export_rows(exports: Mapping[str, PartnerExport]) -> dict[str, dict[str, int]]:
    written = [e for e in exports.values() if e.written]
    _count("exports_written", len(written))
    if written:
        logger.info("exports written", exports={e.partner: e.rows() for e in written})
    return {partner: e.rows() for partner, e in exports.items()}


def run(event: dict[str, Any]) -> PlanAnswer | ShardAnswer | BuildAnswer | ExportAnswer:
    if "stage" not in event:
        shards = int(event.get("shards", settings.build_shards))
        return _summary(
            build(
                stores,
                evaluation_time(event),
                shards,
                retention_seconds=settings.retention_seconds,
                due_horizon_seconds=settings.due_horizon_seconds,
            )
        )
    stage = StageEvent.validate_python(event)
    if isinstance(stage, PlanStage):
        return _plan(stage)
    if isinstance(stage, ShardStage):
        return _shard(stage)
    if isinstance(stage, ExportStage):
        return _export(stage)
    return _summary(publish(load_plan(stores.bucket, stage.build_id), stores))


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return run(event).model_dump()
    except DefinitionErrors as errors:
        logger.error("segment definitions are invalid; the published build is unchanged", problems=str(errors))
        _count("builds_refused")
        raise
    except Exception:
        _count("build_stage_failed")
        raise
