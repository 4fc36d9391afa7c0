"""Real-time membership benchmarks (DESIGN.md, "Freshness"), on moto:

- stream_reads_per_hit: DynamoDB read requests the evaluator makes per hit, for a stream
  batch of 100 hits of 100 visitors (catalog, suppression and membership read once per
  batch, one Query per visitor): about 1.
- stream_rebuild_membership_writes: membership write requests of the build that follows
  the streamed hits: 0, the evaluator already wrote each change.
- sweep_overhead_ratio: DynamoDB requests of a sweep run that re-evaluates K = 100 visitors
  due in one minute, over the requests of those re-evaluations alone (the sweep's
  overhead: its checkpoint, one Query per bucket of the minute); near 1 when many are due
  at once.
- stream_freshness_seconds: on `dmp serve` (its stream poller, `stream_membership()`, at
  its default 0.5 s), after `segments push segments/`, `partners add demo-dsp` and one
  `build --local`, a pixel hit through the local gateway of a new visitor with London's
  CloudFront-Viewer headers; the partner's lookup is polled every 50 ms until it shows
  `new-uk-visitors`. The median, over 5 hits (a new visitor each), of seconds from sending
  the hit to the lookup showing it (tests/bench/stream_local.py). Aim <= 5.
- sweep_cost_ratio: what AWS bills for the sweep runs between two builds / for a full
  build, in dollars (tests/bench/aws_prices.py, the model of bench_cost.py), for 1 M events
  (100 k visitors x 10 events) of which 1 % of visitors, D = 1,000, have their membership
  change with no new data between two builds (cdk.json's `build_schedule`, rate(1 hour):
  R = 60 sweep runs, one a minute, meanwhile). Aim <= 0.05. An item holds the next
  `STEPS` changes, so a change needs the sweep only when those it holds have passed: how
  many visitors the sweep re-evaluates per change (swept_per_change) is measured over the
  whole future, with no new data, of the 100 visitors of the stream batch above (the
  generated traffic with the demo's segments): every sweep run at a minute one of them is
  filed under, until none is. Measured on moto at a smaller size and extrapolated
  linearly:

    sweep(D) = R x idle run + B x batch + D x swept_per_change x swept visitor
    - idle run: a sweep of one minute with nobody due (the mean of `IDLE_RUNS`): its
      checkpoint's GetItem (strongly consistent: 1 read unit) and PutItem (1 write unit),
      one Query per bucket of the minute (`DUE_BUCKETS`, half a read unit each, empty),
      one invocation.
    - swept visitor: over the sweep runs of both populations (here and in
      sweep_cost_ratio_staggered), (their usage - runs x idle run - batches x batch) /
      visitors re-evaluated. The usage is the read and write units of every request
      (`UsageMeter`, common.py: from each request and the sizes of the items it reads and
      writes; a read of a missing item still costs one), S3 requests, and CPU time.
    - batch: what an evaluation batch (up to `EVALUATE_BATCH` visitors) reads whatever its
      size: the catalog's GetItem. B = R x ceil(D x swept_per_change / R / EVALUATE_BATCH):
      the swept visitors spread evenly over the runs.
    - Lambda: R invocations, each billed (per started ms) for an idle run's CPU time and
      its share of the swept visitors', at the sweep's memory (infra/evaluator.py).

    build(1 M events) = q(N1) + (q(N2) - q(N1)) x (1 M - N1) / (N2 - N1) for every quantity
    q of a rebuild measured at N1 = `BUILD_VISITORS`[0] x 10 and N2 = `BUILD_VISITORS`[1] x 10
    events: its read and write units (mostly the parallel scan's pages: their bytes over
    4 KB, halved), its S3 requests by operation, and the CPU time of each of its stages
    (the least of `REBUILDS` rebuilds), run one by one through the builder's handler as
    the state machine runs them (plan, cdk.json's `build_shards` shards, publish, export).
    Priced as one invocation a stage at the builder's memory (infra/builder.py), the state
    machine's transitions, S3's PUT and GET classes, and the units. The rebuild comes two
    minutes after a first build, so it has next to no changes of its own (kept); to be
    fair it is charged the membership writes the sweep made for changed segments
    (`membership_change_usd`: one write unit and half a read unit each), which a build
    without the sweep would make. The sweep keeps all its own writes: a visitor's item
    rewritten, and its next due entry.

  CPU time is the process's, less moto's own work in answering requests (in AWS, DynamoDB's
  and S3's), on both sides; neither side counts the wait for DynamoDB's answers, which
  Lambda bills too (a sweep waits on one Query per visitor, a build on 1 MB pages).
- sweep_cost_ratio_staggered: the same for 100 visitors whose membership changes six
  times on six different days (`staggered_history`), more than an item holds (`STEPS`,
  functions/evaluator/logic.py): a sweep for every six changes.
- sweep_request_ratio (and _staggered): the same two sides counted in DynamoDB requests
  (the measure sweep_cost_ratio used before it was priced; DynamoDB bills units, not
  requests).

Supporting figures: the two sides, sweep_cost_usd (and its _lambda_, _dynamodb_, _s3_) and
sweep_cost_build_usd (and its _lambda_, _stepfunctions_, _dynamodb_, _s3_, _changes_), each
for the staggered visitors too; sweep_swept_per_change (and _staggered); what the sweep
pays per visitor it re-evaluates (sweep_cost_per_swept_visitor_usd, its batch's share
included; sweep_swept_visitor_read_units, sweep_swept_visitor_write_units, and
sweep_segment_change_fraction, the share of swept visitors whose stored segments changed);
an idle run (sweep_idle_run_usd) and a day of them (sweep_idle_usd_per_day).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.core.times import DAY_MS, DAY_SECONDS
from functions.sweep.logic import EVALUATE_BATCH
from tests.bench import aws_prices as price
from tests.bench.bench_cost import (
    dynamodb_usd,
    lambda_invocation_usd,
    membership_change_usd,
    on_lambda_seconds,
    rate_interval,
    s3_usd,
    stack_settings,
    state_transitions,
)
from tests.bench.bench_shard import NOW, NOW_MS, GeneratedEvents
from tests.bench.common import BASE_ENV, RequestCounter, Usage, UsageMeter, extrapolate, quiet_stdout
from tests.bench.stream_local import freshness_seconds
from tests.conftest import ROOT

BATCH = 100
READS = ("GetItem", "BatchGetItem", "Query", "Scan")
WRITES = ("BatchWriteItem", "PutItem", "DeleteItem", "TransactWriteItems")
EVENTS_PER_VISITOR = 10
EVENTS_1M = 1_000_000
DUE_SHARE = 0.01  # of the visitors, due between two builds
IDLE_RUNS = 10
MAX_RUNS = 1_000  # of one population's future
# The two sizes of the measured rebuilds, in visitors of EVENTS_PER_VISITOR events.
BUILD_VISITORS = (500, 2_000)
STAGES = ("plan", "shard", "publish", "export")
REBUILDS = 2


@dataclass(frozen=True)
class Measured:
    """What some runs of a function used: units and requests, and CPU seconds here."""

    usage: Usage
    seconds: float

    def __add__(self, other: Measured) -> Measured:
        return Measured(self.usage + other.usage, self.seconds + other.seconds)

    def __sub__(self, other: Measured) -> Measured:
        return Measured(self.usage - other.usage, self.seconds - other.seconds)

    def __mul__(self, factor: float) -> Measured:
        return Measured(self.usage * factor, self.seconds * factor)


@dataclass(frozen=True)
class SweepMeasurement:
    idle_run: Measured
    batch: Usage
    due_visitor: Measured  # a visitor the sweep re-evaluates
    swept_per_change: float  # visitors re-evaluated per membership change
    segment_change_fraction: float  # of the visitors re-evaluated, those whose segments changed


def run() -> dict[str, float]:
    from moto import mock_aws

    os.environ.update(BASE_ENV)
    stack = stack_settings()
    results: dict[str, float] = {}
    with mock_aws():
        from dmp.local import create_resources
        from functions.builder.build import build
        from functions.core.config import Settings
        from functions.core.hits import Geo, TrackedEvent
        from functions.core.segments import load_definitions
        from functions.core.storage.events import EventStore
        from functions.evaluator.logic import evaluate_visitors
        from functions.evaluator.stores import connect
        from tests.conftest import SEGMENTS_DIR

        target = create_resources(None, region=price.REGION)
        stores = target.build_stores()
        for definition in load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}):
            stores.bucket.put_definition(  # type: ignore[attr-defined]
                definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        events = EventStore(target.events_table)
        for item in GeneratedEvents(300, EVENTS_PER_VISITOR).scan():
            events.client.put_item(TableName=target.events_table, Item=item)
        build(stores, NOW, shards=2, retention_seconds=90 * DAY_SECONDS)

        evaluator, due = connect(Settings.from_env(dict(target.environment())))
        counter = RequestCounter()
        counter.attach(events.client)
        # A batch of hits of 100 known visitors, a minute after the build.
        hit_ms = NOW_MS + 60_000
        visitors = [f"visitor-{number:09d}" for number in range(BATCH)]
        hits = [
            TrackedEvent(
                visitor_id=v,
                event_id=f"bench:{v}",
                ts_ms=hit_ms,
                name="page_view",
                url="https://shop.example/pricing",
                geo=Geo(country="GB", region="ENG", city="London"),
            )
            for v in visitors
        ]
        events.put_many(hits, 90 * DAY_SECONDS)
        evaluator_events = evaluator.events
        assert isinstance(evaluator_events, EventStore)
        counter.attach(evaluator_events.client)
        counter.calls.clear()
        evaluate_visitors(visitors, evaluator, hit_ms + 1000)
        results["stream_reads_per_hit"] = sum(1 for c in counter.calls if c in READS) / len(hits)

        counter.attach(stores.membership.client)  # type: ignore[attr-defined]
        counter.calls.clear()
        build(stores, NOW + timedelta(minutes=2), shards=2, retention_seconds=90 * DAY_SECONDS)
        results["stream_rebuild_membership_writes"] = sum(1 for c in counter.calls if c in WRITES)

        staggered = [f"staggered-{number:03d}" for number in range(BATCH)]
        events.put_many([e for v in staggered for e in staggered_history(v, hit_ms)], 90 * DAY_SECONDS)
        evaluate_visitors(staggered, evaluator, hit_ms + 1000)

        with UsageMeter() as meter:
            meter.watch(evaluator_events.client)
            populations = {"generated": visitors, "staggered": staggered}
            sweeps = measure_sweeps(meter, evaluator, due, populations, target, after_ms=hit_ms + 1000)
            results["sweep_overhead_ratio"] = sweep_overhead_ratio(meter, evaluator, due, visitors, hit_ms)

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    shards = int(context["build_shards"])
    runs = rate_interval(context["build_schedule"]) / stack.sweep_interval
    small, large = (measure_rebuild(visitors, shards) for visitors in BUILD_VISITORS)
    sizes = (BUILD_VISITORS[0] * EVENTS_PER_VISITOR, BUILD_VISITORS[1] * EVENTS_PER_VISITOR)
    rebuild = {stage: extrapolate(small[stage], large[stage], measured=sizes, to=EVENTS_1M) for stage in small}
    due_changes = EVENTS_1M // EVENTS_PER_VISITOR * DUE_SHARE
    memory_mb = stack.evaluator_memory_mb
    idle = sum(sweep_dollars(sweeps["generated"], changes=0, runs=1, memory_mb=memory_mb).values())
    for name, suffix in (("generated", ""), ("staggered", "_staggered")):
        measured = sweeps[name]
        # The build is charged the membership writes the sweep made (a build would make them).
        changes = due_changes * measured.swept_per_change * measured.segment_change_fraction
        sweep_usd = sweep_dollars(measured, changes=due_changes, runs=runs, memory_mb=memory_mb)
        build_usd = rebuild_dollars(rebuild, shards=shards, memory_mb=stack.builder_memory_mb, changes=changes)
        results[f"sweep_cost_ratio{suffix}"] = sum(sweep_usd.values()) / sum(build_usd.values())
        results[f"sweep_swept_per_change{suffix}"] = measured.swept_per_change
        results[f"sweep_cost_usd{suffix}"] = sum(sweep_usd.values())
        for component, usd in sweep_usd.items():
            results[f"sweep_cost{suffix}_{component}_usd"] = usd
        results[f"sweep_cost_build_usd{suffix}"] = sum(build_usd.values())
        sweep_requests = dynamodb_requests(sweep_usage(measured, changes=due_changes, runs=runs))
        build_requests = sum(dynamodb_requests(stage.usage) for stage in rebuild.values()) + changes
        results[f"sweep_request_ratio{suffix}"] = sweep_requests / build_requests
        if measured.swept_per_change:
            swept = due_changes * measured.swept_per_change
            results["sweep_cost_per_swept_visitor_usd"] = (sum(sweep_usd.values()) - runs * idle) / swept
            results["sweep_segment_change_fraction"] = measured.segment_change_fraction
    for component, usd in build_usd.items():
        results[f"sweep_cost_build_{component}_usd"] = usd
    results["sweep_idle_run_usd"] = idle
    results["sweep_idle_usd_per_day"] = idle * (timedelta(days=1) / stack.sweep_interval)
    results["sweep_swept_visitor_read_units"] = sweeps["staggered"].due_visitor.usage.total_read_units
    results["sweep_swept_visitor_write_units"] = sweeps["staggered"].due_visitor.usage.total_write_units
    results["stream_freshness_seconds"] = freshness_seconds()
    return results


# --- the sweep


def staggered_history(visitor_id: str, hit_ms: int) -> list[Any]:
    """A week of a visitor on a phone in London (two blog posts, a product in the cart and
    a purchase, a look at pricing, on four days) that puts it in four of the demo's
    segments, which it leaves on four days with no new data, and one it enters: new UK
    visitors after one more day, cart abandoners after ten, lapsed buyers from the
    eleventh (two weeks without a visit) until the purchase expires, mobile blog readers
    after 24 and returning London pricing viewers after 26. Six changes, more than an item
    holds (`STEPS`): each visitor is swept once, when the fifth comes."""
    from functions.core.hits import Geo, TrackedEvent

    london = Geo(country="GB", region="ENG", city="London")
    pages = [
        (6, "page_view", "https://shop.example/blog/gifts"),
        (5, "page_view", "https://shop.example/blog/winter"),
        (4, "add_to_cart", "https://shop.example/product/scarf"),
        (4, "purchase", "https://shop.example/product/gloves"),
        (3, "page_view", "https://shop.example/pricing"),
    ]
    return [
        TrackedEvent(
            visitor_id=visitor_id,
            event_id=f"staggered:{visitor_id}:{index}",
            ts_ms=hit_ms - days * DAY_MS,
            name=name,
            url=url,
            geo=london,
            device="mobile",
        )
        for index, (days, name, url) in enumerate(pages)
    ]


def measure_sweeps(
    meter: UsageMeter, evaluator: Any, due: Any, populations: Mapping[str, Sequence[str]], target: Any, *, after_ms: int
) -> dict[str, SweepMeasurement]:
    """Idle runs, then, for each population, every sweep run its visitors' futures need
    (with no new data), each run at a minute one of them is filed under, until none is."""
    from functions.sweep.logic import sweep

    idle: list[Measured] = []
    first_idle = after_ms // 60_000 + 24 * 60  # a day after the hits: nobody is filed then
    for minute in range(first_idle, first_idle + IDLE_RUNS):
        idle.append(_swept(meter, due, lambda ids: None, minute, sweep))
    idle_run = Measured(
        sum((m.usage for m in idle), Usage()) * (1 / len(idle)), statistics.median(m.seconds for m in idle)
    )
    futures = {
        name: _future(meter, evaluator, due, visitors, target, after_ms=after_ms)
        for name, visitors in populations.items()
    }
    # A batch's catalog read, whatever its size (one GetItem of the catalog's one item).
    batches = sum(f.batches for f in futures.values())
    catalog_units = sum(f.total.usage.read_units.get(target.catalog_table, 0.0) for f in futures.values()) / batches
    batch = Usage({target.catalog_table: catalog_units}, {}, {"dynamodb:GetItem": 1.0})
    # What re-evaluating a visitor costs the sweep, over every population's sweeps.
    swept = sum(f.swept for f in futures.values())
    work = sum(
        (f.total - idle_run * f.runs - Measured(batch * f.batches, 0.0) for f in futures.values()),
        Measured(Usage(), 0.0),
    )
    due_visitor = work * (1 / swept)
    due_visitor = Measured(due_visitor.usage, max(0.0, due_visitor.seconds))
    return {
        name: SweepMeasurement(
            idle_run=idle_run,
            batch=batch,
            due_visitor=due_visitor,
            swept_per_change=f.swept / f.changes,
            segment_change_fraction=f.changed / f.swept if f.swept else 0.0,
        )
        for name, f in futures.items()
    }


@dataclass(frozen=True)
class _Future:
    """A population's future with no new data: its membership changes, and the sweep runs
    they took (their usage, evaluation batches, visitors re-evaluated, and of those the
    ones whose stored segments the run changed)."""

    changes: int
    total: Measured
    runs: int
    batches: int
    swept: int
    changed: int


def _future(
    meter: UsageMeter, evaluator: Any, due: Any, visitors: Sequence[str], target: Any, *, after_ms: int
) -> _Future:
    from functions.evaluator.logic import evaluate_visitors
    from functions.sweep.logic import sweep

    total = Measured(Usage(), 0.0)
    runs = batches = swept = changed = 0
    last = after_ms // 60_000
    while filed := [m for m in _filed_minutes(meter, due, target.due_table, visitors) if m > last]:
        assert runs < MAX_RUNS, "the visitors are filed again and again"
        last = min(filed)
        now_ms = (last + 1) * 60_000 + 1_000
        evaluated: list[str] = []

        def evaluate(ids: Sequence[str], now_ms: int = now_ms, evaluated: list[str] = evaluated) -> None:
            evaluated.extend(ids)
            evaluate_visitors(ids, evaluator, now_ms)

        before = _segments(meter, evaluator, visitors)
        total = total + _swept(meter, due, evaluate, last, sweep)
        after = _segments(meter, evaluator, visitors)
        runs += 1
        batches += math.ceil(len(evaluated) / EVALUATE_BATCH)
        swept += len(evaluated)
        changed += sum(1 for v in evaluated if before.get(v) != after.get(v))
    return _Future(_changes(meter, evaluator, visitors, after_ms), total, runs, batches, swept, changed)


def _changes(meter: UsageMeter, evaluator: Any, visitors: Sequence[str], after_ms: int) -> int:
    """How many times the visitors' segments change after `after_ms` with no new data,
    walked instant by instant by the evaluation itself (an instant where they turn out
    the same, after its search gave up, is not a change)."""
    from functions.core.freshness import evaluate_visitor
    from functions.evaluator.logic import history_of

    with meter.paused():
        segments = evaluator.definitions.compiled(evaluator.catalog.get().build_id)
        changes = 0
        for visitor_id in visitors:
            history = history_of(visitor_id, evaluator.events.records_of(visitor_id))
            result = evaluate_visitor(history, segments, after_ms)
            while result.due_ms is not None:
                later = evaluate_visitor(history, segments, result.due_ms)
                changes += later.segments != result.segments
                result = later
    return changes


def _swept(meter: UsageMeter, due: Any, evaluate: Any, minute: int, sweep: Any) -> Measured:
    """One sweep run of `minute` alone, as the minute after it begins."""
    with meter.paused():
        due.put_swept_minute(minute - 1)
    used, seconds = meter.usage(), meter.function_seconds()
    sweep(due, evaluate, (minute + 1) * 60_000 + 1_000)
    return Measured(meter.usage() - used, meter.function_seconds() - seconds)


def _filed_minutes(meter: UsageMeter, due: Any, table: str, visitors: Sequence[str]) -> Iterator[int]:
    """The minutes the due index files `visitors` under (`<YYYYmmddHHMM>#<k>`)."""
    from functions.core.storage.due import MINUTE_KEY, VISITOR_KEY

    wanted = set(visitors)
    with meter.paused():
        for page in due.client.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items", []):
                label = item[MINUTE_KEY]["S"].split("#")[0]
                if item[VISITOR_KEY]["S"] in wanted and label.isdigit():
                    yield int(datetime.strptime(label, "%Y%m%d%H%M").replace(tzinfo=UTC).timestamp()) // 60


def _segments(meter: UsageMeter, evaluator: Any, visitors: Sequence[str]) -> dict[str, frozenset[str]]:
    """Each visitor's stored segments (an absent item: none)."""
    with meter.paused():
        stored = evaluator.membership.stored_many(visitors)
    return {v: s.current.segments if s.current is not None else frozenset() for v, s in stored.items()}


def sweep_overhead_ratio(meter: UsageMeter, evaluator: Any, due: Any, visitors: Sequence[str], hit_ms: int) -> float:
    """DynamoDB requests of a sweep of `visitors` filed in one minute / those of their
    re-evaluations alone."""
    from functions.evaluator.logic import evaluate_visitors
    from functions.sweep.logic import sweep

    due_ms = hit_ms + 60 * DAY_MS  # past every instant swept above
    with meter.paused():
        due.put_due(dict.fromkeys(visitors, due_ms))
        due.put_swept_minute(due_ms // 60_000 - 1)
    sweep_now = due_ms + 60_000
    evaluation_requests = 0.0

    def evaluate(ids: Sequence[str]) -> None:
        nonlocal evaluation_requests
        before = dynamodb_requests(meter.usage())
        evaluate_visitors(ids, evaluator, sweep_now)
        evaluation_requests += dynamodb_requests(meter.usage()) - before

    before = dynamodb_requests(meter.usage())
    sweep(due, evaluate, sweep_now)
    return (dynamodb_requests(meter.usage()) - before) / evaluation_requests


def sweep_usage(sweeps: SweepMeasurement, *, changes: float, runs: float) -> Usage:
    """The units and requests of `runs` sweep runs while `changes` membership changes fall
    due evenly among them."""
    swept = changes * sweeps.swept_per_change
    batches = runs * math.ceil(swept / runs / EVALUATE_BATCH)
    return sweeps.idle_run.usage * runs + sweeps.batch * batches + sweeps.due_visitor.usage * swept


def sweep_dollars(sweeps: SweepMeasurement, *, changes: float, runs: float, memory_mb: int) -> dict[str, float]:
    """Dollars of `runs` sweep runs while `changes` membership changes fall due, by
    component (see the module's docstring)."""
    usage = sweep_usage(sweeps, changes=changes, runs=runs)
    run_seconds = sweeps.idle_run.seconds + sweeps.due_visitor.seconds * changes * sweeps.swept_per_change / runs
    return {
        "lambda": runs * lambda_invocation_usd(on_lambda_seconds(run_seconds, memory_mb), memory_mb),
        "dynamodb": dynamodb_usd(usage.total_read_units, usage.total_write_units),
        "s3": s3_usd(usage.requests_of("s3")),
    }


# --- the build


def measure_rebuild(visitors: int, shards: int) -> dict[str, Measured]:
    """A rebuild over `visitors` x EVENTS_PER_VISITOR generated events, two minutes after a
    first build, stage by stage through the builder's handler: its usage and CPU time by
    stage (the shards' together; the least of `REBUILDS` rebuilds, two minutes apart)."""
    import importlib

    from moto import mock_aws

    with mock_aws():
        import boto3

        from dmp.local import create_resources
        from functions.core.segments import load_definitions
        from functions.core.times import iso
        from tests.conftest import SEGMENTS_DIR

        os.environ.update(BASE_ENV)
        target = create_resources(None, region=price.REGION)
        os.environ.update(target.environment())
        loader = boto3.client("dynamodb", region_name=price.REGION)
        items = list(GeneratedEvents(visitors, EVENTS_PER_VISITOR).scan())
        for start in range(0, len(items), 25):
            requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            loader.batch_write_item(RequestItems={target.events_table: requests})
        with UsageMeter() as meter:
            meter.watch_new_clients()
            builder = importlib.reload(importlib.import_module("functions.builder.handler"))
            for definition in load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}):
                builder.stores.bucket.put_definition(
                    definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
                )
            executions: list[dict[str, Measured]] = []

            def stage(name: str, event: dict[str, Any]) -> Any:
                used, seconds = meter.usage(), meter.function_seconds()
                answer = builder.run(event)
                measured = executions[-1]
                measured[name] = measured[name] + Measured(meter.usage() - used, meter.function_seconds() - seconds)
                return answer

            with quiet_stdout():
                for number in range(1 + REBUILDS):
                    executions.append({name: Measured(Usage(), 0.0) for name in STAGES})
                    at = iso(NOW + timedelta(minutes=2 * number))
                    plan = stage("plan", {"stage": "plan", "time": at, "shards": shards})
                    for shard in plan.shards:
                        stage("shard", {"stage": "shard", "build_id": plan.build_id, "shard": shard})
                    stage("publish", {"stage": "publish", "build_id": plan.build_id})
                    stage("export", {"stage": "export", "build_id": plan.build_id})
    rebuilds = executions[1:]
    return {
        name: Measured(rebuilds[0][name].usage, min(rebuild[name].seconds for rebuild in rebuilds)) for name in STAGES
    }


def rebuild_dollars(rebuild: dict[str, Measured], *, shards: int, memory_mb: int, changes: float) -> dict[str, float]:
    """A rebuild as AWS bills it, by component: one invocation a stage (the shards sharing
    their CPU time), the state machine's transitions, DynamoDB's units, S3's requests, and
    the writes of `changes` membership changes it is charged besides its own."""
    usage = sum((stage.usage for stage in rebuild.values()), Usage())

    def invocation(seconds: float) -> float:
        return lambda_invocation_usd(on_lambda_seconds(max(0.0, seconds), memory_mb), memory_mb)

    return {
        "lambda": sum(invocation(rebuild[name].seconds) for name in ("plan", "publish", "export"))
        + shards * invocation(rebuild["shard"].seconds / shards),
        "stepfunctions": state_transitions(shards) * price.STEP_FUNCTIONS_STATE_TRANSITION,
        "dynamodb": dynamodb_usd(usage.total_read_units, usage.total_write_units),
        "s3": s3_usd(usage.requests_of("s3")),
        "changes": membership_change_usd(changes),
    }


def dynamodb_requests(usage: Usage) -> float:
    return sum(usage.requests_of("dynamodb").values())
