"""Partner exports on the local stack (DESIGN.md "Exports"): after each publish, every
destination partner gets `exports/<partner>/<build_id>/full.csv.gz` and `delta.csv.gz` in
its own ids, then `exports/<partner>/latest.json`; opt-outs and erasures are in the next
delta's `removed`, and in no other file or object version.

The traffic (tests/integration/conftest.py): `visitor-london-1` (returning, saw pricing:
`all-visitors` and `london-pricing`), `visitor-london-2` (one visit: `all-visitors`),
`visitor-paris-1` (`all-visitors` and `paris`). `demo-dsp` sees `london-pricing` and
`all-visitors`; `other-ssp` sees `all-visitors` and `paris`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from dmp import privacy
from functions.core import layout
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.events import EventStore
from functions.core.storage.suppression import SuppressionStore
from functions.core.times import DAY_SECONDS
from tests.integration.conftest import BUILD_TIME, DEFINITIONS, push_definitions
from tests.integration.test_pipeline import build
from tests.integration.test_privacy import assert_gone_everywhere, everything_in_the_bucket, optout_event

FIRST = "20261128T100000Z"  # the scheduled build's id
LATER = {"at": "2026-11-28T11:00:00Z"}
FULL_HEADER = "uid,partner_uid,segments"
DELTA_HEADER = "uid,partner_uid,added,removed"


def latest_export(bucket: str, partner: str) -> dict[str, Any]:
    return SegmentsBucket(bucket).get_json(layout.export_latest_key(partner))


def lines(bucket: str, key: str) -> tuple[str, set[str]]:
    """(header, rows) of a gzip CSV export file."""
    header, *rows = SegmentsBucket(bucket).iter_lines(key)
    return header, set(rows)


def full_rows(bucket: str, partner: str, build_id: str) -> set[str]:
    header, rows = lines(bucket, layout.export_full_key(partner, build_id))
    assert header == FULL_HEADER
    return rows


def delta_rows(bucket: str, partner: str, build_id: str) -> set[str]:
    header, rows = lines(bucket, layout.export_delta_key(partner, build_id))
    assert header == DELTA_HEADER
    return rows


def expected_delta(before: set[str], after: set[str]) -> set[str]:
    """The delta two full files imply: per visitor, the segments added and removed."""

    def parse(rows: set[str]) -> dict[str, tuple[str, set[str]]]:
        parsed = {}
        for row in rows:
            uid, partner_uid, segments = row.split(",")
            parsed[uid] = (partner_uid, set(segments.split("|")))
        return parsed

    old, new = parse(before), parse(after)
    delta = set()
    for uid in old.keys() | new.keys():
        old_uid, old_segments = old.get(uid, ("", set()))
        new_uid, new_segments = new.get(uid, ("", set()))
        if old_segments != new_segments:
            added, removed = (
                "|".join(sorted(new_segments - old_segments)),
                "|".join(sorted(old_segments - new_segments)),
            )
            delta.add(f"{uid},{new_uid or old_uid},{added},{removed}")
    return delta


def export_keys(bucket: str) -> set[str]:
    return set(SegmentsBucket(bucket).keys(layout.EXPORTS_PREFIX))


def sync(aws: Any, visitor_id: str, partner: str, partner_uid: str) -> None:
    at_s = int(BUILD_TIME.timestamp()) - DAY_SECONDS
    EventStore(aws.events_table).put_mapping(
        visitor_id, partner, partner_uid, ts_ms=at_s * 1000, expires_at=at_s + 90 * DAY_SECONDS
    )


def test_a_first_build_exports_every_visible_member_to_each_named_partner_and_adds_everyone(
    traffic, load_handler, aws, lambda_context
):
    # WHEN the first scheduled build runs
    result = build(load_handler, lambda_context)
    # THEN each partner's full file lists the members of the segments it may see, and only those
    assert full_rows(aws.bucket, "demo-dsp", FIRST) == {
        "visitor-london-1,,all-visitors|london-pricing",
        "visitor-london-2,,all-visitors",
        "visitor-paris-1,,all-visitors",
    }
    assert full_rows(aws.bucket, "other-ssp", FIRST) == {
        "visitor-london-1,,all-visitors",
        "visitor-london-2,,all-visitors",
        "visitor-paris-1,,all-visitors|paris",
    }
    # AND with no previous export, the delta adds everyone
    assert delta_rows(aws.bucket, "demo-dsp", FIRST) == {
        "visitor-london-1,,all-visitors|london-pricing,",
        "visitor-london-2,,all-visitors,",
        "visitor-paris-1,,all-visitors,",
    }
    assert delta_rows(aws.bucket, "other-ssp", FIRST) == expected_delta(
        set(), full_rows(aws.bucket, "other-ssp", FIRST)
    )
    # AND latest.json, written last, is exactly the documented pointer
    assert latest_export(aws.bucket, "demo-dsp") == {
        "build_id": FIRST,
        "previous_build_id": None,
        "full": {"key": f"exports/demo-dsp/{FIRST}/full.csv.gz", "rows": 3},
        "delta": {"key": f"exports/demo-dsp/{FIRST}/delta.csv.gz", "rows": 3},
    }
    # AND the build reports each partner's rows, beside its usual answer
    assert result["sizes"] == {"london-pricing": 1, "all-visitors": 3, "paris": 1}
    assert result["exports"] == {"demo-dsp": {"full": 3, "delta": 3}, "other-ssp": {"full": 3, "delta": 3}}


def test_a_partner_no_segment_names_gets_no_files(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    partners = {key.split("/")[1] for key in export_keys(aws.bucket)}
    assert partners == {"demo-dsp", "other-ssp"}


def test_a_rebuild_with_no_changes_exports_an_empty_delta(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    # WHEN the next hour's build finds the same audiences
    second = build(load_handler, lambda_context, LATER)["build_id"]
    # THEN the full files are the same, and the deltas hold their header alone
    for partner in ("demo-dsp", "other-ssp"):
        assert full_rows(aws.bucket, partner, second) == full_rows(aws.bucket, partner, FIRST)
        assert delta_rows(aws.bucket, partner, second) == set()
        pointer = latest_export(aws.bucket, partner)
        assert (pointer["build_id"], pointer["previous_build_id"]) == (second, FIRST)
        assert (pointer["full"]["rows"], pointer["delta"]["rows"]) == (3, 0)


def test_a_rebuild_with_another_shard_count_takes_its_delta_against_the_previous_full_file(
    traffic, load_handler, aws, lambda_context
):
    build(load_handler, lambda_context, {"at": "2026-11-28T10:00:00Z", "shards": 1})
    # WHEN the next build has three shards (no per-shard base: the fallback)
    second = build(load_handler, lambda_context, {"at": "2026-11-28T11:00:00Z", "shards": 3})["build_id"]
    # THEN the delta is still empty, and the full file the same
    assert delta_rows(aws.bucket, "demo-dsp", second) == set()
    assert full_rows(aws.bucket, "demo-dsp", second) == full_rows(aws.bucket, "demo-dsp", FIRST)


def test_a_visitor_who_joins_a_segment_is_added_for_the_partners_that_see_it(
    traffic, load_handler, aws, lambda_context
):
    build(load_handler, lambda_context)
    # GIVEN the one-visit Londoner comes back to the pricing page (a second visit)
    from tests.integration.conftest import LONDON, hit

    later_ms = int((BUILD_TIME + timedelta(minutes=30)).timestamp() * 1000)
    hit(load_handler("ingest"), lambda_context, "visitor-london-2", later_ms, "https://shop.example/pricing", LONDON)
    # WHEN the next build runs
    second = build(load_handler, lambda_context, LATER)["build_id"]
    # THEN demo-dsp, which sees london-pricing, gets exactly that addition
    assert delta_rows(aws.bucket, "demo-dsp", second) == {"visitor-london-2,,london-pricing,"}
    assert "visitor-london-2,,all-visitors|london-pricing" in full_rows(aws.bucket, "demo-dsp", second)
    # AND other-ssp, which does not see it, gets an empty delta
    assert delta_rows(aws.bucket, "other-ssp", second) == set()


def test_visitors_who_leave_segments_are_removed_exactly(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    # WHEN a build runs 27.5 days later: the Londoner's first visit has left the 30-day
    # window (out of london-pricing), the Parisian's only hit too (out of all-visitors)
    later = BUILD_TIME + timedelta(days=27, hours=12)
    second = build(load_handler, lambda_context, {"at": later.strftime("%Y-%m-%dT%H:%M:%SZ")})["build_id"]
    # THEN each partner's delta removes exactly what it could see of them
    assert delta_rows(aws.bucket, "demo-dsp", second) == {
        "visitor-london-1,,,london-pricing",
        "visitor-paris-1,,,all-visitors",
    }
    assert delta_rows(aws.bucket, "other-ssp", second) == {"visitor-paris-1,,,all-visitors"}
    # AND every delta is the change between the partner's two full files
    for partner in ("demo-dsp", "other-ssp"):
        assert delta_rows(aws.bucket, partner, second) == expected_delta(
            full_rows(aws.bucket, partner, FIRST), full_rows(aws.bucket, partner, second)
        )
    assert full_rows(aws.bucket, "demo-dsp", second) == {
        "visitor-london-1,,all-visitors",
        "visitor-london-2,,all-visitors",
    }


def test_a_partner_that_loses_every_segment_gets_a_delta_removing_everyone(traffic, load_handler, aws, lambda_context):
    build(load_handler, lambda_context)
    # GIVEN the segments no longer name other-ssp
    push_definitions(
        aws.bucket,
        {
            segment_id: {**document, "destinations": [d for d in document["destinations"] if d != "other-ssp"]}
            for segment_id, document in DEFINITIONS.items()
        },
    )
    # WHEN the next build runs
    second = build(load_handler, lambda_context, LATER)["build_id"]
    # THEN other-ssp's full file is empty and its delta removes everyone it had
    assert full_rows(aws.bucket, "other-ssp", second) == set()
    assert delta_rows(aws.bucket, "other-ssp", second) == {
        "visitor-london-1,,,all-visitors",
        "visitor-london-2,,,all-visitors",
        "visitor-paris-1,,,all-visitors|paris",
    }
    assert latest_export(aws.bucket, "other-ssp")["build_id"] == second
    # AND demo-dsp sees no change
    assert delta_rows(aws.bucket, "demo-dsp", second) == set()


def test_synced_visitors_are_exported_in_the_partners_own_ids(traffic, load_handler, aws, lambda_context):
    # GIVEN the returning Londoner synced with demo-dsp, and the Parisian with both partners
    sync(aws, "visitor-london-1", "demo-dsp", "DSP-L1")
    sync(aws, "visitor-paris-1", "demo-dsp", "dsp.paris~1")
    sync(aws, "visitor-paris-1", "other-ssp", "SSP:P1")
    # WHEN the build runs
    build(load_handler, lambda_context)
    # THEN each partner sees its own id for the visitor, and no other partner's
    assert full_rows(aws.bucket, "demo-dsp", FIRST) == {
        "visitor-london-1,DSP-L1,all-visitors|london-pricing",
        "visitor-london-2,,all-visitors",
        "visitor-paris-1,dsp.paris~1,all-visitors",
    }
    assert full_rows(aws.bucket, "other-ssp", FIRST) == {
        "visitor-london-1,,all-visitors",
        "visitor-london-2,,all-visitors",
        "visitor-paris-1,SSP:P1,all-visitors|paris",
    }
    assert "visitor-paris-1,SSP:P1,all-visitors|paris," in delta_rows(aws.bucket, "other-ssp", FIRST)


def assert_removed_once(aws: Any, visitor_id: str, build_id: str, removed: dict[str, str]) -> None:
    """The build's deltas remove the visitor from each partner (`removed`: partner -> row),
    its full files name it nowhere, nor does any other object or earlier version."""
    for partner in ("demo-dsp", "other-ssp"):
        assert removed[partner] in delta_rows(aws.bucket, partner, build_id)
        assert not [row for row in full_rows(aws.bucket, partner, build_id) if visitor_id in row]
    assert_gone_everywhere(aws, visitor_id)
    # AND the partner's id for it survives in that removal line alone
    texts = everything_in_the_bucket(aws.bucket)
    assert sum(t.count("DSP-L1") for t in texts) == 1
    # AND the removal notice was used up: the next build removes it no more
    suppression = SuppressionStore(aws.suppression_table).get(visitor_id)
    assert suppression is not None and suppression.export_notices == {}


def test_an_opt_out_between_builds_is_in_the_next_delta_s_removed_and_nowhere_else(
    traffic, load_handler, aws, lambda_context
):
    visitor = traffic["returning"]
    # GIVEN the returning Londoner, synced with demo-dsp, in both partners' first exports
    sync(aws, visitor, "demo-dsp", "DSP-L1")
    build(load_handler, lambda_context)
    assert "visitor-london-1,DSP-L1,all-visitors|london-pricing" in full_rows(aws.bucket, "demo-dsp", FIRST)
    # WHEN the visitor opts out, and the next build runs (it erases, then exports)
    load_handler("ingest").handler(optout_event(visitor), lambda_context)
    second = build(load_handler, lambda_context, LATER)["build_id"]
    # THEN its next deltas remove it, in the partner's id, with the segments each partner had
    assert delta_rows(aws.bucket, "demo-dsp", second) == {"visitor-london-1,DSP-L1,,all-visitors|london-pricing"}
    assert delta_rows(aws.bucket, "other-ssp", second) == {"visitor-london-1,,,all-visitors"}
    # AND no other file, the first build's included, nor any earlier version names it
    assert_removed_once(
        aws,
        visitor,
        second,
        {
            "demo-dsp": "visitor-london-1,DSP-L1,,all-visitors|london-pricing",
            "other-ssp": "visitor-london-1,,,all-visitors",
        },
    )
    third = build(load_handler, lambda_context, {"at": "2026-11-28T12:00:00Z"})["build_id"]
    assert delta_rows(aws.bucket, "demo-dsp", third) == set()


def test_dmp_erase_is_in_the_next_delta_s_removed_and_nowhere_else(traffic, load_handler, aws, lambda_context):
    visitor = traffic["returning"]
    sync(aws, visitor, "demo-dsp", "DSP-L1")
    build(load_handler, lambda_context)
    # WHEN the operator erases the visitor
    privacy.erase([visitor], aws, now=datetime(2026, 11, 28, 10, 30, tzinfo=UTC))
    # THEN at once no export file, nor any earlier version, names it; a removal notice
    # per partner is kept on its suppression item
    assert_gone_everywhere(aws, visitor)
    assert not [t for t in everything_in_the_bucket(aws.bucket) if "DSP-L1" in t]
    suppression = SuppressionStore(aws.suppression_table).get(visitor)
    assert suppression is not None
    assert suppression.export_notices == {
        "demo-dsp": "DSP-L1\tall-visitors|london-pricing",
        "other-ssp": "\tall-visitors",
    }
    # WHEN the next build runs
    second = build(load_handler, lambda_context, LATER)["build_id"]
    # THEN its deltas tell each partner to remove it, and nothing else names it
    assert delta_rows(aws.bucket, "demo-dsp", second) == {"visitor-london-1,DSP-L1,,all-visitors|london-pricing"}
    assert_removed_once(
        aws,
        visitor,
        second,
        {
            "demo-dsp": "visitor-london-1,DSP-L1,,all-visitors|london-pricing",
            "other-ssp": "visitor-london-1,,,all-visitors",
        },
    )


def test_the_export_stage_runs_after_publish_as_step_functions_calls_it(traffic, load_handler, aws, lambda_context):
    builder = load_handler("builder")
    plan = builder.handler({"stage": "plan", "time": "2026-11-28T10:00:00Z"}, lambda_context)
    for shard in plan["shards"]:
        builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": shard}, lambda_context)
    published = builder.handler({"stage": "publish", "build_id": plan["build_id"]}, lambda_context)
    assert export_keys(aws.bucket) == set()  # publish exports nothing itself
    # WHEN the export stage gets the publish's answer's build id
    answer = builder.handler({"stage": "export", "build_id": published["build_id"]}, lambda_context)
    # THEN every partner's files are written, and the answer gives their rows
    assert answer == {
        "build_id": FIRST,
        "exports": {"demo-dsp": {"full": 3, "delta": 3}, "other-ssp": {"full": 3, "delta": 3}},
    }
    # AND a retried stage leaves the same files
    s3 = boto3.client("s3")
    before = {k: s3.get_object(Bucket=aws.bucket, Key=k)["Body"].read() for k in export_keys(aws.bucket)}
    assert builder.handler({"stage": "export", "build_id": FIRST}, lambda_context) == answer
    assert {k: s3.get_object(Bucket=aws.bucket, Key=k)["Body"].read() for k in export_keys(aws.bucket)} == before


def test_a_visitor_suppressed_again_keeps_the_removal_notices_still_to_export(
    traffic, load_handler, aws, lambda_context
):
    visitor = traffic["returning"]
    build(load_handler, lambda_context)
    privacy.erase([visitor], aws, now=datetime(2026, 11, 28, 10, 30, tzinfo=UTC))
    # WHEN the erased visitor opts out again before the next build
    load_handler("ingest").handler(optout_event(visitor), lambda_context)
    # THEN its suppression is renewed, and its notices are still there for the next export
    suppression = SuppressionStore(aws.suppression_table).get(visitor)
    assert suppression is not None and suppression.reason == "optout" and suppression.erased_at is None
    assert set(suppression.export_notices) == {"demo-dsp", "other-ssp"}
    second = build(load_handler, lambda_context, LATER)["build_id"]
    assert delta_rows(aws.bucket, "demo-dsp", second) == {"visitor-london-1,,,all-visitors|london-pricing"}
