"""Builds and the due index on moto (DESIGN.md, "Freshness"): a build files every visitor
whose membership changes with no new data before its horizon, and stores the change on
the item, so a lookup serves the right segments across that instant without waiting for
a sweep or the next build; the next build finds it all stored and writes nothing; and a
build corrects an item the evaluator left wrong."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from functions.core.storage.due import DueStore, bucket_of, minute_of
from functions.core.storage.membership import Membership, MembershipStore, Schedule
from functions.core.times import DAY_MS, iso
from tests.integration.conftest import LONDON, hit, push_definitions

HOUR_MS = 3_600_000
DEFINITIONS = {
    "fresh": {"id": "fresh", "name": "Seen today", "rule": {"event": {"name": "page_view", "within_days": 1}}},
    "quiet": {
        "id": "quiet",
        "name": "Not seen today",
        "rule": {"event": {"name": "page_view", "max_count": 0, "within_days": 1}},
    },
}


def build_at(load_handler: Any, context: Any, at_s: int) -> str:
    result = load_handler("builder").handler({"at": iso(datetime.fromtimestamp(at_s, UTC)), "shards": 1}, context)
    return str(result["build_id"])


def test_a_build_files_the_changes_before_its_horizon_and_lookups_follow_them(load_handler, aws, lambda_context):
    # GIVEN a visitor seen 23 hours ago (fresh for one more hour, then quiet) and one seen
    # three days ago (quiet until its data expires, far past the build's horizon)
    push_definitions(aws.bucket, DEFINITIONS)
    ingest = load_handler("ingest")
    now_s = int(time.time())
    seen_at = now_s * 1000 - 23 * HOUR_MS
    hit(ingest, lambda_context, "soon-quiet", seen_at, "https://shop.example/", LONDON)
    hit(ingest, lambda_context, "long-quiet", now_s * 1000 - 3 * DAY_MS, "https://shop.example/", LONDON)
    # WHEN a build runs (its horizon: two hours, the default)
    published = build_at(load_handler, lambda_context, now_s)
    # THEN the first visitor's item says when it turns quiet, and it is filed for the sweep then
    membership = MembershipStore(aws.membership_table)
    stored = membership.stored_many(["soon-quiet", "long-quiet"])
    due_s = (seen_at + DAY_MS) // 1000
    assert stored["soon-quiet"].current is not None
    assert stored["soon-quiet"].current.segments == {"fresh"}
    assert stored["soon-quiet"].schedule == Schedule(due_s, frozenset({"quiet"}), None)
    assert "soon-quiet" in DueStore(aws.due_table).visitors_due(minute_of(due_s * 1000), bucket_of("soon-quiet"))
    # AND the second one has no schedule: nothing changes before the horizon
    assert stored["long-quiet"].schedule is None
    # AND lookups serve each side of the instant, with no sweep and no build
    assert membership.get("soon-quiet", as_of=published, now_s=due_s - 1) == ["fresh"]
    assert membership.get("soon-quiet", as_of=published, now_s=due_s) == ["quiet"]
    # WHEN the next build runs, from the first one's changes
    later = build_at(load_handler, lambda_context, now_s + 2)
    # THEN it finds the schedule stored and writes nothing for the visitor
    again = membership.stored_many(["soon-quiet"])["soon-quiet"]
    assert again.build_id == published and again.schedule == stored["soon-quiet"].schedule
    assert membership.get("soon-quiet", as_of=later, now_s=due_s) == ["quiet"]
    # WHEN a build runs after the instant, before any sweep has re-evaluated the visitor
    after = build_at(load_handler, lambda_context, due_s + 60)
    # THEN it reads the item as lookups do (quiet, from its step) and writes nothing for it
    assert membership.stored_many(["soon-quiet"])["soon-quiet"] == again
    assert membership.get("soon-quiet", as_of=after, now_s=due_s + 60) == ["quiet"]


def test_a_build_corrects_a_wrong_item_even_when_its_answer_equals_the_base_builds(load_handler, aws, lambda_context):
    # GIVEN a published build that has a visitor fresh, then a hit of that visitor whose
    # evaluation stored the wrong answer ("quiet")
    push_definitions(aws.bucket, DEFINITIONS)
    ingest = load_handler("ingest")
    now_s = int(time.time())
    hit(ingest, lambda_context, "visitor-drifted", now_s * 1000 - HOUR_MS, "https://shop.example/", LONDON)
    published = build_at(load_handler, lambda_context, now_s - 60)
    membership = MembershipStore(aws.membership_table)
    assert membership.get("visitor-drifted", as_of=published) == ["fresh"]
    hit(ingest, lambda_context, "visitor-drifted", now_s * 1000 - 30_000, "https://shop.example/", LONDON)
    wrong = Membership(frozenset({"quiet"}), now_s + 3600)
    assert membership.put_evaluated("visitor-drifted", wrong, schedule=None, published=published)
    # WHEN the next build runs: it finds the visitor fresh, as the base build did
    later = build_at(load_handler, lambda_context, now_s)
    # THEN, the visitor having records since the base build, it compared with the table and corrected it
    assert membership.get("visitor-drifted", as_of=later) == ["fresh"]
