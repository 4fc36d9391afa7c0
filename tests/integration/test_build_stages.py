"""The build's stages as Step Functions runs them (plan -> shards -> publish), failures
in any stage, and incremental membership between builds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from functions.builder.stores import BuildStores
from functions.core.documents import Manifest
from functions.core.layout import LATEST_KEY, MEMBERSHIP_STATE_KEY
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.catalog import CatalogStore, StoredCatalog
from functions.core.storage.membership import Membership, MembershipChange, MembershipStore, StoredMembership
from functions.core.times import DAY_SECONDS
from tests.integration.conftest import DAY_MS, PARIS, hit

AT = "2026-11-28T10:00:00Z"
LATER = "2026-11-28T11:00:00Z"


def run_stages(
    builder: Any, context: Any, at: str, shards: int, *, fail_shard: int | None = None, publish: bool = True
) -> dict[str, Any]:
    """What the state machine does: plan, then every shard, then publish (unless not
    `publish`: then the plan's answer)."""
    plan = builder.handler({"stage": "plan", "time": at, "shards": shards}, context)
    if plan["skip"]:
        return plan
    for shard in plan["shards"]:
        if shard == fail_shard:
            continue  # the Map state failed on this shard: the machine stops before publish
        builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": shard}, context)
    if fail_shard is not None or not publish:
        return plan
    return builder.handler({"stage": "publish", "build_id": plan["build_id"]}, context)


@pytest.fixture
def builder(load_handler: Any, traffic: Any) -> Any:
    return load_handler("builder")


def membership_of(table: str) -> dict[str, frozenset[str]]:
    """The segments of each visitor in one, as the last build wrote them."""
    return {v: stored.current.segments for v, stored in MembershipStore(table).scan() if stored.current is not None}


def test_stages_publish_the_same_build_as_one_process(builder, aws, lambda_context):
    staged = run_stages(builder, lambda_context, AT, shards=3)
    assert staged["build_id"] == "20261128T100000Z"
    staged_membership = membership_of(aws.membership_table)
    assert staged_membership  # the three visitors' segments
    # a full in-process build an hour later over the same events agrees
    single = builder.handler({"at": LATER, "shards": 1}, lambda_context)
    assert single["sizes"] == staged["sizes"]
    assert membership_of(aws.membership_table) == staged_membership


def test_a_shard_that_failed_leaves_the_previous_build_served(builder, aws, lambda_context):
    run_stages(builder, lambda_context, AT, shards=3)
    run_stages(builder, lambda_context, LATER, shards=3, fail_shard=1)
    bucket = SegmentsBucket(aws.bucket)
    assert bucket.get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"
    with pytest.raises(RuntimeError, match=r"shard 1 .* has no result"):
        builder.handler({"stage": "publish", "build_id": "20261128T110000Z"}, lambda_context)
    assert bucket.get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"


def test_a_publish_cut_short_is_finished_by_running_it_again(builder, aws, lambda_context, monkeypatch):
    run_stages(builder, lambda_context, AT, shards=2)
    before = membership_of(aws.membership_table)
    # GIVEN the membership update fails half-way through a later build's publish
    plan = builder.handler({"stage": "plan", "time": "2027-03-08T10:00:00Z", "shards": 2}, lambda_context)
    for shard in plan["shards"]:
        builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": shard}, lambda_context)
    reachable = builder.stores
    monkeypatch.setattr(builder, "stores", replace(reachable, membership=UnreachableMembership(reachable.membership)))
    with pytest.raises(ConnectionError):
        builder.handler({"stage": "publish", "build_id": plan["build_id"]}, lambda_context)
    # THEN readers still see the previous build, and the table is marked as mid-update
    bucket = SegmentsBucket(aws.bucket)
    assert bucket.get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"
    assert membership_of(aws.membership_table) == before
    assert bucket.get_json(MEMBERSHIP_STATE_KEY)["complete"] is False
    # WHEN the publish stage runs again (Step Functions retries it)
    monkeypatch.setattr(builder, "stores", reachable)
    builder.handler({"stage": "publish", "build_id": plan["build_id"]}, lambda_context)
    # THEN the build is published: 100 days on every event has expired, so nobody is left
    assert bucket.get_json(LATEST_KEY)["build_id"] == plan["build_id"]
    assert membership_of(aws.membership_table) == {}
    assert bucket.get_json(MEMBERSHIP_STATE_KEY) == {"build_id": plan["build_id"], "complete": True}


def test_the_same_scheduled_time_planned_twice_is_skipped_once_published(builder, aws, lambda_context):
    run_stages(builder, lambda_context, AT, shards=2)
    again = builder.handler({"stage": "plan", "time": AT, "shards": 2}, lambda_context)
    assert again == {"build_id": "20261128T100000Z", "skip": True, "shards": []}


def test_shards_diff_against_the_published_build_and_write_only_changes(builder, load_handler, aws, lambda_context):
    run_stages(builder, lambda_context, AT, shards=2)
    # GIVEN one new visitor in Paris after the first build
    ingest = load_handler("ingest")
    hit(ingest, lambda_context, "visitor-paris-2", 1795860000000, "https://shop.example/", PARIS)
    # WHEN the next build runs with the same shard count
    published = builder.handler({"at": LATER, "shards": 2}, lambda_context)
    # THEN only that visitor's membership is written
    bucket = SegmentsBucket(aws.bucket)
    manifest = bucket.get_json(f"builds/{published['build_id']}/manifest.json")
    results = [bucket.get_json(f"builds/{published['build_id']}/shards/part-{s:05d}.json") for s in range(2)]
    assert {r["changes_base"] for r in results} == {"20261128T100000Z"}
    assert sum(r["changes"] for r in results) == 1
    assert membership_of(aws.membership_table)["visitor-paris-2"] == frozenset({"all-visitors", "paris"})
    assert manifest["shards"] == 2


def stored_membership(table: str) -> dict[str, Membership]:
    return {v: stored.current for v, stored in MembershipStore(table).scan() if stored.current is not None}


def test_membership_expires_with_the_visitors_last_event(builder, aws, lambda_context):
    run_stages(builder, lambda_context, AT, shards=2)
    # the Parisian's only event is at now - 3 days; events are kept 90 days
    event_ms = 1795860000000 - 3 * DAY_MS
    stored = stored_membership(aws.membership_table)["visitor-paris-1"]
    assert stored.expires_at == event_ms // 1000 + 90 * DAY_SECONDS


def test_an_expired_membership_is_never_served_even_before_dynamodb_deletes_it(aws):
    store = MembershipStore(aws.membership_table)
    store.apply(
        {
            "visitor-expired-1": MembershipChange(Membership(frozenset({"paris"}), expires_at=1_000), None),
            "visitor-current-1": MembershipChange(Membership(frozenset({"paris"}), expires_at=4_000_000_000), None),
        },
        "b",
    )
    assert store.get("visitor-expired-1", as_of="b") == []
    assert store.get("visitor-current-1", as_of="b") == ["paris"]
    assert store.get_many(["visitor-expired-1", "visitor-current-1"], as_of="b") == {"visitor-current-1": ["paris"]}


def test_a_member_seen_again_gets_its_expiry_refreshed_once_it_moved_by_a_day(
    builder, load_handler, aws, lambda_context
):
    run_stages(builder, lambda_context, AT, shards=2)
    before = stored_membership(aws.membership_table)["visitor-paris-1"].expires_at
    ingest = load_handler("ingest")
    # GIVEN the Parisian (last seen 3 days ago) comes back: its data now lives 2 days longer
    hit(ingest, lambda_context, "visitor-paris-1", 1795860000000 + 3_600_000 - DAY_MS, "https://shop.example/", PARIS)
    # WHEN the next build runs
    published = builder.handler({"at": "2026-11-28T12:00:00Z", "shards": 2}, lambda_context)
    # THEN its membership is rewritten with the later expiry (same segments)
    after = stored_membership(aws.membership_table)["visitor-paris-1"]
    assert after.segments == frozenset({"all-visitors", "paris"})
    assert after.expires_at is not None and before is not None and after.expires_at > before + DAY_SECONDS
    assert published["build_id"] == "20261128T120000Z"


def test_publishing_keeps_only_the_latest_builds(builder, aws, lambda_context, monkeypatch):
    import functions.builder.publish as publish_module

    monkeypatch.setattr(publish_module, "KEEP_BUILDS", 2)
    for hour in ("08", "09", "10"):
        builder.handler({"at": f"2026-11-28T{hour}:00:00Z", "shards": 2}, lambda_context)
    bucket = SegmentsBucket(aws.bucket)
    # the two newest stay, whole; the oldest is gone, every file of it
    assert sorted(bucket.build_ids()) == ["20261128T090000Z", "20261128T100000Z"]
    assert bucket.get_json(LATEST_KEY)["build_id"] == "20261128T100000Z"
    assert bucket.get_json_if_exists("builds/20261128T080000Z/manifest.json") is None
    manifest = bucket.get_json("builds/20261128T090000Z/manifest.json")
    for segment in manifest["segments"]:
        for key in segment["files"]:
            assert bucket.get_bytes(key)  # raises NoSuchKey if a kept build lost a file
    # and the next build still diffs against the published one
    builder.handler({"at": "2026-11-28T11:00:00Z", "shards": 2}, lambda_context)
    result = bucket.get_json("builds/20261128T110000Z/shards/part-00000.json")
    assert result["changes_base"] == "20261128T100000Z"


# -- the catalog item ---------------------------------------------------------------


def stored_catalog(table: str) -> StoredCatalog:
    stored = CatalogStore(table).get()
    assert stored is not None, "no catalog item"
    return stored


class UnreachableMembership:
    """The membership table with every write failing, as when DynamoDB is unreachable."""

    def __init__(self, table: MembershipStore) -> None:
        self.table = table

    def scan(self) -> Iterator[tuple[str, StoredMembership]]:
        return self.table.scan()

    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]:
        return self.table.stored_many(visitor_ids)

    def apply(self, changes: Mapping[str, MembershipChange], build_id: str) -> int:
        raise ConnectionError("membership table unreachable")


class UnreachableCatalog:
    def put(self, manifest: Manifest) -> bool:
        raise ConnectionError("catalog table unreachable")


def without_catalog_table(builder: Any) -> BuildStores:
    """The builder's stores with the catalog table unreachable."""
    stores: BuildStores = builder.stores
    return replace(stores, catalog=UnreachableCatalog())


def test_publish_writes_the_catalog_item_of_latest_json_and_its_manifest(builder, aws, lambda_context):
    # WHEN a build is published through the stages
    run_stages(builder, lambda_context, AT, shards=2)
    # THEN the catalog item says what latest.json and its manifest say, part files aside
    bucket = SegmentsBucket(aws.bucket)
    latest = bucket.get_json(LATEST_KEY)
    manifest = bucket.get_json(latest["manifest"])
    stored = stored_catalog(aws.catalog_table)
    assert (stored.build_id, stored.manifest_key) == (latest["build_id"], latest["manifest"])
    assert stored.evaluated_at == manifest["evaluated_at"] == AT
    stored_manifest = stored.manifest()
    assert stored_manifest is not None
    assert [segment.to_json() for segment in stored_manifest.segments] == [
        {**segment, "files": []} for segment in manifest["segments"]
    ]


def test_a_publish_that_failed_after_latest_json_writes_the_catalog_item_when_run_again(
    builder, aws, lambda_context, monkeypatch
):
    run_stages(builder, lambda_context, AT, shards=2)
    # GIVEN a later build whose publish fails between latest.json and the catalog item
    reachable = builder.stores
    monkeypatch.setattr(builder, "stores", without_catalog_table(builder))
    with pytest.raises(ConnectionError):
        run_stages(builder, lambda_context, LATER, shards=2)
    assert SegmentsBucket(aws.bucket).get_json(LATEST_KEY)["build_id"] == "20261128T110000Z"
    assert stored_catalog(aws.catalog_table).build_id == "20261128T100000Z"
    # WHEN the publish stage runs again (Step Functions retries it)
    monkeypatch.setattr(builder, "stores", reachable)
    builder.handler({"stage": "publish", "build_id": "20261128T110000Z"}, lambda_context)
    # THEN the catalog item is the later build's
    assert stored_catalog(aws.catalog_table).build_id == "20261128T110000Z"


@pytest.mark.parametrize(
    "again", [{"stage": "plan", "time": AT, "shards": 2}, {"at": AT, "shards": 2}], ids=["plan-stage", "whole-build"]
)
def test_a_build_found_already_published_rewrites_its_catalog_item(builder, aws, lambda_context, monkeypatch, again):
    # GIVEN a build whose publish failed for good after latest.json: no catalog item
    reachable = builder.stores
    monkeypatch.setattr(builder, "stores", without_catalog_table(builder))
    with pytest.raises(ConnectionError):
        run_stages(builder, lambda_context, AT, shards=2)
    assert CatalogStore(aws.catalog_table).get() is None
    monkeypatch.setattr(builder, "stores", reachable)
    # WHEN the same scheduled time is run again, and found already published
    builder.handler(again, lambda_context)
    # THEN its catalog item is written all the same
    assert stored_catalog(aws.catalog_table).build_id == "20261128T100000Z"


def test_an_older_build_leaves_the_newer_builds_catalog_item(builder, aws, lambda_context):
    # GIVEN the later build published
    run_stages(builder, lambda_context, LATER, shards=2)
    # WHEN an older evaluation time is built after it
    run_stages(builder, lambda_context, AT, shards=2)
    # THEN the catalog item still holds the later build
    stored = stored_catalog(aws.catalog_table)
    assert (stored.build_id, stored.evaluated_at) == ("20261128T110000Z", LATER)
