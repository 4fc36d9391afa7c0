"""The build report on moto, as the stages write it (plan -> shards -> publish), and the
preview of definitions, which must write nothing and agree with the next build."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import boto3
import pytest

from dmp.preview import preview
from dmp.report import report_page
from functions.core import layout
from functions.core.documents import BuildReport
from functions.core.records import EventRecord
from functions.core.segments import load_definitions
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.events import EventStore, is_mapping, record_from_item
from functions.core.times import parse_time
from tests.integration.conftest import BUILD_TIME, DEFINITIONS, LONDON, PARIS, hit, push_definitions
from tests.integration.test_build_stages import run_stages

FIRST = "2026-11-28T10:00:00Z"
SECOND = "2026-11-28T11:00:00Z"
NOW_MS = int(BUILD_TIME.timestamp() * 1000)


@pytest.fixture
def builder(load_handler: Any, traffic: Any) -> Any:
    return load_handler("builder")


def part_members(bucket: SegmentsBucket, build_id: str) -> dict[str, set[str]]:
    manifest = bucket.manifest(build_id)
    return {s.id: {v for key in s.files for v in bucket.read_members(key)} for s in manifest.segments}


def latest_device_and_country(events_table: str, at_ms: int) -> dict[str, tuple[str, str]]:
    """Each visitor's latest device type and latest located country, from the stored events."""
    histories: dict[str, list[EventRecord]] = {}
    for item in EventStore(events_table).scan():
        if is_mapping(item):
            continue
        visitor_id, record = record_from_item(item)
        if isinstance(record, EventRecord) and record.ts_ms <= at_ms:
            histories.setdefault(visitor_id, []).append(record)
    profile = {}
    for visitor_id, events in histories.items():
        events.sort(key=lambda e: e.ts_ms)
        located = [e for e in events if e.country or e.region or e.city]
        profile[visitor_id] = (
            events[-1].device or "unknown",
            (located[-1].country if located else None) or "unknown",
        )
    return profile


def test_each_publish_writes_a_report_whose_figures_are_the_part_files(builder, aws, lambda_context):
    # GIVEN a first build, then a visitor returning and a new one arriving
    run_stages(builder, lambda_context, FIRST, shards=2)
    ingest_hits(aws, builder, lambda_context)
    # WHEN the second build's stages run
    second = run_stages(builder, lambda_context, SECOND, shards=2)["build_id"]
    # THEN its report.json holds exactly the figures its part files and the events give
    bucket = SegmentsBucket(aws.bucket)
    report = BuildReport.from_json(bucket.get_json(layout.report_key(second, "json")))
    members, before = part_members(bucket, second), part_members(bucket, "20261128T100000Z")
    profile = latest_device_and_country(aws.events_table, int(parse_time(SECOND).timestamp() * 1000))
    assert report.previous_build_id == "20261128T100000Z"
    for segment in report.segments:
        assert segment.size == len(members[segment.id])
        assert segment.added == len(members[segment.id] - before[segment.id])
        assert segment.removed == len(before[segment.id] - members[segment.id])
        assert dict(segment.devices) == dict(Counter(profile[v][0] for v in members[segment.id]))
        assert dict(segment.countries) == dict(Counter(profile[v][1] for v in members[segment.id]))
    for overlap in report.overlaps:
        assert overlap.shared == len(members[overlap.a] & members[overlap.b])
    reach = {d.partner: d.reach for d in report.destinations}
    assert reach == {
        "demo-dsp": len(members["london-pricing"] | members["all-visitors"]),
        "other-ssp": len(members["all-visitors"] | members["paris"]),
    }
    assert [(p.build_id, dict(p.sizes)) for p in report.trend] == [
        ("20261128T100000Z", {s: len(m) for s, m in before.items()}),
        (second, {s: len(m) for s, m in members.items()}),
    ]
    assert sum(s.added or 0 for s in report.segments) > 0  # the premise: something changed
    # AND the page beside it is the one `dmp report` saves
    build_id, page = report_page(bucket)
    assert build_id == second and page == bucket.get_bytes(layout.report_key(second, "html")).decode()


def ingest_hits(aws: Any, builder: Any, context: Any) -> None:
    from importlib import import_module, reload

    ingest = reload(import_module("functions.ingest.handler"))
    hit(ingest, context, "visitor-london-2", NOW_MS + 10 * 60_000, "https://shop.example/pricing", LONDON)
    hit(ingest, context, "visitor-newcomer-1", NOW_MS + 20 * 60_000, "https://shop.example/", PARIS)


def snapshot(target: Any) -> dict[str, Any]:
    """Every object version in the bucket with its bytes, and every item of every table."""
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    objects = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=target.bucket):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=target.bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"]
            objects[(version["Key"], version["VersionId"])] = body.read()
        for marker in page.get("DeleteMarkers", []):
            objects[(marker["Key"], marker["VersionId"])] = b"<delete marker>"
    tables = {}
    for name in dynamodb.list_tables()["TableNames"]:
        items = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):
            items.extend(page["Items"])
        tables[name] = sorted(items, key=repr)
    return {"objects": objects, "tables": tables}


NEW_DEFINITIONS = {
    "segments/londoners.json": (
        '{"id": "londoners", "name": "Londoners <script>alert(1)</script>", "rule": {"geo": {"city": "London"}}}'
    ),
    "segments/pricing.json": (
        '{"id": "pricing", "name": "Pricing", "rule": {"event": {"url_contains": "/pricing", "within_days": 30}}}'
    ),
}


def test_a_preview_writes_nothing_and_gives_the_next_builds_sizes(builder, aws, lambda_context):
    # GIVEN a published build, then more traffic and one visitor suppressed since
    run_stages(builder, lambda_context, FIRST, shards=2)
    ingest_hits(aws, builder, lambda_context)
    stores = aws.build_stores()
    stores.suppression.suppress(["visitor-paris-1"], reason="optout", at_s=NOW_MS // 1000, keep_seconds=86_400)
    definitions = load_definitions(NEW_DEFINITIONS)
    before = snapshot(aws)
    # WHEN definitions that are not pushed are previewed at the second build's time
    at = parse_time(SECOND)
    result = preview(
        definitions,
        events=stores.events,
        bucket=SegmentsBucket(aws.bucket),
        suppressed=stores.suppressed_visitors(),
        at=at,
        shards=3,
    )
    # THEN the bucket (every object version) and every table are exactly as before
    assert snapshot(aws) == before
    # AND the overlaps are against the published build's part files, less the suppressed
    bucket = SegmentsBucket(aws.bucket)
    published = part_members(bucket, "20261128T100000Z")
    published = {s: m - {"visitor-paris-1"} for s, m in published.items()}
    assert result.published_build_id == "20261128T100000Z"
    # AND a build at the same instant with those definitions publishes the same sizes
    for key, text in NEW_DEFINITIONS.items():
        bucket.put_json(key, json.loads(text))
    for old in DEFINITIONS:
        bucket.client.delete_object(Bucket=aws.bucket, Key=layout.definition_key(old))
    built = run_stages(builder, lambda_context, SECOND, shards=2)
    assert {s.id: s.size for s in result.segments} == built["sizes"]
    members = part_members(bucket, built["build_id"])
    for segment in result.segments:
        for overlap in segment.overlaps:
            shared = members[segment.id] & published[overlap.segment_id]
            assert overlap.shared == len(shared)
            assert overlap.published_size == len(published[overlap.segment_id])
            either = members[segment.id] | published[overlap.segment_id]
            assert overlap.jaccard == (len(shared) / len(either) if either else 0.0)
    assert any(o.shared for s in result.segments for o in s.overlaps)  # the premise


def test_a_segment_name_with_markup_is_escaped_in_the_page(builder, aws, lambda_context):
    # GIVEN a segment whose name and description carry markup
    push_definitions(
        aws.bucket,
        {
            "tricky": {
                "id": "tricky",
                "name": "<script>alert('x')</script>",
                "description": '"><img src=x onerror=alert(1)>',
                "rule": {"last_seen": {"within_days": 30}},
            }
        },
    )
    # WHEN a build is published
    build_id = run_stages(builder, lambda_context, FIRST, shards=1)["build_id"]
    # THEN its page holds the text, escaped, and no markup of it
    page = report_page(SegmentsBucket(aws.bucket), build_id)[1]
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
