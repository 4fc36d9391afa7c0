"""Real-time membership benchmarks (DESIGN.md, "Freshness"), on moto, counted in DynamoDB
requests (deterministic, unlike times on these machines):

- stream_reads_per_hit: DynamoDB read requests the evaluator makes per hit, for a stream
  batch of 100 hits of 100 visitors (catalog, suppression and membership read once per
  batch, one Query per visitor): about 1.
- stream_rebuild_membership_writes: membership write requests of the build that follows
  the streamed hits: 0, the evaluator already wrote each change.
- sweep_overhead_ratio: DynamoDB requests of a sweep run that re-evaluates K = 100 visitors
  due in one minute, over the requests of those re-evaluations alone (the sweep's
  overhead: its checkpoint, one Query per bucket of the minute, the deletes); near 1
  when many are due at once.
- stream_freshness_seconds: on `dmp serve` (its stream poller, `stream_membership()`, at
  its default 0.5 s), after `segments push segments/`, `partners add demo-dsp` and one
  `build --local`, a pixel hit through the local gateway of a new visitor with London's
  CloudFront-Viewer headers; the partner's lookup is polled every 50 ms until it shows
  `new-uk-visitors`. The median, over 5 hits (a new visitor each), of seconds from sending
  the hit to the lookup showing it (tests/bench/stream_local.py). Aim <= 5.
- sweep_cost_ratio: DynamoDB requests of a sweep of the due visitors / those of a full
  build, over 1 M events (100 k visitors x 10 events) of which 1 % of visitors (1,000)
  are due. Counted on moto at a smaller size and extrapolated linearly:
    sweep(1,000) = 10 x the requests of the sweep of 100 due visitors measured above (an
      upper bound: its checkpoint and per-bucket Queries are counted 10 times);
    build(1 M) = ceil(1 M x B / 1 MiB) + S Scan pages (B: mean DynamoDB item size of the
      generated events, by DynamoDB's size rules; S = 2 scan segments, each ending in a
      short page) + the non-Scan requests of the measured rebuild (1,500 events, 300
      visitors; taken as fixed, a lower bound: a rebuild with no membership change).
  Aim <= 0.05.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from functions.core.times import DAY_MS, DAY_SECONDS
from tests.bench.bench_shard import NOW, NOW_MS, GeneratedEvents
from tests.bench.common import BASE_ENV, RequestCounter
from tests.bench.stream_local import freshness_seconds

BATCH = 100
READS = ("GetItem", "BatchGetItem", "Query", "Scan")
EVENTS_1M = 1_000_000
DUE_AT_1M = 1_000  # 1 % of 100 k visitors of 10 events
SCAN_SEGMENTS = 2
REBUILD_HOOK = "bench-stream-rebuild"
WRITES = ("BatchWriteItem", "PutItem", "DeleteItem", "TransactWriteItems")


def run() -> dict[str, float]:
    from moto import mock_aws

    os.environ.update(BASE_ENV)
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
        from functions.sweep.logic import sweep
        from tests.conftest import SEGMENTS_DIR

        target = create_resources(None, region="us-east-1")
        stores = target.build_stores()
        for definition in load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}):
            stores.bucket.put_definition(  # type: ignore[attr-defined]
                definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        events = EventStore(target.events_table)
        for item in GeneratedEvents(300, 5).scan():
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
        everything = RequestCounter()  # every DynamoDB request of the rebuild, its new clients' too
        _attach_everywhere(everything, stores)
        build(stores, NOW + timedelta(minutes=2), shards=2, retention_seconds=90 * DAY_SECONDS)
        results["stream_rebuild_membership_writes"] = sum(1 for c in counter.calls if c in WRITES)
        rebuild_other_requests = sum(1 for c in everything.calls if c != "Scan")
        _detach_session(everything)

        # The same visitors, filed as due in one minute and swept then.
        due_ms = hit_ms + 3 * DAY_MS
        due.put_due(dict.fromkeys(visitors, due_ms))
        due.put_swept_minute(due_ms // 60_000 - 1)
        counter.calls.clear()  # the due index shares the evaluator's client, counted already
        sweep_now = due_ms + 60_000
        evaluation_requests = 0

        def evaluate(ids: Sequence[str]) -> None:
            nonlocal evaluation_requests
            before = len(counter.calls)
            evaluate_visitors(ids, evaluator, sweep_now)
            evaluation_requests += len(counter.calls) - before

        sweep(due, evaluate, sweep_now)
        results["sweep_overhead_ratio"] = len(counter.calls) / evaluation_requests
        sweep_requests = len(counter.calls) * DUE_AT_1M // BATCH
    build_requests = math.ceil(EVENTS_1M * _mean_item_bytes() / 2**20) + SCAN_SEGMENTS + rebuild_other_requests
    results["sweep_cost_ratio"] = sweep_requests / build_requests
    results["stream_freshness_seconds"] = freshness_seconds()
    return results


def _mean_item_bytes() -> float:
    """Mean DynamoDB item size of the generated events: attribute names + UTF-8 strings +
    numbers at 1 byte per 2 digits plus 1."""
    sizes = []
    for item in GeneratedEvents(300, 10).scan():
        size = 0
        for name, value in item.items():
            size += len(name.encode())
            if "S" in value:
                size += len(value["S"].encode())
            else:
                size += math.ceil(len(value["N"].lstrip("-")) / 2) + 1
        sizes.append(size)
    return sum(sizes) / len(sizes)


def _attach_everywhere(counter: RequestCounter, stores: object) -> None:
    import boto3

    session: Any = boto3._get_default_session()._session
    session.register("before-call.dynamodb.*", counter._count, unique_id=REBUILD_HOOK)
    seen: set[int] = set()
    for store in vars(stores).values():
        client = getattr(store, "client", None)
        if client is not None and client.meta.service_model.service_name == "dynamodb" and id(client) not in seen:
            seen.add(id(client))
            counter.attach(client)


def _detach_session(counter: RequestCounter) -> None:
    import boto3

    session: Any = boto3._get_default_session()._session
    session.unregister("before-call.dynamodb.*", unique_id=REBUILD_HOOK)
