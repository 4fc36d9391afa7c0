"""Shard benchmarks (issue: segment engine at scale).

- shard_peak_memory_ratio: peak Python memory (tracemalloc) of one build shard over 4x
  the events (4x the visitors, same history per visitor) divided by that over 1x. A
  shard streams its scan and spools its part files, so this stays near 1.
- rebuild_membership_writes: DynamoDB membership write requests of a rebuild, an hour
  after the first build, with no new events (on moto). Only the visitors whose membership
  or schedule changes in the hour the build's horizon moved on are written (DESIGN.md,
  "Freshness"): `rebuild_newly_due_visitors` counts them from the records, by evaluating
  each visitor as both builds do.
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from functions.core.times import DAY_MS, DAY_SECONDS
from tests.bench.common import BASE_ENV, RequestCounter

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
PAGES = ["/", "/pricing", "/products/wool-scarf", "/blog/gift-guide", "/cart", "/checkout"]
CITIES = [("GB", "ENG", "London"), ("FR", "IDF", "Paris"), ("DE", "BE", "Berlin")]


def page_view_item(
    visitor_id: str, index: int, ts: int, page: str, place: tuple[str, str, str], device: str
) -> dict[str, Any]:
    """A page view as the pixel stores it, kept for the 90-day retention."""
    country, region, city = place
    return {
        "visitor_id": {"S": visitor_id},
        "event_id": {"S": f"{ts:013d}:{index:04x}"},
        "ts": {"N": str(ts)},
        "name": {"S": "page_view"},
        "url": {"S": "https://shop.example" + page},
        "country": {"S": country},
        "region": {"S": region},
        "city": {"S": city},
        "device": {"S": device},
        "expires_at": {"N": str(ts // 1000 + 90 * DAY_SECONDS)},
    }


class GeneratedEvents:
    """An events table as a parallel scan returns it: items of a visitor together."""

    def __init__(self, visitors: int, events_per_visitor: int, seed: int = 7) -> None:
        self.visitors = visitors
        self.events_per_visitor = events_per_visitor
        self.seed = seed

    def scan(self, segment: int = 0, total_segments: int = 1) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        for number in range(self.visitors):
            visitor_id = f"visitor-{number:09d}"
            place = CITIES[number % len(CITIES)]
            for index in range(self.events_per_visitor):
                ts = NOW_MS - rng.randrange(0, 40 * DAY_MS)
                page = PAGES[rng.randrange(len(PAGES))]
                yield page_view_item(visitor_id, index, ts, page, place, "mobile" if number % 3 else "desktop")

    def scan_records(self, segment: int = 0, total_segments: int = 1) -> Iterator[tuple[str, Any]]:
        """As EventStore reads the items back: the production conversion, measured too."""
        from functions.core.storage.events import record_from_item

        return map(record_from_item, self.scan(segment, total_segments))


def _newly_due(events: GeneratedEvents, definitions: Any, *, hours: int) -> int:
    """Visitors whose membership or schedule as a build `hours` later finds it differs from
    the first build's: with no new events, those whose next change (or the one after it)
    came within the horizon as it moved on. The writes that build must make."""
    from functions.builder.plan import DEFAULT_DUE_HORIZON_SECONDS
    from functions.core.engine import compile_segments
    from functions.core.freshness import evaluate_visitor
    from functions.core.records import group_by_visitor

    segments = compile_segments(definitions)
    later_ms, horizon_ms = hours * 3_600_000, DEFAULT_DUE_HORIZON_SECONDS * 1000
    newly = 0
    for history in group_by_visitor(events.scan_records()):
        first = evaluate_visitor(history, segments, NOW_MS, horizon_ms=NOW_MS + horizon_ms)
        then = evaluate_visitor(history, segments, NOW_MS + later_ms, horizon_ms=NOW_MS + later_ms + horizon_ms)
        newly += first != then
    return newly


def _peak_bytes(events: GeneratedEvents, bucket: Any, plan: Any) -> int:
    from functions.builder.shard import run_shard

    tracemalloc.start()
    try:
        run_shard(plan, 0, events=events, bucket=bucket)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run() -> dict[str, float]:
    from moto import mock_aws

    os.environ.update(BASE_ENV)
    results: dict[str, float] = {}
    with mock_aws():
        import boto3

        from dmp.local import create_resources
        from functions.builder.build import build
        from functions.builder.plan import BuildPlan
        from functions.core.segments import load_definitions
        from functions.core.storage.events import EventStore
        from tests.conftest import SEGMENTS_DIR

        target = create_resources(None, region="us-east-1")
        definitions = tuple(load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}))
        plan = BuildPlan("20261128T100000Z", NOW, 1, definitions)
        stores = target.build_stores()
        small, large = GeneratedEvents(10_000, 10), GeneratedEvents(40_000, 10)
        _peak_bytes(small, stores.bucket, plan)  # warm caches and compiled rules out of the measurement
        one = _peak_bytes(small, stores.bucket, plan)
        four = _peak_bytes(large, stores.bucket, plan)
        results["shard_peak_memory_ratio"] = four / one
        results["shard_peak_memory_mb_4x"] = four / 2**20

        # A rebuild with no new events writes no membership.
        events = EventStore(target.events_table)
        for item in GeneratedEvents(300, 5).scan():
            events.client.put_item(TableName=target.events_table, Item=item)
        for definition in definitions:
            stores.bucket.put_definition(
                definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        build(stores, NOW, shards=2, retention_seconds=90 * DAY_SECONDS)
        counter = RequestCounter(table=target.membership_table)  # its client is the due index's too
        counter.attach(stores.membership.client)  # type: ignore[attr-defined]
        build(stores, NOW.replace(hour=11), shards=2, retention_seconds=90 * DAY_SECONDS)
        results["rebuild_membership_writes"] = sum(
            1 for call in counter.calls if call in ("BatchWriteItem", "PutItem", "DeleteItem", "TransactWriteItems")
        )
        results["rebuild_newly_due_visitors"] = _newly_due(GeneratedEvents(300, 5), definitions, hours=1)
        boto3.client("s3")
    return results
