"""Real-time membership on moto (DESIGN.md, "Freshness"): a hit reaches a lookup through
the events table's stream and the evaluator without a build; the due index and the sweep;
the membership write's conditions; and a build afterwards writes nothing the stream wrote."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import boto3

from functions.core.storage.due import DueStore, minute_of
from functions.core.storage.membership import Membership, MembershipStore, Schedule
from functions.core.storage.suppression import SuppressionStore
from functions.core.times import DAY_MS, iso
from tests.integration.conftest import LONDON, PARIS, hit, push_definitions


def stream_batch(events_table: str) -> dict[str, Any]:
    """Every record of the events table's stream so far, in Lambda's event shape."""
    dynamodb = boto3.client("dynamodb")
    # botocore addresses a stream ARN's account (`<account>.streams-ddb...`), which moto's
    # in-process mock does not route; the regional endpoint it does.
    region = dynamodb.meta.region_name
    streams = boto3.client("dynamodbstreams", endpoint_url=f"https://streams.dynamodb.{region}.amazonaws.com")
    arn = dynamodb.describe_table(TableName=events_table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        records.extend(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])
    return {"Records": records}


def build_now(load_handler: Any, context: Any, offset_s: int = 0) -> str:
    at = datetime.fromtimestamp(int(time.time()) + 1 + offset_s, UTC)
    result = load_handler("builder").handler({"at": iso(at), "shards": 1}, context)
    return str(result["build_id"])


def test_a_hit_shows_in_lookups_without_a_build_and_the_next_build_writes_nothing_for_it(
    load_handler, aws, lambda_context
):
    # GIVEN a published build that knows one visitor
    push_definitions(aws.bucket)
    ingest = load_handler("ingest")
    now = int(time.time() * 1000)
    hit(ingest, lambda_context, "visitor-london-1", now - DAY_MS, "https://shop.example/", LONDON)
    published = build_now(load_handler, lambda_context)
    membership = MembershipStore(aws.membership_table)
    assert membership.get("visitor-paris-1", as_of=published) == []
    # WHEN a new visitor's hit arrives and the evaluator runs on the stream's batch
    hit(ingest, lambda_context, "visitor-paris-1", int(time.time() * 1000), "https://shop.example/blog", PARIS)
    result = load_handler("evaluator").handler(stream_batch(aws.events_table), lambda_context)
    # THEN the batch succeeded, and the lookup answers its segments at once, as of the published build
    assert result == {"batchItemFailures": []}
    assert membership.get("visitor-paris-1", as_of=published) == ["all-visitors", "paris"]
    stored = membership.stored_many(["visitor-paris-1"])["visitor-paris-1"]
    # as of the published build, and the same answer for a lookup whose catalog is a build older
    assert stored.build_id == published and stored.previous == stored.current
    assert membership.get("visitor-paris-1", as_of="20000101T000000Z") == ["all-visitors", "paris"]
    # AND the item says when it leaves "seen this month", and that it stays in "paris" as
    # long as its data lasts: so nothing is filed for the sweep, at either instant
    assert stored.schedule is not None and stored.current is not None
    assert stored.schedule == Schedule(stored.schedule.due_at, frozenset({"paris"}), stored.current.expires_at)
    assert membership.get("visitor-paris-1", as_of=published, now_s=stored.schedule.due_at) == ["paris"]
    due = DueStore(aws.due_table)
    for instant in (stored.schedule.due_at, stored.current.expires_at):
        assert due.visitors_due(minute_of(instant * 1000), _bucket("visitor-paris-1")) == []
    # WHEN the next build runs
    later = build_now(load_handler, lambda_context, offset_s=2)
    # THEN it found the visitor's membership written and wrote nothing for it
    again = membership.stored_many(["visitor-paris-1"])["visitor-paris-1"]
    assert again.build_id == published and again.current == stored.current
    assert membership.get("visitor-paris-1", as_of=later) == ["all-visitors", "paris"]


def _bucket(visitor_id: str) -> int:
    from functions.core.storage.due import bucket_of

    return bucket_of(visitor_id)


def test_the_write_never_replaces_a_tombstone_or_a_later_builds_item(aws):
    membership = MembershipStore(aws.membership_table)
    member = Membership(frozenset({"paris"}), None)
    # GIVEN a suppressed visitor, and one whose item a build being published wrote
    membership.suppress(["gone"], expires_at=int(time.time()) + 3600)
    membership.apply({}, "20261201T000000Z")
    assert membership.put_evaluated("pending", member, schedule=None, published="20261201T000000Z")
    # THEN the evaluator's writes as of an earlier published build are refused
    assert not membership.put_evaluated("gone", member, schedule=None, published="20261130T000000Z")
    nothing = Membership(frozenset())
    assert not membership.put_evaluated("pending", nothing, schedule=None, published="20261130T000000Z")
    assert membership.describe("gone")["suppressed"]  # type: ignore[index]
    assert membership.get("pending", as_of="20261201T000000Z") == ["paris"]


def test_a_lookup_answers_nothing_past_the_due_instant_until_the_sweep_re_evaluates(load_handler, aws, lambda_context):
    # GIVEN a visitor evaluated with a due instant that has passed (the sweep not run yet)
    push_definitions(aws.bucket)
    ingest = load_handler("ingest")
    now = int(time.time() * 1000)
    hit(ingest, lambda_context, "visitor-paris-1", now - DAY_MS, "https://shop.example/blog", PARIS)
    published = build_now(load_handler, lambda_context)
    membership = MembershipStore(aws.membership_table)
    past_due = now // 1000 - 120
    membership.put_evaluated(
        "visitor-paris-1", Membership(frozenset({"paris"}), None), schedule=Schedule(past_due), published=published
    )
    assert membership.get("visitor-paris-1", as_of=published) == []
    DueStore(aws.due_table).put_due({"visitor-paris-1": past_due * 1000})
    # WHEN the sweep runs
    result = load_handler("sweep").handler({}, lambda_context)
    # THEN it re-evaluated the visitor: the lookup answers again
    assert result["visitors"] == 1
    assert membership.get("visitor-paris-1", as_of=published) == ["all-visitors", "paris"]
    # AND the swept entry is left for the table's TTL to delete (free), not deleted
    swept = minute_of(past_due * 1000)
    assert DueStore(aws.due_table).visitors_due(swept, _bucket("visitor-paris-1")) == ["visitor-paris-1"]
    # AND the next run, past the checkpoint, never re-evaluates it
    assert load_handler("sweep").handler({}, lambda_context)["visitors"] == 0


def test_a_suppressed_visitor_is_never_evaluated_back(load_handler, aws, lambda_context):
    push_definitions(aws.bucket)
    ingest = load_handler("ingest")
    hit(ingest, lambda_context, "visitor-paris-1", int(time.time() * 1000), "https://shop.example/blog", PARIS)
    published = build_now(load_handler, lambda_context)
    SuppressionStore(aws.suppression_table).suppress(["visitor-paris-1"], reason="optout", at_s=0, keep_seconds=10**9)
    MembershipStore(aws.membership_table).suppress(["visitor-paris-1"], expires_at=10**10)
    load_handler("evaluator").handler(stream_batch(aws.events_table), lambda_context)
    assert MembershipStore(aws.membership_table).get("visitor-paris-1", as_of=published) == []
