"""A segment build in four stages, the same in AWS (a Step Functions state machine:
plan -> Map over shards -> publish -> export, one Lambda invocation per stage) and in
`dmp build` (all four in one process, below):

1. `plan.py`: validate the definitions, fix the build's id and time, save the plan.
2. `shard.py`: scan one parallel-scan segment and evaluate its visitors.
3. `publish.py`: manifest, membership, `latest.json` last, then the catalog item.
4. `export.py`: each destination partner's full and delta files, its `latest.json` last.

The stores each stage needs are Protocols (`stores.py`), passed in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from functions.builder.export import export
from functions.builder.plan import (
    DEFAULT_DUE_HORIZON_SECONDS,
    BuildPlan,
    build_id_for,
    evaluation_moment,
    is_published,
    plan_build,
)
from functions.builder.publish import PublishResult, publish, republish
from functions.builder.shard import ShardResult, run_shard
from functions.builder.stores import BuildStores
from functions.core.erasure import erase_pending
from functions.core.times import iso


def start(
    stores: BuildStores,
    evaluated_at: datetime,
    shards: int,
    *,
    retention_seconds: int,
    due_horizon_seconds: int = DEFAULT_DUE_HORIZON_SECONDS,
) -> BuildPlan | PublishResult:
    """The plan of the build at `evaluated_at`; or, when that time was published before
    (the same scheduled event delivered again), that build republished: its catalog item
    is rewritten, so an item its publish failed to write is healed.

    Either way the erasures that opt-outs left pending are finished first."""
    if stores.erasure is not None:
        now = datetime.now(UTC).replace(microsecond=0)
        erase_pending(
            at=iso(now), at_s=int(now.timestamp()), retention_seconds=retention_seconds, stores=stores.erasure
        )
    moment = evaluation_moment(evaluated_at)
    build_id = build_id_for(moment)
    if is_published(stores.bucket, build_id):
        return republish(build_id, stores)
    return plan_build(stores.bucket, moment, shards, due_horizon_seconds=due_horizon_seconds)


def build(
    stores: BuildStores,
    evaluated_at: datetime,
    shards: int = 1,
    *,
    retention_seconds: int,
    due_horizon_seconds: int = DEFAULT_DUE_HORIZON_SECONDS,
    parallel: int = 4,
    report: bool = True,
) -> PublishResult:
    """Plan, shards on a thread pool, publish, export: what `dmp build` runs. A build
    found published already is exported again, which finishes an export cut short.
    (`report=False` leaves the report out: only for the benchmark measuring its cost.)"""
    plan = start(
        stores, evaluated_at, shards, retention_seconds=retention_seconds, due_horizon_seconds=due_horizon_seconds
    )
    if isinstance(plan, PublishResult):
        return _exported(plan, stores)
    suppressed = stores.suppressed_visitors()

    def shard(number: int) -> ShardResult:
        return run_shard(plan, number, events=stores.events, bucket=stores.bucket, suppressed=suppressed, report=report)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, shards))) as pool:
        results = list(pool.map(shard, range(shards)))
    return _exported(publish(plan, stores, results, report=report), stores)


def _exported(result: PublishResult, stores: BuildStores) -> PublishResult:
    if not result.published:
        return result
    return replace(result, exports=export(result.manifest.build_id, stores))
