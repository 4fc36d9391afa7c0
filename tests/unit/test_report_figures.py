"""The build report's figures (functions/builder/report.py), over in-memory stores: every
figure is recomputed here from what the build published (part files, members files) and
from the events themselves, and must agree exactly."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest

from functions.builder.build import build
from functions.builder.plan import plan_build
from functions.builder.publish import publish
from functions.builder.report import FOLD_AT, ReportCounts
from functions.builder.shard import run_shard
from functions.builder.stores import BuildStores
from functions.core import layout
from functions.core.documents import BuildReport
from functions.core.records import EventRecord, Record
from functions.core.times import DAY_SECONDS
from tests.fakes import MemoryBucket, MemoryCatalog, MemoryEvents, MemoryMembership, MemorySuppression

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
RETENTION = 90 * DAY_SECONDS
DEFINITIONS = {
    "london": "id: london\nname: Londoners\ndestinations: [demo-dsp]\nrule: {geo: {city: London}}\n",
    "pricing": (
        "id: pricing\nname: Pricing viewers\ndestinations: [demo-dsp, other-ssp]\n"
        "rule: {event: {url_contains: /pricing, within_days: 7}}\n"
    ),
    "mobile": "id: mobile\nname: On a phone\ndestinations: [other-ssp]\nrule: {device: {type: mobile}}\n",
    "returning": "id: returning\nname: Returning\nrule: {visits: {min: 2, within_days: 30}}\n",
}
PLACES = [("GB", "London"), ("GB", "Manchester"), ("FR", "Paris"), (None, None), ("DE", "Berlin")]
DEVICES = ["desktop", "mobile", "tablet", None]
URLS = ["https://shop.example/", "https://shop.example/pricing", "https://shop.example/blog"]


def population(seed: int, visitors: int, at: datetime = NOW) -> list[tuple[str, Record]]:
    rng = random.Random(seed)
    now_ms = int(at.timestamp() * 1000)
    records: list[tuple[str, Record]] = []
    for number in range(visitors):
        visitor_id = f"visitor-{seed}-{number:05d}"
        for offset in rng.sample(range(1, 40 * 24), rng.randint(1, 5)):  # distinct hours: one order
            ts_ms = now_ms - offset * 3_600_000
            country, city = rng.choice(PLACES)
            records.append(
                (
                    visitor_id,
                    EventRecord(
                        ts_ms=ts_ms,
                        name="page_view",
                        url=rng.choice(URLS),
                        country=country,
                        city=city,
                        device=rng.choice(DEVICES),
                        expires_at=ts_ms // 1000 + RETENTION,
                    ),
                )
            )
    return records


def stores_with(records: list[tuple[str, Record]], suppressed: tuple[str, ...] = ()) -> BuildStores:
    bucket = MemoryBucket()
    for segment_id, text in DEFINITIONS.items():
        bucket.objects[layout.definition_key(segment_id).replace(".json", ".yaml")] = text.encode()
    return BuildStores(
        MemoryEvents(records), MemoryMembership(), bucket, MemoryCatalog(), MemorySuppression(suppressed)
    )


def report_of(stores: BuildStores, build_id: str) -> BuildReport:
    return BuildReport.from_json(stores.bucket.get_json(layout.report_key(build_id, "json")))


def part_members(bucket: MemoryBucket, build_id: str) -> dict[str, set[str]]:
    manifest = bucket.manifest(build_id)
    return {s.id: {v for key in s.files for v in bucket.read_members(key)} for s in manifest.segments}


def latest_profile(records: list[tuple[str, Record]], at: datetime) -> dict[str, tuple[str, str]]:
    """Each visitor's latest device type and latest located event's country, from the
    raw records: what the report's mixes count."""
    now_ms = int(at.timestamp() * 1000)
    events: dict[str, list[EventRecord]] = {}
    for visitor_id, record in records:
        if isinstance(record, EventRecord) and record.ts_ms <= now_ms:
            events.setdefault(visitor_id, []).append(record)
    profile = {}
    for visitor_id, history in events.items():
        history.sort(key=lambda e: e.ts_ms)
        located = [e for e in history if e.country or e.city]
        country = (located[-1].country if located else None) or "unknown"
        profile[visitor_id] = (history[-1].device or "unknown", country)
    return profile


def assert_report_matches(
    stores: BuildStores, build_id: str, previous: str | None, records: list[tuple[str, Record]], at: datetime
) -> BuildReport:
    """Every figure of the report, recomputed from the part files, the previous build's
    part files and the events."""
    assert isinstance(stores.bucket, MemoryBucket)
    report = report_of(stores, build_id)
    members = part_members(stores.bucket, build_id)
    manifest = stores.bucket.manifest(build_id)
    assert report.previous_build_id == previous
    assert [s.id for s in report.segments] == [s.id for s in manifest.segments]
    before = part_members(stores.bucket, previous) if previous else None
    profile = latest_profile(records, at)
    for segment in report.segments:
        assert segment.size == len(members[segment.id])
        if before is None:
            assert segment.added is None and segment.removed is None
        else:
            assert segment.added == len(members[segment.id] - before.get(segment.id, set()))
            assert segment.removed == len(before.get(segment.id, set()) - members[segment.id])
        assert dict(segment.devices) == dict(Counter(profile[v][0] for v in members[segment.id]))
        assert dict(segment.countries) == dict(Counter(profile[v][1] for v in members[segment.id]))
    ids = [s.id for s in manifest.segments]
    assert [(o.a, o.b) for o in report.overlaps] == list(combinations(ids, 2))
    for overlap in report.overlaps:
        shared = len(members[overlap.a] & members[overlap.b])
        either = len(members[overlap.a] | members[overlap.b])
        assert overlap.shared == shared
        assert overlap.jaccard == (shared / either if either else 0.0)
    for destination in report.destinations:
        visible = [s.id for s in manifest.segments if destination.partner in s.destinations]
        assert list(destination.segments) == visible
        assert destination.reach == len(set().union(*(members[s] for s in visible)))
    assert {d.partner for d in report.destinations} == {p for s in manifest.segments for p in s.destinations}
    assert report.trend[-1].build_id == build_id
    assert dict(report.trend[-1].sizes) == {s: len(m) for s, m in members.items()}
    return report


def test_the_first_build_reports_exact_figures_and_no_change() -> None:
    # GIVEN 400 visitors' events
    records = population(1, 400)
    stores = stores_with(records)
    # WHEN the first build runs, on three shards
    result = build(stores, NOW, 3, retention_seconds=RETENTION)
    # THEN its report's figures are those of its part files and events; nothing to compare with
    report = assert_report_matches(stores, result.manifest.build_id, None, records, NOW)
    assert report.complete and len(report.trend) == 1
    assert stores.bucket.get_json_if_exists(layout.report_key(result.manifest.build_id, "json")) is not None
    assert isinstance(stores.bucket, MemoryBucket)
    html = stores.bucket.objects[layout.report_key(result.manifest.build_id, "html")].decode()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html


@pytest.mark.parametrize(("first_shards", "second_shards"), [(2, 2), (2, 3)])
def test_a_later_build_reports_what_changed_since_the_previous_one(first_shards: int, second_shards: int) -> None:
    # GIVEN a first build, then visitors arriving, returning and lapsing, and a suppressed one
    records = population(2, 300)
    stores = stores_with(records)
    first = build(stores, NOW, first_shards, retention_seconds=RETENTION).manifest.build_id
    later = NOW + timedelta(days=3)
    more = population(3, 120, at=later) + [r for r in population(2, 300, at=later) if r[0].endswith("7")]
    stores.events.records = sorted(records + more, key=lambda pair: pair[0])  # type: ignore[attr-defined]
    first_members = part_members(stores.bucket, first)  # type: ignore[arg-type]
    gone = sorted(first_members["london"])[0]
    stores.suppression.ids.add(gone)  # type: ignore[union-attr]
    # WHEN the second build runs (the same shard count: shards diff against the first;
    # another: publish diffs the members files)
    second = build(stores, later, second_shards, retention_seconds=RETENTION).manifest.build_id
    # THEN added and removed are exactly the part files' differences, and the rest exact too
    all_records = records + more
    report = assert_report_matches(stores, second, first, all_records, later)
    assert report.segment("london").removed  # type: ignore[union-attr]
    assert [p.build_id for p in report.trend] == [first, second]
    assert gone not in {v for m in part_members(stores.bucket, second).values() for v in m}  # type: ignore[arg-type]


def test_counts_folded_many_times_add_up_as_one_pass() -> None:
    # GIVEN more distinct member profiles than a shard keeps before folding them
    records = population(4, FOLD_AT // 2 * 3)
    stores = stores_with(records)
    # WHEN the build runs on one shard
    build_id = build(stores, NOW, 1, retention_seconds=RETENTION).manifest.build_id
    # THEN the figures are still exact
    assert_report_matches(stores, build_id, None, records, NOW)


def test_a_publish_run_again_after_latest_json_keeps_the_report() -> None:
    # GIVEN two builds, the second one published
    records = population(5, 100)
    stores = stores_with(records)
    build(stores, NOW, 1, retention_seconds=RETENTION)
    later = NOW + timedelta(hours=1)
    plan = plan_build(stores.bucket, later, 1)
    results = [run_shard(plan, 0, events=stores.events, bucket=stores.bucket)]
    publish(plan, stores, results)
    assert isinstance(stores.bucket, MemoryBucket)
    written = {k: v for k, v in stores.bucket.objects.items() if "/report." in k}
    # WHEN its publish runs again (as after a failure past latest.json)
    publish(plan, stores, results)
    # THEN the report is the same, still compared with the first build
    assert {k: v for k, v in stores.bucket.objects.items() if "/report." in k} == written
    assert report_of(stores, plan.build_id).previous_build_id == "20261128T100000Z"


def test_a_shard_without_the_report_counts_nothing() -> None:
    # GIVEN a plan
    stores = stores_with(population(6, 50))
    plan = plan_build(stores.bucket, NOW, 1)
    # WHEN a shard runs without the report (the benchmark's baseline)
    result = run_shard(plan, 0, events=stores.events, bucket=stores.bucket, report=False)
    # THEN its result has no counts, and its sizes are the same as with them
    assert result.report is None
    assert run_shard(plan, 0, events=stores.events, bucket=stores.bucket).sizes == result.sizes


def test_counts_round_trip_through_a_shard_result() -> None:
    # GIVEN a shard's counts as its result stores them
    stores = stores_with(population(7, 80))
    plan = plan_build(stores.bucket, NOW, 1)
    document = run_shard(plan, 0, events=stores.events, bucket=stores.bucket).report
    assert document is not None
    # WHEN they are merged into empty counts
    counts = ReportCounts(plan.definitions)
    counts.merge(document)
    # THEN they are the same counts
    again = counts.to_json()
    assert {k: v for k, v in again.items() if k != "moves"} == {k: v for k, v in document.items() if k != "moves"}
