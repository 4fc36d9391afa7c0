"""The build's stages over in-memory stores (tests/fakes.py): the logic of plan, shard
and publish, with no emulator. The same stages on moto, through the handler as Step
Functions calls it, are in tests/integration/test_build_stages.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.builder.build import build
from functions.builder.plan import plan_build
from functions.builder.publish import publish
from functions.builder.shard import run_shard
from functions.builder.stores import BuildStores
from functions.core import layout
from functions.core.documents import LatestPointer, Manifest, MembershipState
from functions.core.records import EventRecord
from functions.core.storage.membership import Membership
from functions.core.times import DAY_SECONDS
from tests.fakes import MemoryBucket, MemoryCatalog, MemoryEvents, MemoryMembership, MemorySuppression

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
RETENTION = 90 * DAY_SECONDS
DEFINITIONS = {
    "london": "id: london\nname: Londoners\ndestinations: [demo-dsp]\nrule: {geo: {city: London}}\n",
    "pricing": "id: pricing\nname: Pricing viewers\nrule: {event: {url_contains: /pricing, within_days: 7}}\n",
}


def visit(visitor_id: str, days_ago: float, url: str, city: str) -> tuple[str, EventRecord]:
    ts_ms = int((NOW - timedelta(days=days_ago)).timestamp() * 1000)
    return visitor_id, EventRecord(
        ts_ms=ts_ms, name="page_view", url=url, city=city, expires_at=ts_ms // 1000 + 90 * DAY_SECONDS
    )


TRAFFIC = [
    visit("visitor-london-1", 1, "https://shop.example/pricing", "London"),
    visit("visitor-london-2", 20, "https://shop.example/", "London"),
    visit("visitor-paris-01", 2, "https://shop.example/pricing", "Paris"),
    visit("visitor-berlin-1", 3, "https://shop.example/blog", "Berlin"),
]


def stores_with(records: list[tuple[str, EventRecord]]) -> BuildStores:
    bucket = MemoryBucket()
    for segment_id, text in DEFINITIONS.items():
        bucket.objects[layout.definition_key(segment_id).replace(".json", ".yaml")] = text.encode()
    return BuildStores(MemoryEvents(records), MemoryMembership(), bucket, MemoryCatalog(), MemorySuppression())


def members(stores: BuildStores, manifest: Manifest, segment_id: str) -> set[str]:
    segment = manifest.segment(segment_id)
    assert segment is not None and isinstance(stores.bucket, MemoryBucket)
    return {uid for key in segment.files for uid in stores.bucket.read_members(key)}


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_a_build_publishes_the_same_audiences_whatever_the_shard_count(shards: int) -> None:
    # GIVEN four visitors' events
    stores = stores_with(TRAFFIC)
    # WHEN a build runs with that many shards
    result = build(stores, NOW, shards, retention_seconds=RETENTION)
    # THEN the manifest, the part files, the membership and the catalog agree on the members
    manifest = result.manifest
    assert result.published and manifest.shards == shards
    assert members(stores, manifest, "london") == {"visitor-london-1", "visitor-london-2"}
    assert members(stores, manifest, "pricing") == {"visitor-london-1", "visitor-paris-01"}
    assert {s.id: s.size for s in manifest.segments} == {"london": 2, "pricing": 2}
    assert isinstance(stores.membership, MemoryMembership) and isinstance(stores.catalog, MemoryCatalog)
    assert stores.membership.items["visitor-london-1"].segments == frozenset({"london", "pricing"})
    assert "visitor-berlin-1" not in stores.membership.items
    assert stores.catalog.manifest == manifest
    # AND latest.json, written last, names the build
    assert stores.bucket.latest() == LatestPointer(manifest.build_id, layout.manifest_key(manifest.build_id))


def test_a_rebuild_with_no_new_events_writes_no_membership() -> None:
    stores = stores_with(TRAFFIC)
    build(stores, NOW, 2, retention_seconds=RETENTION)
    assert isinstance(stores.membership, MemoryMembership)
    stores.membership.writes = 0
    # WHEN the next hour's build finds the same events
    result = build(stores, NOW + timedelta(hours=1), 2, retention_seconds=RETENTION)
    # THEN it diffs against the published build and writes nothing
    assert result.membership_changes == 0 and stores.membership.writes == 0


def test_a_visitor_who_left_every_segment_is_deleted_from_the_membership() -> None:
    stores = stores_with(TRAFFIC)
    build(stores, NOW, 2, retention_seconds=RETENTION)
    # WHEN a week later both pricing visits have left the 7-day window
    result = build(stores, NOW + timedelta(days=7), 2, retention_seconds=RETENTION)
    # THEN the Parisian, in no segment now, is deleted; the Londoner keeps only London
    assert isinstance(stores.membership, MemoryMembership)
    assert "visitor-paris-01" not in stores.membership.items
    assert stores.membership.items["visitor-london-1"].segments == frozenset({"london"})
    assert result.membership_changes == 2


class UnreachableMembership(MemoryMembership):
    def apply(self, changes: object, build_id: str) -> int:
        raise ConnectionError("membership table unreachable")


def test_a_publish_cut_short_leaves_the_previous_build_and_finishes_when_run_again() -> None:
    stores = stores_with(TRAFFIC)
    first = build(stores, NOW, 1, retention_seconds=RETENTION).manifest
    # GIVEN a later build whose membership update fails
    plan = plan_build(stores.bucket, NOW + timedelta(days=7), 1)
    results = [run_shard(plan, 0, events=stores.events, bucket=stores.bucket)]
    with pytest.raises(ConnectionError):
        publish(plan, replace(stores, membership=UnreachableMembership()), results)
    # THEN readers still see the first build, and the table is marked as mid-update
    latest = stores.bucket.latest()
    assert latest is not None and latest.build_id == first.build_id
    assert stores.bucket.membership_state() == MembershipState(plan.build_id, complete=False)
    # WHEN publish runs again with the table reachable
    result = publish(plan, stores)
    # THEN the later build is published and the table is in step with it
    assert result.published
    assert stores.bucket.membership_state() == MembershipState(plan.build_id, complete=True)
    assert isinstance(stores.membership, MemoryMembership)
    assert set(stores.membership.items) == {"visitor-london-1", "visitor-london-2"}


def test_an_older_build_is_written_but_never_replaces_the_published_one() -> None:
    stores = stores_with(TRAFFIC)
    newer = build(stores, NOW + timedelta(hours=1), 1, retention_seconds=RETENTION).manifest
    # WHEN an older evaluation time is built after it
    older = build(stores, NOW, 1, retention_seconds=RETENTION)
    # THEN its manifest is written, but latest.json and the catalog keep the newer build
    assert older.published is False
    assert stores.bucket.manifest(older.manifest.build_id) == older.manifest
    latest = stores.bucket.latest()
    assert latest is not None and latest.build_id == newer.build_id
    assert isinstance(stores.catalog, MemoryCatalog) and stores.catalog.manifest == newer


def test_the_same_time_built_twice_is_one_build() -> None:
    stores = stores_with(TRAFFIC)
    first = build(stores, NOW, 2, retention_seconds=RETENTION)
    again = build(stores, NOW, 2, retention_seconds=RETENTION)
    assert again.repeated and again.manifest == first.manifest
    assert stores.bucket.build_ids() == [first.manifest.build_id]


def test_membership_of_a_member_expires_with_its_last_event() -> None:
    stores = stores_with(TRAFFIC)
    build(stores, NOW, 1, retention_seconds=RETENTION)
    assert isinstance(stores.membership, MemoryMembership)
    _, record = TRAFFIC[0]
    assert stores.membership.items["visitor-london-1"] == Membership(
        frozenset({"london", "pricing"}), record.expires_at
    )


# -- suppression -------------------------------------------------------------------------


def test_a_suppressed_visitor_is_in_no_part_file_and_gets_no_membership() -> None:
    # GIVEN a Londoner who opted out, whose events are still stored (erasure pending)
    stores = stores_with(TRAFFIC)
    assert isinstance(stores.suppression, MemorySuppression) and isinstance(stores.membership, MemoryMembership)
    stores.suppression.ids.add("visitor-london-1")
    # WHEN a build runs
    manifest = build(stores, NOW, 2, retention_seconds=RETENTION).manifest
    # THEN the visitor is in no segment, no part file and not in the membership table
    assert members(stores, manifest, "london") == {"visitor-london-2"}
    assert members(stores, manifest, "pricing") == {"visitor-paris-01"}
    assert "visitor-london-1" not in stores.membership.items
    # AND the records the build met are gone, the others kept
    assert isinstance(stores.events, MemoryEvents)
    assert {visitor for visitor, _ in stores.events.records} == {
        "visitor-london-2",
        "visitor-paris-01",
        "visitor-berlin-1",
    }


def test_an_opt_out_between_shards_and_publish_is_never_undone_by_the_publish() -> None:
    stores = stores_with(TRAFFIC)
    assert isinstance(stores.suppression, MemorySuppression) and isinstance(stores.membership, MemoryMembership)
    # GIVEN a build whose shards ran while the Parisian was not suppressed
    plan = plan_build(stores.bucket, NOW, 2)
    results = [run_shard(plan, s, events=stores.events, bucket=stores.bucket) for s in range(2)]
    # WHEN the Parisian opts out (suppressed, membership tombstoned) before publish
    stores.suppression.ids.add("visitor-paris-01")
    stores.membership.suppress(["visitor-paris-01"], expires_at=0)
    publish(plan, stores, results)
    # THEN publish wrote everyone else, and left the Parisian's tombstone alone
    assert set(stores.membership.items) == {"visitor-london-1", "visitor-london-2"}
    assert "visitor-paris-01" in stores.membership.tombstones
