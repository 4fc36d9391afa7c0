"""Ingest -> build -> lookup on moto, through the handlers and the events/ samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from functions.core.layout import LATEST_KEY, manifest_key
from functions.core.partners import key_hash, new_key
from functions.core.storage import aws as aws_plumbing
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.membership import MembershipStore
from functions.core.storage.partners import PartnerStore
from tests.conftest import load_event
from tests.integration.conftest import DEFINITIONS, push_definitions


def build(load_handler: Any, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
    return load_handler("builder").handler(event or load_event("scheduled_build"), context)


def members(bucket: str, manifest: dict[str, Any], segment_id: str) -> set[str]:
    store = SegmentsBucket(bucket)
    (segment,) = [s for s in manifest["segments"] if s["id"] == segment_id]
    return {uid for key in segment["files"] for uid in store.read_members(key)}


def test_scheduled_build_publishes_manifest_parts_latest_and_membership(traffic, load_handler, aws, lambda_context):
    # WHEN the scheduled build runs
    result = build(load_handler, lambda_context)
    # THEN the build is named after the scheduled time and published with latest.json
    assert result["build_id"] == "20261128T100000Z"
    assert result["evaluated_at"] == "2026-11-28T10:00:00Z"
    bucket = SegmentsBucket(aws.bucket)
    assert bucket.get_json(LATEST_KEY) == {"build_id": "20261128T100000Z", "manifest": manifest_key("20261128T100000Z")}
    manifest = bucket.get_json(manifest_key("20261128T100000Z"))
    assert {s["id"]: s["size"] for s in manifest["segments"]} == {"london-pricing": 1, "all-visitors": 3, "paris": 1}
    assert members(aws.bucket, manifest, "london-pricing") == {traffic["returning"]}
    assert members(aws.bucket, manifest, "paris") == {traffic["paris"]}
    # AND each part file is gzip CSV with the `uid` header
    key = manifest["segments"][0]["files"][0]
    assert key.startswith("builds/20261128T100000Z/segments/") and key.endswith(".csv.gz")
    # AND the membership table holds each visitor's segments
    membership = MembershipStore(aws.membership_table)
    assert sorted(membership.get(traffic["returning"], as_of=manifest["build_id"])) == [
        "all-visitors",
        "london-pricing",
    ]
    assert membership.get(traffic["paris"], as_of=manifest["build_id"]) == ["all-visitors", "paris"]


def test_results_do_not_depend_on_the_shard_count(traffic, load_handler, aws, lambda_context):
    one = build(load_handler, lambda_context, {"at": "2026-11-28T10:00:00Z", "shards": 1})
    three = build(load_handler, lambda_context, {"at": "2026-11-28T10:00:01Z", "shards": 3})
    assert one["sizes"] == three["sizes"]
    bucket = SegmentsBucket(aws.bucket)
    m1 = bucket.get_json(manifest_key(one["build_id"]))
    m3 = bucket.get_json(manifest_key(three["build_id"]))
    for segment_id in DEFINITIONS:
        assert members(aws.bucket, m1, segment_id) == members(aws.bucket, m3, segment_id)
    assert len(m3["segments"][0]["files"]) == 3


def test_the_same_scheduled_event_twice_makes_one_build(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    build(load_handler, lambda_context)
    keys = boto3.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix="builds/")["Contents"]
    assert {k["Key"].split("/")[1] for k in keys} == {"20261128T100000Z"}


@pytest.fixture
def membership_requests(aws: Any) -> Iterator[list[str]]:
    """Requests against the membership table by clients created from now on, through the
    event hooks of the session the storage adapters' DynamoDB clients come from."""
    table = aws.membership_table
    writes: list[str] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        tables = set(params.get("RequestItems", {})) | {params.get("TableName")}
        if table in tables:
            writes.append(model.name)

    aws_plumbing.session().register("provide-client-params.dynamodb.*", count)
    yield writes
    aws_plumbing.session().unregister("provide-client-params.dynamodb.*", count)


def test_a_rebuild_without_new_events_writes_no_membership(
    traffic, load_handler, aws, lambda_context, membership_requests
):
    writes = membership_requests
    build(load_handler, lambda_context, {"at": "2026-11-28T10:00:00Z"})
    # the first build writes the members (so the counting sees this table's writes) ...
    assert writes and set(writes) <= {"PutItem", "GetItem", "Scan"}
    writes.clear()
    # ... and a rebuild with no new events writes nothing
    build(load_handler, lambda_context, {"at": "2026-11-28T10:05:00Z"})
    assert [w for w in writes if w not in ("GetItem", "Scan", "BatchGetItem")] == []


def test_visitors_who_leave_every_segment_are_in_none_once_the_build_is_published(
    traffic, load_handler, aws, lambda_context
):
    first = build(load_handler, lambda_context)
    # 100 days later every event's 90-day retention has passed (DynamoDB may not have deleted them yet)
    later = build(load_handler, lambda_context, {"at": "2027-03-08T10:00:00Z"})
    stored = dict(MembershipStore(aws.membership_table).scan())
    # each visitor's item is kept with no segments, and the first build's for lookups
    # still serving it, only until a day after the build (its TTL)
    assert set(stored) == set(traffic.values())
    assert all(s.current is None and s.build_id == later["build_id"] and s.previous for s in stored.values())
    now_s = int(datetime(2027, 3, 8, 10, tzinfo=UTC).timestamp())
    assert all(
        s.as_of(first["build_id"], now_s) == s.previous and s.as_of(later["build_id"], now_s) is None
        for s in stored.values()
    )


def test_invalid_definitions_refuse_the_build_and_keep_the_published_one(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    push_definitions(aws.bucket, {"broken": {"id": "broken", "name": "x", "rule": {"all": []}}})
    with pytest.raises(Exception, match=r"segments/broken.json: rule.all"):
        build(load_handler, lambda_context, {"at": "2026-11-28T11:00:00Z"})
    assert SegmentsBucket(aws.bucket).get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"


def test_an_older_build_never_replaces_a_newer_published_one(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    build(load_handler, lambda_context, {"at": "2026-11-27T10:00:00Z"})
    assert SegmentsBucket(aws.bucket).get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"


# -- lookup ---------------------------------------------------------------------


@pytest.fixture
def published(traffic, load_handler, aws, lambda_context) -> dict[str, str]:
    build(load_handler, lambda_context)
    return traffic


def lookup_event(name: str, partner: str = "demo-dsp", **changes: Any) -> dict[str, Any]:
    event = load_event(name)
    event["requestContext"]["authorizer"] = {"principalId": partner, "partner": partner}
    event.update(changes)
    return event


def user_event(uid: str, partner: str = "demo-dsp", fmt: str | None = None) -> dict[str, Any]:
    event = lookup_event("lookup_user_get", partner)
    event["path"] = f"/v1/users/{uid}/segments"
    event["pathParameters"] = {"uid": uid}
    event["queryStringParameters"] = {"format": fmt} if fmt else None
    event["multiValueQueryStringParameters"] = {"format": [fmt]} if fmt else None
    return event


def answer(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def test_lookup_answers_a_visitors_segments_for_the_partner(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    response = lookup.handler(user_event(published["returning"]), lambda_context)
    assert response["statusCode"] == 200
    body = answer(response)
    assert body["uid"] == published["returning"]
    assert [s["id"] for s in body["segments"]] == ["all-visitors", "london-pricing"]
    assert body["segments"][1]["name"] == "Returning London visitors who viewed pricing"
    assert (body["build_id"], body["evaluated_at"]) == ("20261128T100000Z", "2026-11-28T10:00:00Z")
    assert "max-age" in response["multiValueHeaders"]["Cache-Control"][0]


def test_a_partner_sees_only_segments_that_name_it(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    other = answer(lookup.handler(user_event(published["paris"], "other-ssp"), lambda_context))
    demo = answer(lookup.handler(user_event(published["paris"], "demo-dsp"), lambda_context))
    assert [s["id"] for s in other["segments"]] == ["all-visitors", "paris"]
    assert [s["id"] for s in demo["segments"]] == ["all-visitors"]
    catalog = answer(lookup.handler(lookup_event("lookup_segments_get", "other-ssp"), lambda_context))
    assert {s["id"] for s in catalog["segments"]} == {"all-visitors", "paris"}


def test_openrtb_answer_uses_data_and_segment_objects(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    body = answer(lookup.handler(user_event(published["returning"], fmt="openrtb"), lambda_context))
    (data,) = body["user"]["data"]
    assert (data["id"], data["name"]) == ("dmp", "DMP")
    assert [s["id"] for s in data["segment"]] == ["all-visitors", "london-pricing"]
    assert "ext" not in data


def test_unknown_visitor_gets_an_empty_list_and_malformed_one_a_400(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    unknown = lookup.handler(user_event("never-seen-visitor"), lambda_context)
    assert unknown["statusCode"] == 200 and answer(unknown)["segments"] == []
    malformed = lookup.handler(user_event("bad!id"), lambda_context)
    assert malformed["statusCode"] == 400
    assert answer(malformed)["error"]["code"] == "invalid_request"


def test_batch_lookup_answers_in_request_order(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    event = lookup_event("lookup_batch_post")
    uids = [published["paris"], "unknown-visitor-01", published["returning"]]
    event["body"] = json.dumps({"uids": uids})
    body = answer(lookup.handler(event, lambda_context))
    assert [r["uid"] for r in body["results"]] == uids
    assert [[s["id"] for s in r["segments"]] for r in body["results"]] == [
        ["all-visitors"],
        [],
        ["all-visitors", "london-pricing"],
    ]
    assert body["build_id"] == "20261128T100000Z"


@pytest.mark.parametrize(
    "payload", [{"uids": [f"visitor-{i:04d}" for i in range(101)]}, {"uids": []}, {"uids": ["bad id"]}, {"x": 1}]
)
def test_batch_lookup_rejects_bad_bodies_with_400(published, load_handler, lambda_context, payload):
    lookup = load_handler("lookup")
    event = lookup_event("lookup_batch_post")
    event["body"] = json.dumps(payload)
    response = lookup.handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert answer(response)["error"]["code"] == "invalid_request"


def test_catalog_lists_size_build_and_update_time(published, load_handler, lambda_context):
    lookup = load_handler("lookup")
    body = answer(lookup.handler(lookup_event("lookup_segments_get"), lambda_context))
    entries = {s["id"]: s for s in body["segments"]}
    assert entries["london-pricing"]["size"] == 1
    assert entries["london-pricing"]["build_id"] == "20261128T100000Z"
    assert entries["london-pricing"]["updated_at"] == "2026-11-28T10:00:00Z"


def test_after_a_build_a_cold_lookup_answers_from_the_catalog_item_without_s3(
    published, load_handler, lambda_context, s3_clients_created
):
    # GIVEN a published build, and every S3 client created from now on counted
    # WHEN a fresh lookup (a cold start) answers a visitor and the catalog
    lookup = load_handler("lookup")
    visitor = answer(lookup.handler(user_event(published["returning"]), lambda_context))
    catalog = answer(lookup.handler(lookup_event("lookup_segments_get"), lambda_context))
    # THEN both are the build's, and the lookup never created an S3 client
    assert [s["id"] for s in visitor["segments"]] == ["all-visitors", "london-pricing"]
    assert visitor["build_id"] == "20261128T100000Z"
    assert {s["id"]: s["size"] for s in catalog["segments"]} == {"all-visitors": 3, "london-pricing": 1}
    assert s3_clients_created == []


def test_lookup_without_a_published_build_answers_empty(load_handler, aws, lambda_context):
    lookup = load_handler("lookup")
    response = lookup.handler(user_event("visitor-london-1"), lambda_context)
    assert response["statusCode"] == 200, response["body"]
    assert answer(response) == {"uid": "visitor-london-1", "segments": [], "build_id": None, "evaluated_at": None}


# -- authorizer -----------------------------------------------------------------


def authorizer_event(key: str) -> dict[str, Any]:
    event = load_event("authorizer_token")
    event["authorizationToken"] = f"Bearer {key}"
    return event


def test_authorizer_allows_a_known_key_and_names_the_partner(load_handler, aws, lambda_context):
    key = new_key()
    PartnerStore(aws.partners_table).add(key_hash(key), "demo-dsp", "2026-11-28T09:00:00+00:00")
    policy = load_handler("authorizer").handler(authorizer_event(key), lambda_context)
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:eu-west-1:123456789012:k9l8m7n6o5/prod/*/*"]
    assert policy["context"] == {"partner": "demo-dsp"}


def test_authorizer_denies_unknown_and_revoked_keys(load_handler, aws, lambda_context):
    key = new_key()
    partners = PartnerStore(aws.partners_table)
    partners.add(key_hash(key), "demo-dsp", "2026-11-28T09:00:00+00:00")
    authorizer = load_handler("authorizer")
    unknown = authorizer.handler(authorizer_event(new_key()), lambda_context)
    assert unknown["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert len(partners.revoke_keys("demo-dsp", "2026-11-28T10:00:00+00:00")) == 1
    revoked = authorizer.handler(authorizer_event(key), lambda_context)
    assert revoked["policyDocument"]["Statement"][0]["Effect"] == "Deny"


@pytest.mark.parametrize("token", ["", "Basic abc", "Bearer", "Bearer    "])
def test_authorizer_answers_unauthorized_without_a_bearer_key(load_handler, aws, lambda_context, token):
    event = load_event("authorizer_token")
    event["authorizationToken"] = token
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        load_handler("authorizer").handler(event, lambda_context)


def test_partner_keys_are_stored_only_as_hashes(aws):
    key = new_key()
    PartnerStore(aws.partners_table).add(key_hash(key), "demo-dsp", "2026-11-28T09:00:00+00:00")
    table = boto3.client("dynamodb").scan(TableName=aws.partners_table)["Items"]
    assert key not in json.dumps(table)
    assert table[0]["key_hash"]["S"] == key_hash(key)
