"""The importer on moto: files dropped under imports/<source>/ reach it through S3's
EventBridge notification, as in AWS, and become the visitors' traits."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from dmp.local import drain_imports
from functions.core.records import TraitRecord
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.events import EventStore
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.suppression import SuppressionStore
from functions.core.times import DAY_SECONDS

CRM = {
    "id": "harbor-crm",
    "name": "Harbor CRM",
    "kind": "second",
    "id_type": "partner:harbor-retail",
    "traits": {"tier": "string", "lifetime_value": "number", "newsletter": "boolean"},
    "ttl_days": 30,
    "allowed_destinations": ["demo-dsp"],
}
INTERESTS = {
    "id": "interest-graph",
    "name": "Interest Graph",
    "kind": "third",
    "id_type": "dmp",
    "traits": {"interest": "string", "affinity_score": "number"},
    "ttl_days": 60,
    "allowed_destinations": ["demo-dsp", "other-ssp"],
}


class ShortContext:
    """A Lambda context whose remaining time drops below the importer's reserve after
    `calls` checks: the invocation must stop and hand over to a continuation."""

    function_name = "importer"
    aws_request_id = "short"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:importer"
    memory_limit_in_mb = 256
    function_version = "$LATEST"

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def get_remaining_time_in_millis(self) -> int:
        self.calls -= 1
        return 900_000 if self.calls > 0 else 1_000


@pytest.fixture
def importer(load_handler: Any, aws: Any) -> Any:
    bucket = SegmentsBucket(aws.bucket)
    bucket.put_json("sources/harbor-crm.json", CRM)
    bucket.put_json("sources/interest-graph.json", INTERESTS)
    return load_handler("importer")


def drop(aws: Any, key: str, body: bytes) -> str:
    s3 = boto3.client("s3")
    return s3.put_object(Bucket=aws.bucket, Key=key, Body=body)["ETag"].strip('"')


def run(aws: Any, importer: Any) -> int:
    """Every event waiting for the importer, run as Lambda would run them; how many were
    about a dropped file (the importer's own reports and checkpoints raise events too,
    which it ignores)."""
    outcomes: list[str] = []

    def handler(event: Any, context: Any) -> Any:
        answer = importer.handler(event, context)
        outcomes.append(answer["outcome"])
        return answer

    drain_imports(aws.import_queue_url, handler)
    return sum(1 for outcome in outcomes if outcome != "ignored")


def report(aws: Any, key: str) -> dict[str, Any]:
    return json.loads(boto3.client("s3").get_object(Bucket=aws.bucket, Key=key)["Body"].read())


def traits_of(aws: Any, visitor_id: str) -> dict[str, TraitRecord]:
    return {r.name: r for r in EventStore(aws.events_table).records_of(visitor_id) if isinstance(r, TraitRecord)}


def trait_items(aws: Any) -> list[dict[str, Any]]:
    return [i for i in EventStore(aws.events_table).scan() if i["event_id"]["S"].startswith("trait#")]


def test_a_third_party_csv_sets_typed_traits_that_expire_after_the_sources_ttl(aws: Any, importer: Any) -> None:
    # GIVEN a third-party CSV keyed by our visitor ids, one row with a bad number
    body = b"id,interest,affinity_score\nvisitor-000001,outdoor,0.8\nvisitor-000002,cooking,high\nvisitor-000003,,3\n"
    drop(aws, "imports/interest-graph/week-48.csv", body)
    # WHEN the importer runs on the S3 event
    assert run(aws, importer) >= 1
    # THEN each valid row's traits are stored under <source>.<trait>, typed
    first = traits_of(aws, "visitor-000001")
    assert {name: t.value for name, t in first.items()} == {
        "interest-graph.interest": "outdoor",
        "interest-graph.affinity_score": 0.8,
    }
    assert traits_of(aws, "visitor-000003")["interest-graph.affinity_score"].value == 3.0
    # AND they expire ttl_days after the file's time
    trait = first["interest-graph.interest"]
    assert trait.expires_at == trait.ts_ms // 1000 + 60 * DAY_SECONDS
    # AND the report counts the rows and names the rejected one by line
    written = report(aws, "imports/interest-graph/week-48.report.json")
    assert (written["rows"], written["stored"], written["unresolved"], written["status"]) == (3, 2, 0, "done")
    assert written["rejected"] == [{"line": 3, "error": "trait 'affinity_score': expected a number, got 'high'"}]


def test_a_gzip_jsonl_file_is_streamed_and_checked_against_the_declared_types(aws: Any, importer: Any) -> None:
    # GIVEN a gzip JSON Lines file with a boolean where a string is declared and an undeclared trait
    lines = [
        {"id": "visitor-000001", "traits": {"interest": "travel", "affinity_score": 1}},
        {"id": "visitor-000002", "traits": {"interest": True}},
        {"id": "visitor-000003", "traits": {"shoe_size": 42}},
        "not an object",
    ]
    body = gzip.compress("\n".join(json.dumps(line) for line in lines).encode())
    drop(aws, "imports/interest-graph/daily.jsonl.gz", body)
    # WHEN it is imported
    run(aws, importer)
    # THEN only the valid line is stored, and the others are rejected with their line
    written = report(aws, "imports/interest-graph/daily.report.json")
    assert (written["rows"], written["stored"]) == (4, 1)
    assert [r["line"] for r in written["rejected"]] == [2, 3, 4]
    assert "expected a string" in written["rejected"][0]["error"]
    assert "undeclared trait 'shoe_size'" in written["rejected"][1]["error"]
    assert traits_of(aws, "visitor-000001")["interest-graph.affinity_score"].value == 1.0


def test_partner_ids_resolve_through_its_sync_mappings_and_unknown_ones_are_counted(aws: Any, importer: Any) -> None:
    # GIVEN Harbor synced one of its customer ids with our visitor, and not the other
    now = int(datetime.now(UTC).timestamp())
    IdMapStore(aws.id_map_table).put("harbor-retail", "cust-1", "visitor-000009", at_s=now, expires_at=now + 3600)
    drop(aws, "imports/harbor-crm/tiers.csv", b"id,tier,newsletter\ncust-1,gold,true\ncust-2,silver,false\n")
    # WHEN its CRM file is imported
    run(aws, importer)
    # THEN the synced customer's traits land on our visitor, and the other is unresolved, not stored
    assert {n: t.value for n, t in traits_of(aws, "visitor-000009").items()} == {
        "harbor-crm.tier": "gold",
        "harbor-crm.newsletter": True,
    }
    written = report(aws, "imports/harbor-crm/tiers.report.json")
    assert (written["rows"], written["stored"], written["unresolved"]) == (2, 1, 1)
    assert len(trait_items(aws)) == 2


def test_suppressed_visitors_are_skipped(aws: Any, importer: Any) -> None:
    # GIVEN a visitor who opted out
    SuppressionStore(aws.suppression_table).suppress(["visitor-000002"], reason="optout", at_s=0, keep_seconds=10**9)
    drop(aws, "imports/interest-graph/w.csv", b"id,interest\nvisitor-000001,travel\nvisitor-000002,travel\n")
    # WHEN a file names it
    run(aws, importer)
    # THEN nothing is stored about it
    assert traits_of(aws, "visitor-000002") == {}
    assert traits_of(aws, "visitor-000001") != {}
    assert report(aws, "imports/interest-graph/w.report.json")["suppressed"] == 1


def test_the_same_file_delivered_again_stores_nothing_twice(aws: Any, importer: Any) -> None:
    # GIVEN a file imported once
    etag = drop(aws, "imports/interest-graph/w.csv", b"id,interest\nvisitor-000001,travel\n")
    run(aws, importer)
    first = report(aws, "imports/interest-graph/w.report.json")
    # WHEN S3's event is delivered again (and the same content is uploaded again)
    event = {
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": aws.bucket}, "object": {"key": "imports/interest-graph/w.csv", "eTag": etag}},
    }
    again = importer.handler(event, ShortContext(10**6))
    drop(aws, "imports/interest-graph/w.csv", b"id,interest\nvisitor-000001,travel\n")
    run(aws, importer)
    # THEN it is recognised, and the table holds the one trait item it held
    assert again["outcome"] == "already imported"
    assert len(trait_items(aws)) == 1
    assert report(aws, "imports/interest-graph/w.report.json")["finished_at"] == first["finished_at"]


def test_a_large_file_continues_across_invocations_from_its_checkpoint(aws: Any, importer: Any) -> None:
    # GIVEN a file of 1000 rows and an invocation whose time runs out after 3 chunks
    rows = "".join(f"visitor-{i:06d},{'travel' if i % 2 else 'cooking'}\n" for i in range(1000))
    etag = drop(aws, "imports/interest-graph/big.csv", ("id,interest\n" + rows).encode())
    sqs = boto3.client("sqs")
    [message] = sqs.receive_message(QueueUrl=aws.import_queue_url, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message(QueueUrl=aws.import_queue_url, ReceiptHandle=message["ReceiptHandle"])
    # WHEN the importer runs on the file's event
    first = importer.handler(json.loads(message["Body"]), ShortContext(3))
    # THEN it stopped after 300 rows, saved where it was and asked to be invoked again
    assert first["outcome"] == "continued" and first["rows"] == 300
    progress = report(aws, "imports/interest-graph/big.progress.json")
    assert (progress["etag"], progress["line"]) == (etag, 301)
    assert len(trait_items(aws)) == 300
    # AND the continuation (an EventBridge event the same rule delivers) finishes from there
    written_before = len(trait_items(aws))
    assert run(aws, importer) == 1
    final = report(aws, "imports/interest-graph/big.report.json")
    assert (final["rows"], final["stored"], final["status"]) == (1000, 1000, "done")
    assert len(trait_items(aws)) == 1000 and written_before == 300
    # AND the rows were written in full batches: 1000 rows, 40 BatchWriteItem requests
    assert final["write_requests"] == 40


@pytest.mark.parametrize(
    ("key", "body", "error"),
    [
        ("imports/interest-graph/list.xml", b"<visitors/>", "not a CSV or JSON Lines file"),
        ("imports/interest-graph/bad.csv", b"uid,interest\nvisitor-000001,x\n", "a CSV header is id,<trait>"),
        ("imports/interest-graph/extra.csv", b"id,shoe_size\nvisitor-000001,42\n", "undeclared trait 'shoe_size'"),
        ("imports/nobody/x.csv", b"id,a\nvisitor-000001,1\n", "unknown source 'nobody'"),
    ],
)
def test_a_bad_file_is_reported_and_not_retried(aws: Any, importer: Any, key: str, body: bytes, error: str) -> None:
    # GIVEN a file that cannot be imported
    drop(aws, key, body)
    # WHEN the importer runs on its event
    run(aws, importer)
    # THEN its report says why, the invocation succeeded (nothing left to retry), nothing is stored
    name = key.rsplit("/", 1)[1]
    name = name.split(".")[0] if name.endswith((".csv", ".jsonl")) else name
    written = report(aws, key.rsplit("/", 1)[0] + f"/{name}.report.json")
    assert written["status"] == "failed" and error in written["error"]
    assert run(aws, importer) == 0
    assert trait_items(aws) == []


def test_a_build_uses_imported_traits_and_a_visitor_known_only_from_imports(aws: Any, importer: Any) -> None:
    from functions.builder.build import build

    # GIVEN a segment on an imported trait, and a visitor with no event at all
    SegmentsBucket(aws.bucket).put_json(
        "segments/travellers.json",
        {
            "id": "travellers",
            "name": "Travel lovers",
            "destinations": ["other-ssp"],
            "rule": {"all": [{"trait": {"name": "interest-graph.interest", "equals": "travel"}}]},
        },
    )
    drop(aws, "imports/interest-graph/w.csv", b"id,interest\nvisitor-000001,travel\nvisitor-000002,cooking\n")
    run(aws, importer)
    # WHEN a build runs
    result = build(aws.build_stores(), datetime.now(UTC), retention_seconds=aws.retention_seconds)
    # THEN the imported visitor is a member
    [segment] = result.manifest.segments
    members = [m for path in segment.files for m in SegmentsBucket(aws.bucket).read_members(path)]
    assert members == ["visitor-000001"]
