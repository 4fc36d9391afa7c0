"""Opt-out and erasure followed through every copy (DESIGN.md "Privacy"): one visitor
from hit to build to lookup, then `GET /optout` or `dmp erase`, then every store, every
object of the bucket and every earlier object version scanned for it."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from typing import Any

import boto3

from dmp import privacy
from functions.builder.export import DELTA_HEADER
from functions.core.erasure import visitor_hash
from functions.core.hits import Geo, TrackedEvent
from functions.core.storage.events import EventStore
from functions.core.storage.membership import MembershipStore
from functions.core.storage.suppression import SuppressionStore
from tests.conftest import load_event
from tests.integration.conftest import BUILD_TIME
from tests.integration.test_pipeline import answer, build, user_event

LATER = {"at": "2026-11-28T11:00:00Z"}


def optout_event(visitor_id: str | None, query: str = "") -> dict[str, Any]:
    event = load_event("optout_get")
    event["cookies"] = [f"dmp_uid={visitor_id}"] if visitor_id else None
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(p.split("=") for p in query.split("&")) if query else None
    return event


def segments_of(load_handler: Any, context: Any, visitor_id: str) -> list[str]:
    response = load_handler("lookup").handler(user_event(visitor_id), context)
    assert response["statusCode"] == 200, response["body"]
    return [s["id"] for s in answer(response)["segments"]]


def everything_in_the_bucket(bucket: str) -> list[str]:
    """The text of every object and every earlier version of it (gzip opened)."""
    s3 = boto3.client("s3")
    texts = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
            texts.append(gzip.decompress(body).decode() if version["Key"].endswith(".gz") else body.decode())
    return texts


def assert_gone_everywhere(aws: Any, visitor_id: str) -> None:
    assert EventStore(aws.events_table).records_of(visitor_id) == []
    held = MembershipStore(aws.membership_table).describe(visitor_id)
    assert held is None or (held["segments"], held["previous_segments"], held["next_segments"], held["later"]) == (
        [],
        [],
        [],
        [],
    )
    assert visitor_id not in dict(MembershipStore(aws.membership_table).scan())
    texts = everything_in_the_bucket(aws.bucket)
    assert texts, "the bucket holds the builds"
    # Kept on purpose, and only these: a partner delta's `removed` line for the visitor
    # (`<uid>,<partner_uid>,,<segments>`), how the partner learns to delete its own copy
    # (functions/builder/export.py). Any other line naming the visitor still fails.
    removal = re.compile(rf"^{re.escape(visitor_id)},[^,]*,,[^,]+$", re.MULTILINE)
    texts = [removal.sub("", t) if t.startswith(DELTA_HEADER + "\n") else t for t in texts]
    assert not [t for t in texts if visitor_id in t], "an object or an earlier version still names the visitor"


def test_an_opt_out_empties_lookups_at_once_and_the_next_build_erases_every_copy(
    traffic, load_handler, aws, lambda_context
):
    visitor = traffic["returning"]
    # GIVEN a published build in which the returning Londoner is in two segments
    build(load_handler, lambda_context)
    assert segments_of(load_handler, lambda_context, visitor) == ["all-visitors", "london-pricing"]
    # WHEN the visitor opts out through /optout with its cookie
    response = load_handler("ingest").handler(optout_event(visitor), lambda_context)
    # THEN the answer is the GIF, remembers the opt-out for five years and drops the visitor id
    assert (response["statusCode"], response["headers"]["Content-Type"]) == (200, "image/gif")
    assert any(c.startswith("dmp_optout=1;") and "Max-Age=157680000" in c for c in response["cookies"])
    assert any(c.startswith("dmp_uid=;") and "Max-Age=0" in c for c in response["cookies"])
    # AND from that moment the lookup answers no segments, with no rebuild
    assert segments_of(load_handler, lambda_context, visitor) == []
    suppression = SuppressionStore(aws.suppression_table).get(visitor)
    assert suppression is not None and suppression.reason == "optout" and suppression.erased_at is None
    # WHEN the next build runs
    result = build(load_handler, lambda_context, LATER)
    # THEN the visitor is in none of its segments, and no copy of it is left anywhere
    assert result["sizes"] == {"all-visitors": 2, "london-pricing": 0, "paris": 1}
    assert_gone_everywhere(aws, visitor)
    assert segments_of(load_handler, lambda_context, visitor) == []
    # AND the erasure is on record, by the opt-out, under the id's hash alone
    (record,) = privacy.audit_records(aws)
    assert (record["by"], record["visitor_sha256"]) == ("optout", visitor_hash(visitor))
    opted_out_at = datetime.fromtimestamp(load_event("optout_get")["requestContext"]["timeEpoch"] // 1000, UTC)
    assert record["requested_at"] == opted_out_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert record["deleted"]["events_and_traits"] == 2
    assert visitor not in str(record)
    assert SuppressionStore(aws.suppression_table).get(visitor).erased_at is not None  # type: ignore[union-attr]
    # AND the others are untouched
    assert segments_of(load_handler, lambda_context, traffic["once"]) == ["all-visitors"]
    assert segments_of(load_handler, lambda_context, traffic["paris"]) == ["all-visitors"]


def test_an_opt_out_without_a_visitor_cookie_only_sets_the_opt_out_cookie(load_handler, aws, lambda_context):
    response = load_handler("ingest").handler(optout_event(None, "format=html"), lambda_context)
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"].startswith("text/html")
    assert "opted out" in response["body"]
    assert any(c.startswith("dmp_optout=1;") for c in response["cookies"])
    assert list(SuppressionStore(aws.suppression_table).scan()) == []


def test_dmp_erase_reaches_every_copy_at_once_and_a_later_build_never_brings_the_visitor_back(
    traffic, load_handler, aws, lambda_context
):
    visitor = traffic["once"]
    # GIVEN two builds, so the visitor is in the part files of both and in earlier versions
    build(load_handler, lambda_context)
    build(load_handler, lambda_context, LATER)
    # WHEN the operator erases the visitor
    (record,) = privacy.erase([visitor], aws, now=datetime(2026, 11, 28, 11, 30, tzinfo=UTC))
    # THEN every copy is gone at once, the earlier builds' part files included
    assert_gone_everywhere(aws, visitor)
    assert (record.by, record.deleted["events_and_traits"]) == ("cli", 2)
    assert record.deleted["build_lines"] > 0 and record.deleted["object_versions_purged"] > 0
    # AND a hit naming it afterwards (an app still sending its `uid`) stores nothing, at once
    ingest = load_handler("ingest")
    event = load_event("pixel_get")
    event["rawQueryString"] = f"e=page_view&url=https%3A%2F%2Fshop.example%2Fpricing&uid={visitor}"
    event["requestContext"]["timeEpoch"] = int(BUILD_TIME.timestamp() * 1000)
    response = ingest.handler(event, lambda_context)
    assert (response["statusCode"], response["headers"]["Content-Type"]) == (200, "image/gif")
    assert EventStore(aws.events_table).records_of(visitor) == []
    # AND one that reached the table all the same (written as the erasure ran) builds nothing back
    raced = TrackedEvent(
        visitor_id=visitor,
        event_id="raced",
        ts_ms=event["requestContext"]["timeEpoch"],
        name="page_view",
        url="https://shop.example/pricing",
        geo=Geo(city="London"),
    )
    EventStore(aws.events_table).put_item(EventStore.to_item(raced, 90 * 86400))
    result = build(load_handler, lambda_context, {"at": "2026-11-28T12:00:00Z"})
    assert result["sizes"]["london-pricing"] == 1  # the returning Londoner alone
    assert segments_of(load_handler, lambda_context, visitor) == []
    assert visitor not in dict(MembershipStore(aws.membership_table).scan())
    # AND the build that met the hit deleted it
    assert EventStore(aws.events_table).records_of(visitor) == []


def test_a_suppressed_visitor_s_hits_are_refused_at_once_on_every_device(traffic, load_handler, aws, lambda_context):
    visitor = traffic["returning"]
    build(load_handler, lambda_context)
    stored_before = len(EventStore(aws.events_table).records_of(visitor))
    # GIVEN the visitor opted out in one browser
    load_handler("ingest").handler(optout_event(visitor), lambda_context)
    # WHEN a hit arrives with the same id from elsewhere (no opt-out cookie there), by the
    # pixel and by /collect
    pixel = load_event("pixel_get")
    pixel["cookies"] = [f"dmp_uid={visitor}"]
    pixel_answer = load_handler("ingest").handler(pixel, lambda_context)
    collect = load_event("collect_post")
    collect["cookies"] = None
    collect["body"] = json.dumps({"uid": visitor, "events": [{"e": "page_view", "url": "https://shop.example/"}]})
    collect_answer = load_handler("ingest").handler(collect, lambda_context)
    # THEN nothing is stored, each answer says so, and the browser is told to forget the id
    assert len(EventStore(aws.events_table).records_of(visitor)) == stored_before
    assert pixel_answer["headers"]["Content-Type"] == "image/gif"
    assert any(c.startswith("dmp_uid=;") and "Max-Age=0" in c for c in pixel_answer["cookies"])
    assert json.loads(collect_answer["body"]) == {"accepted": 0, "rejected": [], "not_stored": "suppressed"}
    # AND a visitor nobody suppressed is stored as before
    other = load_event("pixel_get")
    other["cookies"] = [f"dmp_uid={traffic['paris']}"]
    load_handler("ingest").handler(other, lambda_context)
    assert len(EventStore(aws.events_table).records_of(traffic["paris"])) == 2


def test_a_refused_hit_from_a_known_visitor_suppresses_it(traffic, load_handler, aws, lambda_context):
    visitor = traffic["paris"]
    build(load_handler, lambda_context)
    # WHEN the Parisian's browser sends Global Privacy Control with its cookie
    event = load_event("pixel_get")
    event["headers"]["sec-gpc"] = "1"
    event["cookies"] = [f"dmp_uid={visitor}"]
    response = load_handler("ingest").handler(event, lambda_context)
    # THEN nothing more is served about it, at once, and the browser forgets the id
    assert segments_of(load_handler, lambda_context, visitor) == []
    assert [c for c in response.get("cookies") or [] if c.startswith("dmp_uid=")] == [
        "dmp_uid=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=None"
    ]
    suppression = SuppressionStore(aws.suppression_table).get(visitor)
    assert suppression is not None and suppression.reason == "gpc"


def test_an_opt_out_while_a_build_is_between_shards_and_publish_is_not_undone(
    traffic, load_handler, aws, lambda_context
):
    visitor = traffic["returning"]
    builder = load_handler("builder")
    # GIVEN a first build whose shards have run: its publish writes every member
    plan = builder.handler({"stage": "plan", "time": "2026-11-28T11:00:00Z"}, lambda_context)
    for shard in plan["shards"]:
        builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": shard}, lambda_context)
    # WHEN the visitor opts out before its publish
    load_handler("ingest").handler(optout_event(visitor), lambda_context)
    builder.handler({"stage": "publish", "build_id": plan["build_id"]}, lambda_context)
    # THEN the published build does not bring the visitor back into the lookups
    assert segments_of(load_handler, lambda_context, visitor) == []
    assert segments_of(load_handler, lambda_context, traffic["once"]) == ["all-visitors"]
    assert MembershipStore(aws.membership_table).describe(visitor)["suppressed"] is True  # type: ignore[index]
