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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

from functions.core.times import DAY_MS, DAY_SECONDS
from tests.bench.bench_shard import NOW, NOW_MS, GeneratedEvents
from tests.bench.common import BASE_ENV, RequestCounter

BATCH = 100
READS = ("GetItem", "BatchGetItem", "Query", "Scan")
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
        build(stores, NOW + timedelta(minutes=2), shards=2, retention_seconds=90 * DAY_SECONDS)
        results["stream_rebuild_membership_writes"] = sum(1 for c in counter.calls if c in WRITES)

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
    return results
