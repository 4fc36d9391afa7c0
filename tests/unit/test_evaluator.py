"""Real-time membership's logic (functions/evaluator/logic.py, functions/sweep/logic.py,
DESIGN.md "Freshness") over in-memory stores: which visitors a stream batch touches, what
the evaluator writes and leaves alone, that it gives a build's answer at the same instant,
and what a lookup serves around a due instant. (The sweep's own: test_sweep.py.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.builder.changes import read_member_lines
from functions.builder.plan import BuildPlan
from functions.builder.shard import run_shard
from functions.core import layout
from functions.core.records import EventRecord, Record
from functions.core.segments import SegmentDefinition
from functions.core.storage.catalog import StoredCatalog
from functions.core.storage.item_size import item_bytes
from functions.core.storage.membership import (
    Membership,
    Schedule,
    StoredMembership,
    _evaluated_item,
    _live_segments,
    _put_schedule,
    _stored,
)
from functions.evaluator.logic import STEPS, EvaluatorStores, PublishedDefinitions, evaluate_visitors, visitors_of
from tests.fakes import MemoryBucket, MemoryDue, MemoryEvents, MemoryMembership, MemorySuppression
from tests.reference.duckdb_reference import CATALOGUE
from tests.reference.population import generate

DAY = 86_400_000
NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z
NOW_S = NOW // 1000
PUBLISHED = "20240601T000000Z"
RECENT = {"id": "recent", "name": "Recent", "rule": {"event": {"name": "page_view", "within_days": 1}}}


class RecordsByVisitor(MemoryEvents):
    def records_of(self, visitor_id: str) -> list[Record]:
        return [record for v, record in self.records if v == visitor_id]


class OneCatalog:
    def __init__(self, build_id: str | None) -> None:
        self.build_id = build_id
        self.reads = 0

    def get(self) -> StoredCatalog | None:
        self.reads += 1
        if self.build_id is None:
            return None
        return StoredCatalog(self.build_id, "", layout.manifest_key(self.build_id), None)


def plan_document(build_id: str, definitions: Sequence[SegmentDefinition], now_ms: int = NOW) -> BuildPlan:
    return BuildPlan(build_id, datetime.fromtimestamp(now_ms / 1000, UTC), 1, tuple(definitions))


def stores_for(
    records: Iterable[tuple[str, Record]],
    definitions: Sequence[SegmentDefinition],
    *,
    published: str | None = PUBLISHED,
    suppressed: Iterable[str] = (),
) -> EvaluatorStores:
    bucket = MemoryBucket()
    if published is not None:
        bucket.put_json(layout.plan_key(published), plan_document(published, definitions).to_json())
    return EvaluatorStores(
        events=RecordsByVisitor(records),
        membership=MemoryMembership(),
        suppression=MemorySuppression(suppressed),
        catalog=OneCatalog(published),
        due=MemoryDue(),
        definitions=PublishedDefinitions(bucket),
    )


def recent_hit(at: int) -> EventRecord:
    return EventRecord(ts_ms=at, name="page_view", expires_at=at // 1000 + 90 * 86_400)


def stream_record(event_name: str, visitor_id: str, event_id: str) -> dict[str, Any]:
    return {
        "eventID": "1",
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "Keys": {"visitor_id": {"S": visitor_id}, "event_id": {"S": event_id}},
            "SequenceNumber": "1",
            "StreamViewType": "NEW_IMAGE",
        },
    }


RECENT_DEFINITION = SegmentDefinition.model_validate(RECENT)


# --- the stream batch --------------------------------------------------------------------


def test_a_batch_names_each_visitor_once_and_skips_id_sync_mappings():
    # GIVEN hits, a trait, a removal and an ID sync mapping of three visitors
    event = {
        "Records": [
            stream_record("INSERT", "v1", "e1"),
            stream_record("INSERT", "v1", "e2"),
            stream_record("MODIFY", "v2", "trait#crm.tier"),
            stream_record("REMOVE", "v3", "e9"),
            stream_record("INSERT", "v4", "sync#demo-dsp"),
        ]
    }
    # THEN each visitor whose records rules read is named once, in order
    assert visitors_of(event) == ["v1", "v2", "v3"]


# --- the evaluator -------------------------------------------------------------------------


def test_a_hit_puts_the_visitor_in_its_segment_as_of_the_published_build_with_its_due_instant():
    # GIVEN a published build with "a page view in the last day" and a visitor's hit an hour ago
    hit_at = NOW - 3_600_000
    stores = stores_for([("v1", recent_hit(hit_at))], [RECENT_DEFINITION])
    # WHEN the evaluator sees the hit
    evaluation = evaluate_visitors(["v1"], stores, NOW)
    # THEN the visitor is stored in the segment, as of the published build, due when the hit leaves the day
    assert evaluation.written == 1
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    stored = membership.stored["v1"]
    assert stored.current == Membership(frozenset({"recent"}), hit_at // 1000 + 90 * 86_400)
    assert stored.build_id == PUBLISHED and stored.previous is None
    # (with nothing after the hit, the visitor is in no segment from then on, for good)
    assert stored.schedule == Schedule((hit_at + DAY) // 1000, frozenset(), None)
    # AND the item says all there is to say: the sweep will never need to re-evaluate it
    assert isinstance(stores.due, MemoryDue) and stores.due.entries == {}


def test_evaluating_again_with_nothing_new_writes_nothing():
    stores = stores_for([("v1", recent_hit(NOW - 3_600_000))], [RECENT_DEFINITION])
    evaluate_visitors(["v1"], stores, NOW)
    # WHEN the same visitor is evaluated again a minute later
    again = evaluate_visitors(["v1"], stores, NOW + 60_000)
    # THEN its item already says it all
    assert again.written == 0 and again.unchanged == 1


def test_no_published_build_means_nothing_is_evaluated():
    stores = stores_for([("v1", recent_hit(NOW))], [RECENT_DEFINITION], published=None)
    evaluation = evaluate_visitors(["v1"], stores, NOW)
    assert evaluation.published is None and evaluation.visitors == 0
    assert isinstance(stores.membership, MemoryMembership) and stores.membership.stored == {}


def test_a_suppressed_visitor_is_left_alone():
    stores = stores_for([("v1", recent_hit(NOW))], [RECENT_DEFINITION], suppressed=["v1"])
    evaluation = evaluate_visitors(["v1"], stores, NOW)
    assert evaluation.suppressed == 1 and evaluation.written == 0
    assert isinstance(stores.membership, MemoryMembership) and "v1" not in stores.membership.stored


def test_an_item_of_a_build_being_published_is_not_overwritten():
    # GIVEN an item written by a later build whose publish is under way
    stores = stores_for([("v1", recent_hit(NOW))], [RECENT_DEFINITION])
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    pending = StoredMembership(None, "20240601T120000Z", Membership(frozenset({"old"}), None))
    membership.stored["v1"] = pending
    # WHEN a hit of the visitor is evaluated with the published build's definitions
    evaluation = evaluate_visitors(["v1"], stores, NOW)
    # THEN the pending build's item stays: lookups, catalog and destinations keep agreeing
    assert evaluation.refused == 1 and membership.stored["v1"] == pending


def test_a_visitor_who_leaves_every_segment_loses_its_item():
    stores = stores_for([("v1", recent_hit(NOW - 2 * DAY))], [RECENT_DEFINITION])
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    membership.stored["v1"] = StoredMembership(Membership(frozenset({"recent"}), None), PUBLISHED)
    evaluate_visitors(["v1"], stores, NOW)
    assert "v1" not in membership.stored


def test_the_plan_is_read_once_per_build_and_the_catalog_once_per_batch():
    stores = stores_for([("v1", recent_hit(NOW)), ("v2", recent_hit(NOW))], [RECENT_DEFINITION])
    evaluate_visitors(["v1", "v2"], stores, NOW)
    evaluate_visitors(["v1"], stores, NOW + 1000)
    assert stores.definitions.plans_read == 1
    assert isinstance(stores.catalog, OneCatalog) and stores.catalog.reads == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_evaluator_gives_a_builds_answer_at_the_same_instant(seed):
    # GIVEN a generated audience, every reference segment, and a build of them at `now`
    now_s = 1_733_140_800 + 5 * 86_400
    population = generate(seed, 120, now_ms=now_s * 1000)
    definitions = tuple(s.definition for s in CATALOGUE)
    plan = BuildPlan("20241207T120000Z", datetime.fromtimestamp(now_s, UTC), 1, definitions)
    built_bucket = MemoryBucket()
    run_shard(plan, 0, events=MemoryEvents(population.records()), bucket=built_bucket, report=False)
    built = dict(read_member_lines(built_bucket.iter_lines(layout.members_key(plan.build_id, 0))))
    # WHEN the evaluator evaluates every visitor, in stream-sized batches, at the same instant
    stores = stores_for(population.records(), definitions, published=plan.build_id)
    visitors = [h.visitor_id for h in population.histories()]
    for start in range(0, len(visitors), 100):
        evaluate_visitors(visitors[start : start + 100], stores, plan.now_ms)
    # THEN its stored membership is the build's, visitor by visitor
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    stored = {v: m.current for v, m in membership.stored.items() if m.current is not None}
    assert stored == {v: Membership(m.segments, m.expires_at) for v, m in built.items() if m is not None}


# --- lookups and due instants ---------------------------------------------------------------


def item(**attributes: Any) -> dict[str, Any]:
    return {"visitor_id": {"S": "v1"}, "segments": {"SS": ["recent"]}, **attributes}


def test_a_lookup_answers_no_segments_from_the_due_instant_on():
    evaluated = item(build_id={"S": PUBLISHED}, due_at={"N": str(NOW_S)})
    assert _live_segments(evaluated, NOW_S - 1, PUBLISHED) == ["recent"]
    assert _live_segments(evaluated, NOW_S, PUBLISHED) == []


def test_a_lookup_serves_the_step_after_the_due_instant_until_that_one_may_change():
    # GIVEN an item in "recent" until NOW, then in "later" until an hour later
    evaluated = item(
        build_id={"S": PUBLISHED},
        due_at={"N": str(NOW_S)},
        next_segments={"SS": ["later"]},
        next_due_at={"N": str(NOW_S + 3600)},
    )
    # THEN each instant is served its own step, and nothing once both may have changed
    assert _live_segments(evaluated, NOW_S - 1, PUBLISHED) == ["recent"]
    assert _live_segments(evaluated, NOW_S, PUBLISHED) == ["later"]
    assert _live_segments(evaluated, NOW_S + 3599, PUBLISHED) == ["later"]
    assert _live_segments(evaluated, NOW_S + 3600, PUBLISHED) == []
    # AND an item in no segment until its due instant serves its segments from then on
    entering = {k: v for k, v in evaluated.items() if k != "segments"}
    assert _live_segments(entering, NOW_S - 1, PUBLISHED) == []
    assert _live_segments(entering, NOW_S + 1, PUBLISHED) == ["later"]


def _seen_within(days: int) -> SegmentDefinition:
    return SegmentDefinition.model_validate(
        {"id": f"days-{days}", "name": f"{days} days", "rule": {"event": {"name": "page_view", "within_days": days}}}
    )


def test_the_item_holds_the_changes_ahead_and_the_sweep_is_filed_where_they_end():
    # GIVEN "a page view in the last N days" for N = 1..5, and a visitor's hit an hour ago
    hit_at = NOW - 3_600_000
    stores = stores_for([("v1", recent_hit(hit_at))], [_seen_within(days) for days in range(1, 6)])
    # WHEN the evaluator sees the hit
    evaluate_visitors(["v1"], stores, NOW)
    # THEN the item holds the first STEPS changes, one a day, each with its segments
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    day = [(hit_at + days * DAY) // 1000 for days in range(6)]
    in_from = [frozenset(f"days-{n}" for n in range(days + 1, 6)) for days in range(6)]
    assert STEPS == 4
    assert membership.stored["v1"].schedule == Schedule(
        day[1], in_from[1], day[2], tuple((day[d], in_from[d]) for d in range(2, 5)), day[5]
    )
    # AND the sweep is needed only where they end: at the fifth day, not at the first
    assert isinstance(stores.due, MemoryDue) and stores.due.entries == {"v1": day[5] * 1000}


def test_an_item_holds_no_more_changes_ahead_than_fit_in_one_write_unit():
    # GIVEN the same five segments, with ids long enough that four changes ahead would
    # make the item larger than 1 KB
    long_ids = [_seen_within(days).model_copy(update={"id": f"days-{days}-" + "x" * 56}) for days in range(1, 6)]
    hit_at = NOW - 3_600_000
    stores = stores_for([("v1", recent_hit(hit_at))], long_ids)
    full = Schedule(
        (hit_at + DAY) // 1000,
        frozenset(d.id for d in long_ids[1:]),
        (hit_at + 2 * DAY) // 1000,
        tuple(((hit_at + d * DAY) // 1000, frozenset(x.id for x in long_ids[d:])) for d in range(2, 5)),
        (hit_at + 5 * DAY) // 1000,
    )
    membership = Membership(frozenset(d.id for d in long_ids), hit_at // 1000 + 90 * 86_400)
    assert item_bytes(_evaluated_item("v1", membership, full, PUBLISHED)) > 1024
    # WHEN the evaluator sees the hit
    evaluate_visitors(["v1"], stores, NOW)
    # THEN the item holds the changes that fit, the first ones, and stays within 1 KB
    stored = stores.membership
    assert isinstance(stored, MemoryMembership)
    schedule = stored.stored["v1"].schedule
    assert schedule is not None and len(schedule.later) < len(full.later)
    assert schedule.steps == full.steps[: len(schedule.steps)]
    assert item_bytes(_evaluated_item("v1", membership, schedule, PUBLISHED)) <= 1024
    # AND what it knows ends where the first change left out begins: the sweep is filed there
    left_out = full.steps[len(schedule.steps)][0]
    assert schedule.end == left_out
    assert isinstance(stores.due, MemoryDue) and stores.due.entries == {"v1": left_out * 1000}


def test_a_lookup_follows_each_change_an_item_holds_and_answers_nothing_past_them():
    # GIVEN an item in segments a, b, c, then b and c from the due instant, c from an hour
    # later and none from two hours later, what it knows ending at three hours
    schedule = Schedule(
        NOW_S,
        frozenset({"b", "c"}),
        NOW_S + 3600,
        ((NOW_S + 3600, frozenset({"c"})), (NOW_S + 7200, frozenset())),
        NOW_S + 10_800,
    )
    held = item(build_id={"S": PUBLISHED}, segments={"SS": ["a", "b", "c"]}, expires_at={"N": str(NOW_S + 86_400)})
    _put_schedule(held, schedule)
    # THEN a lookup serves each step from its instant, and nothing once they end
    assert _live_segments(held, NOW_S - 1, PUBLISHED) == ["a", "b", "c"]
    assert _live_segments(held, NOW_S, PUBLISHED) == ["b", "c"]
    assert _live_segments(held, NOW_S + 3600, PUBLISHED) == ["c"]
    assert _live_segments(held, NOW_S + 7200, PUBLISHED) == []
    assert _live_segments(held, NOW_S + 10_800, PUBLISHED) == []
    # AND the item reads back as it was written
    assert _stored(held).schedule == schedule
    assert _stored(held).live(NOW_S + 3600) == Membership(frozenset({"c"}), NOW_S + 86_400)


def test_a_visitor_who_enters_a_segment_at_its_due_instant_keeps_an_item_saying_so():
    # GIVEN "no page view in the last day" and a visitor whose only hit was an hour ago
    quiet = SegmentDefinition.model_validate(
        {"id": "quiet", "name": "Quiet", "rule": {"event": {"name": "page_view", "max_count": 0, "within_days": 1}}}
    )
    hit_at = NOW - 3_600_000
    stores = stores_for([("v1", recent_hit(hit_at))], [quiet])
    # WHEN the evaluator sees the hit
    evaluate_visitors(["v1"], stores, NOW)
    # THEN the visitor is in no segment now, but its item says it is quiet from the day's end
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    stored = membership.stored["v1"]
    assert stored.current is None
    assert stored.schedule == Schedule((hit_at + DAY) // 1000, frozenset({"quiet"}), hit_at // 1000 + 90 * 86_400)
    # AND a second evaluation with nothing new writes nothing
    assert evaluate_visitors(["v1"], stores, NOW + 60_000).unchanged == 1


def test_a_visitor_whose_item_a_pending_build_owns_is_filed_to_be_evaluated_again():
    stores = stores_for([("v1", recent_hit(NOW))], [RECENT_DEFINITION])
    membership = stores.membership
    assert isinstance(membership, MemoryMembership)
    membership.stored["v1"] = StoredMembership(None, "20240601T120000Z", None)
    evaluate_visitors(["v1"], stores, NOW)
    # THEN the sweep evaluates it again a minute later, against that build once published
    assert isinstance(stores.due, MemoryDue) and stores.due.entries == {"v1": NOW + 60_000}


def test_the_due_instant_of_the_current_side_does_not_hide_the_previous_one():
    # GIVEN an item of a build not yet published, over a due instant that has passed
    pending = item(
        build_id={"S": "20240602T000000Z"}, due_at={"N": str(NOW_S - 60)}, previous_segments={"SS": ["older"]}
    )
    # THEN lookups of the published build still serve its previous segments
    assert _live_segments(pending, NOW_S, PUBLISHED) == ["older"]
