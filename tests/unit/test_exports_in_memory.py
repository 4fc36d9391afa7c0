"""The export stage's delta logic over in-memory stores (tests/fakes.py): per-shard bases
and the full-file fallback, suppression, removal notices left by erasure, old exports.
The same stage on moto, through the handler, is in tests/integration/test_exports.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.builder import publish as publish_module
from functions.builder.build import build
from functions.builder.changes import MemberLine, member_line, read_member_lines
from functions.builder.export import export
from functions.builder.plan import plan_build
from functions.builder.publish import publish
from functions.builder.shard import run_shard
from functions.builder.stores import BuildStores
from functions.core import layout
from functions.core.erasure import RemovalNotice, removal_notices, scrub_builds
from functions.core.records import EventRecord, MappingRecord, Record
from functions.core.storage.bucket import LinesWriter
from functions.core.storage.membership import Membership
from functions.core.times import DAY_SECONDS
from tests.fakes import MemoryBucket, MemoryCatalog, MemoryEvents, MemoryMembership, MemorySuppression

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
RETENTION = 90 * DAY_SECONDS
DEFINITIONS = {
    "london": "id: london\nname: Londoners\ndestinations: [dsp]\nrule: {geo: {city: London}}\n",
    "pricing": "id: pricing\nname: Pricing\ndestinations: [dsp, ssp]\n"
    "rule: {event: {url_contains: /pricing, within_days: 7}}\n",
    "blog": "id: blog\nname: Blog readers\nrule: {event: {url_contains: /blog}}\n",
}


def visit(visitor_id: str, days_ago: float, url: str, city: str) -> tuple[str, Record]:
    ts_ms = int((NOW - timedelta(days=days_ago)).timestamp() * 1000)
    return visitor_id, EventRecord(
        ts_ms=ts_ms, name="page_view", url=url, city=city, expires_at=ts_ms // 1000 + 90 * DAY_SECONDS
    )


def synced(visitor_id: str, partner: str, partner_uid: str) -> tuple[str, Record]:
    return visitor_id, MappingRecord(partner, partner_uid, ts_ms=0)


TRAFFIC = [
    visit("visitor-london-1", 1, "https://shop.example/pricing", "London"),
    synced("visitor-london-1", "dsp", "DSP-1"),
    visit("visitor-london-2", 20, "https://shop.example/", "London"),
    visit("visitor-paris-01", 2, "https://shop.example/pricing", "Paris"),
    synced("visitor-paris-01", "ssp", "SSP-P"),
    visit("visitor-berlin-1", 3, "https://shop.example/blog", "Berlin"),
]


def stores_with(records: list[tuple[str, Record]]) -> BuildStores:
    bucket = MemoryBucket()
    for segment_id, text in DEFINITIONS.items():
        bucket.objects[f"{layout.DEFINITIONS_PREFIX}{segment_id}.yaml"] = text.encode()
    return BuildStores(MemoryEvents(records), MemoryMembership(), bucket, MemoryCatalog(), MemorySuppression())


def memory(stores: BuildStores) -> tuple[MemoryBucket, MemoryEvents, MemorySuppression]:
    assert isinstance(stores.bucket, MemoryBucket) and isinstance(stores.events, MemoryEvents)
    assert isinstance(stores.suppression, MemorySuppression)
    return stores.bucket, stores.events, stores.suppression


def rows(stores: BuildStores, key: str) -> set[str]:
    bucket, _, _ = memory(stores)
    _header, *lines = bucket.iter_lines(key)
    return set(lines)


def full(stores: BuildStores, partner: str, build_id: str) -> set[str]:
    return rows(stores, layout.export_full_key(partner, build_id))


def delta(stores: BuildStores, partner: str, build_id: str) -> set[str]:
    return rows(stores, layout.export_delta_key(partner, build_id))


def build_at(stores: BuildStores, hours: float, shards: int = 2) -> str:
    result = build(stores, NOW + timedelta(hours=hours), shards, retention_seconds=RETENTION)
    return result.manifest.build_id


# -- member lines --------------------------------------------------------------------------


def test_a_members_line_carries_partner_ids_only_when_there_are_some() -> None:
    assert member_line("visitor-1", ["b", "a"], 5) == '["visitor-1", ["a", "b"], 5]'
    assert member_line("visitor-1", ["a"], 5, {}) == '["visitor-1", ["a"], 5]'
    line = member_line("visitor-1", ["a"], 5, {"ssp": "S", "dsp": "D"})
    assert line == '["visitor-1", ["a"], 5, {"dsp": "D", "ssp": "S"}]'
    assert MemberLine.parse(line) == MemberLine("visitor-1", ("a",), 5, {"dsp": "D", "ssp": "S"})
    # AND both shapes read back as the same membership
    assert list(read_member_lines([line, '["visitor-2", ["a"], 6]'])) == [
        ("visitor-1", Membership(frozenset({"a"}), 5)),
        ("visitor-2", Membership(frozenset({"a"}), 6)),
    ]


# -- full and delta ------------------------------------------------------------------------


def test_each_partner_gets_its_visible_segments_in_its_own_ids_and_no_other_partner_s() -> None:
    stores = stores_with(TRAFFIC)
    build_id = build_at(stores, 0)
    assert full(stores, "dsp", build_id) == {
        "visitor-london-1,DSP-1,london|pricing",
        "visitor-london-2,,london",
        "visitor-paris-01,,pricing",
    }
    assert full(stores, "ssp", build_id) == {"visitor-london-1,,pricing", "visitor-paris-01,SSP-P,pricing"}
    # a segment naming no partner (blog) is exported to no one
    bucket, _, _ = memory(stores)
    assert {key.split("/")[1] for key in bucket.keys(layout.EXPORTS_PREFIX)} == {"dsp", "ssp"}


@pytest.mark.parametrize(("first", "second"), [(2, 2), (1, 3), (3, 1)], ids=["per-shard", "fallback", "fallback-2"])
def test_the_delta_is_the_change_of_the_visible_membership_whatever_the_shard_counts(first: int, second: int) -> None:
    stores = stores_with(TRAFFIC)
    one = build_at(stores, 0, first)
    # WHEN a week later the pricing visits have left the 7-day window, and a Berliner moved to London
    _, events, _ = memory(stores)
    moved = visit("visitor-berlin-1", -7, "https://shop.example/", "London")
    events.records = sorted([*events.records, moved], key=lambda pair: pair[0])
    two = build(stores, NOW + timedelta(days=7, hours=1), second, retention_seconds=RETENTION).manifest.build_id
    assert stores.bucket.manifest(one).shards == first and stores.bucket.manifest(two).shards == second
    # THEN each partner's delta says exactly who gained and lost which visible segment
    assert delta(stores, "dsp", two) == {
        "visitor-london-1,DSP-1,,pricing",
        "visitor-paris-01,,,pricing",
        "visitor-berlin-1,,london,",
    }
    assert delta(stores, "ssp", two) == {"visitor-london-1,,,pricing", "visitor-paris-01,SSP-P,,pricing"}
    assert full(stores, "ssp", two) == set()


def test_a_rebuild_with_no_changes_has_an_empty_delta_and_names_its_previous_export() -> None:
    stores = stores_with(TRAFFIC)
    one = build_at(stores, 0)
    two = build_at(stores, 1)
    assert delta(stores, "dsp", two) == set() and delta(stores, "ssp", two) == set()
    assert full(stores, "dsp", two) == full(stores, "dsp", one)
    pointer = stores.bucket.get_json(layout.export_latest_key("dsp"))
    assert pointer == {
        "build_id": two,
        "previous_build_id": one,
        "full": {"key": layout.export_full_key("dsp", two), "rows": 3},
        "delta": {"key": layout.export_delta_key("dsp", two), "rows": 0},
    }


def test_a_visitor_suppressed_after_its_shard_ran_leaves_the_export_and_is_removed() -> None:
    stores = stores_with(TRAFFIC)
    one = build_at(stores, 0)
    _, _, suppression = memory(stores)
    # GIVEN a build whose shards ran before the Londoner opted out
    plan = plan_build(stores.bucket, NOW + timedelta(hours=1), 2)
    results = [run_shard(plan, s, events=stores.events, bucket=stores.bucket) for s in range(2)]
    publish(plan, stores, results)
    suppression.ids.add("visitor-london-1")
    # WHEN the export stage runs
    export(plan.build_id, stores)
    # THEN the full file leaves it out and the delta removes it, in the partner's id
    assert not [row for row in full(stores, "dsp", plan.build_id) if "visitor-london-1" in row]
    assert delta(stores, "dsp", plan.build_id) == {"visitor-london-1,DSP-1,,london|pricing"}
    assert one < plan.build_id


def test_a_removal_notice_is_exported_once_and_then_dropped() -> None:
    stores = stores_with(TRAFFIC)
    one = build_at(stores, 0)
    bucket, events, suppression = memory(stores)
    # GIVEN the Londoner erased: suppressed, its events gone, scrubbed from every file,
    # with a notice kept first of what each partner's newest export held
    suppression.ids.add("visitor-london-1")
    events.delete_visitors(["visitor-london-1"])
    notices = removal_notices(bucket, frozenset({"visitor-london-1"}))
    assert notices == {"visitor-london-1": {"dsp": "DSP-1\tlondon|pricing", "ssp": "\tpricing"}}
    suppression.add_export_notices("visitor-london-1", notices["visitor-london-1"])
    removed, _ = scrub_builds(bucket, frozenset({"visitor-london-1"}))
    assert removed["visitor-london-1"] > 0
    assert not [k for k, v in bucket.objects.items() if k.endswith(".gz") and b"visitor-london-1" in _text(v)]
    # WHEN the next build exports
    two = build_at(stores, 1)
    # THEN each partner's delta removes it with what it had, and the notices are used up
    assert delta(stores, "dsp", two) == {"visitor-london-1,DSP-1,,london|pricing"}
    assert delta(stores, "ssp", two) == {"visitor-london-1,,,pricing"}
    assert suppression.notices == {"visitor-london-1": {}}
    assert one < two
    # AND the build after says nothing more of it
    three = build_at(stores, 2)
    assert delta(stores, "dsp", three) == set()


def test_a_notice_also_carries_what_the_newest_delta_removed() -> None:
    # GIVEN a partner's newest export whose delta removed a visitor (not yet fetched, perhaps)
    stores = stores_with(TRAFFIC)
    build_at(stores, 0)
    _, _, suppression = memory(stores)
    suppression.ids.add("visitor-paris-01")
    two = build_at(stores, 1)
    assert delta(stores, "ssp", two) == {"visitor-paris-01,SSP-P,,pricing"}
    # WHEN erasure looks for what the partners were sent
    bucket, _, _ = memory(stores)
    notices = removal_notices(bucket, frozenset({"visitor-paris-01"}))
    # THEN the removal is kept to be said again, since the scrub takes that delta line away
    assert notices == {"visitor-paris-01": {"dsp": "\tpricing", "ssp": "SSP-P\tpricing"}}
    assert RemovalNotice.parse(notices["visitor-paris-01"]["ssp"]) == RemovalNotice("SSP-P", ("pricing",))


def test_a_notice_written_while_the_export_ran_is_kept_for_the_next() -> None:
    suppression = MemorySuppression(["visitor-1"])
    suppression.add_export_notices("visitor-1", {"dsp": "\ta"})
    read = suppression.export_notices()["dsp"]["visitor-1"]
    suppression.add_export_notices("visitor-1", {"dsp": "\ta|b"})  # erased again, from a newer export
    assert suppression.clear_export_notice("visitor-1", "dsp", read) is False
    assert suppression.notices == {"visitor-1": {"dsp": "\ta|b"}}


def test_an_export_run_again_rewrites_the_same_files() -> None:
    stores = stores_with(TRAFFIC)
    build_at(stores, 0)
    bucket, _, _ = memory(stores)
    first_pointer = bucket.objects[layout.export_latest_key("dsp")]
    two = build_at(stores, 24 * 7)
    written = {k: v for k, v in bucket.objects.items() if k.startswith(layout.EXPORTS_PREFIX)}
    # GIVEN the stage cut short after dsp's files, before its latest.json
    bucket.objects[layout.export_latest_key("dsp")] = first_pointer
    # WHEN it is run again
    result = export(two, stores)
    # THEN dsp's files and pointer are written again, as the first run wrote them; ssp was done
    assert result["dsp"].written and not result["ssp"].written
    assert {k: v for k, v in bucket.objects.items() if k.startswith(layout.EXPORTS_PREFIX)} == written


def test_an_export_overtaken_by_a_newer_one_never_rolls_the_partner_back() -> None:
    stores = stores_with(TRAFFIC)
    build_at(stores, 0)
    bucket, _, suppression = memory(stores)
    suppression.ids.add("visitor-london-1")
    suppression.add_export_notices("visitor-london-1", {"dsp": "DSP-1\tlondon"})
    plan = plan_build(bucket, NOW + timedelta(hours=1), 2)
    publish(plan, stores, [run_shard(plan, s, events=stores.events, bucket=bucket) for s in range(2)])
    newer = {**bucket.get_json(layout.export_latest_key("dsp")), "build_id": "20261128T120000Z"}
    # GIVEN a newer build's export that finishes while this one writes its files
    upload = bucket.upload_lines

    def overtaken(key: str, writer: LinesWriter, *, content_type: str) -> None:
        upload(key, writer, content_type=content_type)
        if key == layout.export_delta_key("dsp", plan.build_id):
            bucket.put_json(layout.export_latest_key("dsp"), newer)

    bucket.upload_lines = overtaken  # type: ignore[method-assign]
    result = export(plan.build_id, stores)
    # THEN the partner's latest.json keeps the newer export, and the notice is kept for it
    assert not result["dsp"].written and result["ssp"].written
    assert bucket.get_json(layout.export_latest_key("dsp")) == newer
    assert suppression.notices == {"visitor-london-1": {"dsp": "DSP-1\tlondon"}}


def test_an_older_build_exports_nothing() -> None:
    stores = stores_with(TRAFFIC)
    newer = build_at(stores, 1)
    older = build(stores, NOW, 2, retention_seconds=RETENTION)
    assert older.published is False and older.exports == {}
    assert export(older.manifest.build_id, stores) == {}
    assert stores.bucket.get_json(layout.export_latest_key("dsp"))["build_id"] == newer


def test_old_exports_go_with_old_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish_module, "KEEP_BUILDS", 2)
    stores = stores_with(TRAFFIC)
    ids = [build_at(stores, hours) for hours in range(4)]
    bucket, _, _ = memory(stores)
    kept = {layout.export_of_key(k) for k in bucket.keys(layout.EXPORTS_PREFIX)} - {None}
    assert stores.bucket.build_ids() == ids[2:]
    assert kept == {(partner, build_id) for partner in ("dsp", "ssp") for build_id in ids[2:]}


def test_the_build_reports_each_partner_s_rows() -> None:
    stores = stores_with(TRAFFIC)
    result = build(stores, NOW, 2, retention_seconds=RETENTION)
    assert {p: e.rows() for p, e in result.exports.items()} == {
        "dsp": {"full": 3, "delta": 3},
        "ssp": {"full": 2, "delta": 2},
    }


def _text(body: bytes) -> bytes:
    import gzip

    return gzip.decompress(body)
