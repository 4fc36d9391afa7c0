"""When a visitor's membership can next change with no new data (functions/core/freshness.py,
DESIGN.md "Freshness"): the instant the sweep wakes a visitor, and past which a lookup
never serves a membership.

The hand-written cases pin each rule kind's boundary to the millisecond; the properties
check, on drawn histories and definitions, that membership is the same at every instant
before the due one and differs at it, that it is the first such instant, and that
`evaluate_visitor` gives a build's answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.builder.changes import read_member_lines
from functions.builder.plan import BuildPlan
from functions.builder.shard import run_shard
from functions.core import layout
from functions.core.engine import CompiledSegment, VisitorView, compile_segments, segments_of
from functions.core.freshness import VisitorMembership, evaluate_visitor, membership_expiry, next_change_ms
from functions.core.records import EventRecord, TraitRecord, VisitorHistory
from functions.core.segments import SegmentDefinition, load_definitions
from tests.fakes import MemoryBucket, MemoryEvents
from tests.reference.duckdb_reference import CATALOGUE
from tests.reference.population import (
    BOUNDARY_DAYS,
    DEVICES,
    NAMES,
    PLACES,
    PROPS,
    REFS,
    TRAIT_NAMES,
    TRAIT_VALUES,
    URLS,
    generate,
)

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z
NOW_S = NOW // 1000
VISITOR = "visitor-0001"
NEVER_CHECKED = 10_000  # evaluations: enough to reach the exact change in every test here
SEGMENTS_DIR = Path(__file__).resolve().parents[2] / "segments"


# --- builders -----------------------------------------------------------------------


def ago(days: float = 0, hours: float = 0, minutes: float = 0) -> int:
    return NOW - round(days * DAY + hours * HOUR + minutes * MINUTE)


def hit(at: int, name: str = "page_view", **fields: Any) -> EventRecord:
    return EventRecord(ts_ms=at, name=name, **fields)


def visitor(*events: EventRecord, traits: tuple[TraitRecord, ...] = ()) -> VisitorHistory:
    return VisitorHistory(visitor_id=VISITOR, events=list(events), traits=list(traits))


def segment(rule: object, segment_id: str = "the-segment") -> SegmentDefinition:
    return SegmentDefinition.model_validate({"id": segment_id, "name": segment_id, "rule": rule})


def members_at(history: VisitorHistory, segments: list[CompiledSegment], at: int) -> frozenset[str]:
    return frozenset(segments_of(VisitorView(history, at), segments))


def in_segment_at(rule: object, history: VisitorHistory, at: int) -> bool:
    return bool(members_at(history, compile_segments([segment(rule)]), at))


def due(rule: object, history: VisitorHistory, now: int = NOW) -> int | None:
    return next_change_ms(history, [segment(rule)], now)


def assert_flips_exactly_at(rule: object, history: VisitorHistory, instant: int) -> None:
    """Membership at now holds until `instant` - 1 ms and differs at `instant`."""
    before = in_segment_at(rule, history, NOW)
    assert in_segment_at(rule, history, instant - 1) == before
    assert in_segment_at(rule, history, instant) != before


@cache
def repo_definitions() -> tuple[SegmentDefinition, ...]:
    return tuple(load_definitions({p.name: p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}))


# --- event windows ------------------------------------------------------------------


def test_an_event_leaves_its_window_exactly_within_days_after_it():
    # GIVEN a page view 10 days ago, and a rule for page views within 30 days
    rule = {"event": {"name": "page_view", "within_days": 30}}
    seen_at = ago(days=10)
    history = visitor(hit(seen_at))
    # WHEN the next change is worked out
    # THEN it is the instant the view leaves (now - 30 days, now]: exactly 30 days after it
    assert due(rule, history) == seen_at + 30 * DAY
    assert_flips_exactly_at(rule, history, seen_at + 30 * DAY)


def test_a_fractional_window_is_rounded_to_the_millisecond_as_the_engine_rounds_it():
    rule = {"event": {"name": "page_view", "within_days": 45.25}}
    history = visitor(hit(ago(days=45)))
    assert due(rule, history) == ago(days=45) + round(45.25 * DAY)
    assert_flips_exactly_at(rule, history, ago(days=45) + round(45.25 * DAY))


def test_a_rule_holds_until_the_newest_of_its_events_leaves_the_window():
    # GIVEN page views 10 and 5 days ago, and a rule for one within 30 days
    rule = {"event": {"name": "page_view", "within_days": 30}}
    history = visitor(hit(ago(days=10)), hit(ago(days=5)))
    # THEN the older one leaving changes nothing; the visitor leaves with the newer one
    assert due(rule, history) == ago(days=5) + 30 * DAY
    assert_flips_exactly_at(rule, history, ago(days=5) + 30 * DAY)


def test_min_count_fails_when_the_older_of_two_events_leaves_the_window():
    # GIVEN two page views (12 and 3 days ago) and a rule wanting two within 14 days
    rule = {"event": {"name": "page_view", "min_count": 2, "within_days": 14}}
    history = visitor(hit(ago(days=12)), hit(ago(days=3)))
    # THEN membership ends when the older leaves, not the newer
    assert due(rule, history) == ago(days=12) + 14 * DAY


def test_a_max_count_rule_becomes_true_when_the_excess_event_leaves():
    # GIVEN a cart-abandoner rule and a visitor who reached checkout 5 days ago, then
    # added to cart a day ago: not an abandoner while the checkout is in the window
    rule = {
        "all": [
            {"event": {"name": "add_to_cart", "within_days": 14}},
            {"event": {"name": "page_view", "url_contains": "/checkout", "within_days": 14, "max_count": 0}},
        ]
    }
    checkout = ago(days=5)
    history = visitor(hit(checkout, url="https://shop.example/checkout"), hit(ago(days=1), "add_to_cart"))
    assert not in_segment_at(rule, history, NOW)
    # THEN the visitor joins the instant the checkout leaves the 14-day window
    assert due(rule, history) == checkout + 14 * DAY
    assert_flips_exactly_at(rule, history, checkout + 14 * DAY)


def test_events_that_do_not_match_the_filter_do_not_bring_the_change_forward():
    # GIVEN a click 1 day ago and a matching page view 10 days ago
    rule = {"event": {"name": "page_view", "within_days": 30}}
    history = visitor(hit(ago(days=10)), hit(ago(days=1), "click"))
    # THEN only the page view's exit counts
    assert due(rule, history) == ago(days=10) + 30 * DAY


def test_a_not_rule_becomes_true_when_the_last_visit_leaves_its_window():
    # GIVEN the lapsed-buyers rule and a purchase 3 days ago
    rule = {"all": [{"event": {"name": "purchase"}}, {"not": {"last_seen": {"within_days": 14}}}]}
    bought = ago(days=3)
    history = visitor(hit(ago(days=20)), hit(bought, "purchase"))
    # THEN the buyer lapses exactly 14 days after their last event
    assert due(rule, history) == bought + 14 * DAY
    assert_flips_exactly_at(rule, history, bought + 14 * DAY)


# --- visits ---------------------------------------------------------------------------


def test_returning_ends_when_the_first_visits_start_leaves_the_window():
    # GIVEN two visits: one started 20 days ago (its second event 30 min later, the same
    # visit), one 2 days ago
    rule = {"visits": {"min": 2, "within_days": 30}}
    first_start = ago(days=20)
    history = visitor(hit(first_start), hit(first_start + 30 * MINUTE), hit(ago(days=2)))
    # THEN the visitor stops being returning when that visit's first event leaves
    assert due(rule, history) == first_start + 30 * DAY
    assert_flips_exactly_at(rule, history, first_start + 30 * DAY)


def test_a_visit_whose_first_event_expires_starts_later_and_stays_in_the_window_longer():
    # GIVEN a visit 29 days ago whose first event's retention ends in an hour, its
    # second event 20 minutes later, and a visit yesterday
    rule = {"visits": {"min": 2, "within_days": 30}}
    start = ago(days=29)
    history = visitor(
        hit(start, expires_at=NOW_S + 3600), hit(start + 20 * MINUTE), hit(ago(days=1)), hit(ago(days=1) + MINUTE)
    )
    # WHEN the first event expires, the visit starts at the second one, still in the window
    # THEN nothing changes at the expiry, nor a day later when the original start would
    # have left: the change is 30 days after the second event
    assert due(rule, history) == start + 20 * MINUTE + 30 * DAY
    assert_flips_exactly_at(rule, history, start + 20 * MINUTE + 30 * DAY)


def test_an_expired_event_that_bridged_two_runs_splits_them_into_two_visits():
    # GIVEN events 25 minutes apart, 25 minutes apart: one visit; the middle one expires
    rule = {"visits": {"min": 2}}
    base = ago(days=3)
    history = visitor(hit(base), hit(base + 25 * MINUTE, expires_at=NOW_S + 60), hit(base + 50 * MINUTE))
    assert not in_segment_at(rule, history, NOW)
    # THEN at its expiry the gap is 50 minutes: two visits, and the visitor is returning
    assert due(rule, history) == (NOW_S + 60) * SECOND
    assert_flips_exactly_at(rule, history, (NOW_S + 60) * SECOND)


# --- first_seen, last_seen ------------------------------------------------------------


def test_a_new_visitor_stops_being_new_exactly_within_days_after_the_first_event():
    rule = {"first_seen": {"within_days": 7}}
    history = visitor(hit(ago(days=3)), hit(ago(days=1)))
    assert due(rule, history) == ago(days=3) + 7 * DAY
    assert_flips_exactly_at(rule, history, ago(days=3) + 7 * DAY)


def test_a_visitor_becomes_new_when_its_older_first_event_expires():
    # GIVEN a first event 10 days ago whose retention ends in an hour, and one 2 days ago
    rule = {"first_seen": {"within_days": 7}}
    history = visitor(hit(ago(days=10), expires_at=NOW_S + 3600), hit(ago(days=2)))
    assert not in_segment_at(rule, history, NOW)
    # THEN it is first seen 2 days ago from the instant of that expiry
    assert due(rule, history) == (NOW_S + 3600) * SECOND
    assert_flips_exactly_at(rule, history, (NOW_S + 3600) * SECOND)


def test_last_seen_ends_exactly_within_days_after_the_last_event():
    rule = {"last_seen": {"within_days": 14}}
    history = visitor(hit(ago(days=30)), hit(ago(days=3)))
    assert due(rule, history) == ago(days=3) + 14 * DAY


# --- geo, device: the latest live event -------------------------------------------------


def test_location_falls_back_to_the_previous_one_when_the_latest_event_expires():
    # GIVEN a London event 2 days ago and a Paris one yesterday whose retention ends in an hour
    rule = {"geo": {"city": "London"}}
    expiry_s = NOW_S + 3600
    history = visitor(hit(ago(days=2), city="London"), hit(ago(days=1), city="Paris", expires_at=expiry_s))
    assert not in_segment_at(rule, history, NOW)
    # THEN the visitor is in London again exactly when that record's retention ends:
    # expires_at (seconds) * 1000 is the first instant it no longer exists
    assert due(rule, history) == expiry_s * SECOND
    assert_flips_exactly_at(rule, history, expiry_s * SECOND)


def test_device_changes_when_the_latest_event_expires():
    rule = {"device": {"type": "mobile"}}
    expiry_s = NOW_S + 120
    history = visitor(hit(ago(days=2), device="desktop"), hit(ago(days=1), device="mobile", expires_at=expiry_s))
    assert in_segment_at(rule, history, NOW)
    assert due(rule, history) == expiry_s * SECOND
    assert_flips_exactly_at(rule, history, expiry_s * SECOND)


def test_a_future_event_enters_at_its_own_time():
    # GIVEN a mobile event yesterday and a desktop event 5 minutes from now (a clock skew,
    # or a backfill): events after now do not exist yet
    rule = {"device": {"type": "mobile"}}
    history = visitor(hit(ago(days=1), device="mobile"), hit(NOW + 5 * MINUTE, device="desktop"))
    # THEN the change is the instant it lies at: ts <= now holds from then on
    assert due(rule, history) == NOW + 5 * MINUTE
    assert_flips_exactly_at(rule, history, NOW + 5 * MINUTE)


# --- traits -----------------------------------------------------------------------------


def test_a_trait_stops_holding_exactly_when_its_retention_ends():
    rule = {"trait": {"name": "tier", "equals": "gold"}}
    history = visitor(traits=(TraitRecord("tier", "gold", ago(days=1), expires_at=NOW_S + 100),))
    assert due(rule, history) == (NOW_S + 100) * SECOND
    assert_flips_exactly_at(rule, history, (NOW_S + 100) * SECOND)


def test_an_older_trait_value_shows_through_when_the_newer_expires():
    rule = {"trait": {"name": "tier", "in": ["silver"]}}
    history = visitor(
        hit(ago(days=1)),
        traits=(
            TraitRecord("tier", "silver", ago(days=5)),
            TraitRecord("tier", "gold", ago(days=1), expires_at=NOW_S + 100),
        ),
    )
    assert due(rule, history) == (NOW_S + 100) * SECOND


def test_a_trait_arriving_later_changes_membership_when_its_time_comes():
    rule = {"trait": {"name": "tier", "exists": True}}
    history = visitor(hit(ago(days=1)), traits=(TraitRecord("tier", "gold", NOW + 1),))
    assert due(rule, history) == NOW + 1


# --- the audience itself ----------------------------------------------------------------


def test_a_visitor_leaves_a_not_segment_when_its_last_record_expires():
    # GIVEN a segment of visitors who did not buy, and a visitor whose only event expires
    rule = {"not": {"event": {"name": "purchase"}}}
    history = visitor(hit(ago(days=1), expires_at=NOW_S + 10))
    assert in_segment_at(rule, history, NOW)
    # THEN with no live record it is in no segment at all: that is the change
    assert due(rule, history) == (NOW_S + 10) * SECOND


def test_membership_that_nothing_can_change_has_no_due_instant():
    # GIVEN events that never expire and a rule over all history
    rule = {"event": {"name": "purchase"}}
    history = visitor(hit(ago(days=100), "purchase"), hit(ago(days=1)))
    # THEN there is nothing to wake the visitor for
    assert due(rule, history) is None


def test_a_visitor_with_no_records_never_changes():
    assert next_change_ms(visitor(), list(repo_definitions()), NOW) is None


def test_changes_that_do_not_change_membership_are_passed_over():
    # GIVEN a rule on a city, and an older London event whose retention ends in an hour
    rule = {"geo": {"city": "London"}}
    history = visitor(
        hit(ago(days=3), city="London", expires_at=NOW_S + 3600),
        hit(ago(days=1), city="London", expires_at=NOW_S + 7200),
    )
    # THEN the first expiry changes nothing; the second makes the visitor unknown
    assert due(rule, history) == (NOW_S + 7200) * SECOND


def test_an_evaluation_bound_gives_an_earlier_instant_never_a_later_one():
    # GIVEN a change 30 days away behind three earlier instants that change nothing
    rule = {"event": {"name": "page_view", "within_days": 30}}
    history = visitor(hit(ago(days=10)), hit(ago(days=40)), hit(ago(days=50)), hit(ago(days=60)))
    for expiring in history.events[1:]:
        expiring.expires_at = NOW_S + 3600 * (history.events.index(expiring))
    exact = next_change_ms(history, [segment(rule)], NOW)
    assert exact == ago(days=10) + 30 * DAY
    # WHEN only one candidate may be evaluated
    bounded = next_change_ms(history, [segment(rule)], NOW, max_evaluations=1)
    # THEN the answer is the next candidate: early, so the sweep re-evaluates for nothing
    assert bounded == (NOW_S + 7200) * SECOND


# --- evaluate_visitor -------------------------------------------------------------------


def test_evaluate_visitor_gives_segments_expiry_and_due_instant():
    history = visitor(
        hit(ago(days=3), url="https://shop.example/blog/a", device="mobile", expires_at=NOW_S + 80 * 86_400),
        hit(ago(days=1), url="https://shop.example/blog/b", device="mobile", expires_at=NOW_S + 89 * 86_400),
    )
    segments = compile_segments(repo_definitions())
    assert evaluate_visitor(history, segments, NOW) == VisitorMembership(
        segments=frozenset({"mobile-blog-readers"}),
        expires_at=NOW_S + 89 * 86_400,
        due_ms=ago(days=3) + 30 * DAY,  # the older blog post leaves the 30-day window
    )


def test_evaluate_visitor_equals_a_builds_answer_for_every_visitor():
    # GIVEN a generated audience and every reference segment (the repo's among them)
    now_s = 1_733_140_800 + 5 * 86_400
    population = generate(3, 150, now_ms=now_s * 1000)
    definitions = tuple(s.definition for s in CATALOGUE)
    plan = BuildPlan("20241207T120000Z", datetime.fromtimestamp(now_s, UTC), 1, definitions)
    bucket = MemoryBucket()
    # WHEN a build's shard evaluates them
    run_shard(plan, 0, events=MemoryEvents(population.records()), bucket=bucket, report=False)
    built = dict(read_member_lines(bucket.iter_lines(layout.members_key(plan.build_id, 0))))
    # THEN each visitor's evaluation has the build's segments and expiry
    segments = compile_segments(definitions)
    found = 0
    for history in population.histories():
        membership = evaluate_visitor(history, segments, plan.now_ms)
        stored = built.get(history.visitor_id)
        assert membership.segments == (stored.segments if stored else frozenset()), history.visitor_id
        if stored:
            assert membership.expires_at == stored.expires_at, history.visitor_id
        assert membership.due_ms == next_change_ms(history, segments, plan.now_ms)
        found += bool(stored)
    assert found > 20  # the audience has members to compare


def test_evaluate_visitor_looks_one_change_ahead_and_stops_at_the_horizon():
    # GIVEN a generated audience and every reference segment
    now_s = 1_733_140_800 + 5 * 86_400
    population = generate(5, 120, now_ms=now_s * 1000)
    segments = compile_segments(tuple(s.definition for s in CATALOGUE))
    now, horizon = now_s * 1000, now_s * 1000 + 3 * DAY
    ahead = limited = 0
    for history in population.histories():
        # WHEN each visitor is evaluated, with and without a horizon
        exact = evaluate_visitor(history, segments, now, max_evaluations=NEVER_CHECKED)
        bounded = evaluate_visitor(history, segments, now, horizon_ms=horizon, max_evaluations=NEVER_CHECKED)
        if exact.due_ms is None:
            assert (exact.next_segments, exact.next_due_ms) == (frozenset(), None)
        else:
            # THEN the step ahead is what an evaluation at the due instant gives
            at_due = evaluate_visitor(history, segments, exact.due_ms, max_evaluations=NEVER_CHECKED)
            assert exact.next_segments == at_due.segments != exact.segments, history.visitor_id
            assert exact.next_due_ms == at_due.due_ms, history.visitor_id
            ahead += 1
        # AND a horizon only drops the changes at or after it
        assert bounded.segments == exact.segments
        if exact.due_ms is not None and exact.due_ms < horizon:
            assert (bounded.due_ms, bounded.next_segments) == (exact.due_ms, exact.next_segments)
            expected_next = exact.next_due_ms if exact.next_due_ms is not None and exact.next_due_ms < horizon else None
            assert bounded.next_due_ms == expected_next, history.visitor_id
            limited += exact.next_due_ms is not None and expected_next is None
        else:
            assert (bounded.due_ms, bounded.next_segments, bounded.next_due_ms) == (None, frozenset(), None)
            limited += exact.due_ms is not None
    assert ahead > 20 and limited > 5  # both cases are met


def test_the_steps_ahead_are_the_evaluations_at_each_change_in_turn():
    # GIVEN a generated audience and every reference segment
    now_s = 1_733_140_800 + 5 * 86_400
    population = generate(6, 120, now_ms=now_s * 1000)
    segments = compile_segments(tuple(s.definition for s in CATALOGUE))
    deep = 0
    for history in population.histories():
        # WHEN each visitor is evaluated three steps ahead
        result = evaluate_visitor(history, segments, now_s * 1000, max_evaluations=NEVER_CHECKED, steps=3)
        one = evaluate_visitor(history, segments, now_s * 1000, max_evaluations=NEVER_CHECKED)
        # THEN the first step is the one-step evaluation's
        assert (result.segments, result.due_ms, result.next_segments) == (one.segments, one.due_ms, one.next_segments)
        # AND each step is what an evaluation at its instant gives, walked change by change
        walked = [(result.due_ms, result.next_segments), *result.later]
        if result.due_ms is None:
            assert (result.next_due_ms, result.later, result.until_ms) == (None, (), None)
            continue
        for (at, then), following in zip(walked, [*(s[0] for s in walked[1:]), None], strict=True):
            there = evaluate_visitor(history, segments, at, max_evaluations=NEVER_CHECKED)
            assert there.segments == then, history.visitor_id
            if following is not None:
                assert there.due_ms == following, history.visitor_id
        last = evaluate_visitor(history, segments, walked[-1][0], max_evaluations=NEVER_CHECKED)
        # AND what the steps know ends where the last one changes (one step: next_due_ms)
        assert (result.until_ms if result.later else result.next_due_ms) == last.due_ms, history.visitor_id
        assert len(result.later) <= 2 and (not result.later or result.next_due_ms == result.later[0][0])
        deep += len(result.later) == 2
    assert deep > 5  # visitors with three changes ahead are met


def test_a_visitor_out_of_every_segment_until_the_due_instant_keeps_its_expiry():
    # GIVEN a visitor who enters the segment only once an event leaves the window
    history = visitor(hit(ago(days=2), expires_at=NOW_S + 88 * 86_400))
    segments = compile_segments([segment({"event": {"max_count": 0, "within_days": 7}})])
    # WHEN evaluated now
    membership = evaluate_visitor(history, segments, NOW)
    # THEN it is in no segment now, in the segment from the event's window exit on
    assert membership == VisitorMembership(
        segments=frozenset(),
        expires_at=NOW_S + 88 * 86_400,  # the item keeps the next step until the data expires
        due_ms=ago(days=2) + 7 * DAY,
        next_segments=frozenset({"the-segment"}),
        next_due_ms=(NOW_S + 88 * 86_400) * 1000,  # with its data gone, it is in no segment
    )


# --- properties -------------------------------------------------------------------------

_WINDOW_DAYS = [d for d in BOUNDARY_DAYS if d > 0] + [0.25]
_EDGES = [-round(d * DAY) + delta for d in BOUNDARY_DAYS for delta in (-1, 0, 1)]
_GAPS = [30 * MINUTE - 1, 30 * MINUTE, 30 * MINUTE + 1, 5 * MINUTE, 2 * DAY]


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    window = st.none() | st.sampled_from(_WINDOW_DAYS)
    count = st.none() | st.integers(0, 3)

    def event(name: str | None, url: str | None, low: int | None, high: int | None, days: float | None) -> dict:
        spec: dict[str, Any] = {"name": name, "url_contains": url, "within_days": days}
        if low is not None and high is not None and low > high:
            low, high = high, low
        spec |= {"min_count": low, "max_count": high}
        return {"event": {k: v for k, v in spec.items() if v is not None}}

    def visits(low: int | None, high: int | None, days: float | None) -> dict:
        if low is not None and high is not None and low > high:
            low, high = high, low
        spec = {"min": low, "max": high, "within_days": days}
        return {"visits": {k: v for k, v in spec.items() if v is not None}}

    return st.one_of(
        st.builds(
            event,
            st.none() | st.sampled_from(NAMES),
            st.none() | st.sampled_from(["/pricing", "blog"]),
            count,
            count,
            window,
        ),
        st.builds(visits, count, count, window),
        st.sampled_from(["London", "Paris"]).map(lambda city: {"geo": {"city": city}}),
        st.sampled_from(["mobile", "desktop"]).map(lambda kind: {"device": {"type": kind}}),
        st.sampled_from(["first_seen", "last_seen"]).flatmap(
            lambda kind: st.sampled_from(_WINDOW_DAYS).map(lambda days: {kind: {"within_days": days}})
        ),
        st.sampled_from([{"trait": {"name": "tier", "in": ["gold", "silver"]}}, {"trait": {"name": "age", "gte": 18}}]),
    )


_RULES = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda rules: {"all": rules}),
        st.lists(inner, min_size=1, max_size=3).map(lambda rules: {"any": rules}),
        inner.map(lambda rule: {"not": rule}),
    ),
    max_leaves=5,
)


@st.composite
def definitions(draw: st.DrawFn) -> list[SegmentDefinition]:
    """A few of the reference segments (the repo's among them) and drawn rules: few, so
    that each leaf's own changes are often the first change of the whole membership."""
    catalogue = [s.definition for s in CATALOGUE]
    picked = draw(st.lists(st.sampled_from(range(len(catalogue))), max_size=3, unique=True))
    drawn = draw(st.lists(_RULES, min_size=0 if picked else 1, max_size=2))
    return [catalogue[i] for i in picked] + [segment(rule, f"drawn-{i}") for i, rule in enumerate(drawn)]


@st.composite
def histories(draw: st.DrawFn, now: int) -> VisitorHistory:
    now_s = now // 1000
    events: list[EventRecord] = []
    for _ in range(draw(st.integers(1, 3))):  # runs of events: visits, window edges
        anchor = now + draw(st.sampled_from(_EDGES) | st.integers(-60 * DAY, 2 * DAY))
        gaps = draw(st.lists(st.sampled_from(_GAPS), min_size=1, max_size=3))
        for i in range(len(gaps) + 1):
            ts = anchor + sum(gaps[:i])
            place = draw(st.sampled_from(PLACES))
            # most never expire or expire late, so that windows make many of the changes
            kind = draw(st.sampled_from(["never", "never", "late", "edge", "any"]))
            expires: int | None = None
            if kind == "late":
                expires = ts // 1000 + 90 * 86_400
            elif kind == "edge":
                expires = draw(st.sampled_from([now_s - 1, now_s, now_s + 1, ts // 1000 + 7 * 86_400]))
            elif kind == "any":
                expires = draw(st.integers(now_s, now_s + 100 * 86_400))
            events.append(
                EventRecord(
                    ts_ms=ts,
                    name=draw(st.sampled_from(NAMES)),
                    url=draw(st.sampled_from(URLS)),
                    ref=draw(st.sampled_from(REFS)),
                    props=draw(st.sampled_from(PROPS)),
                    country=place[0],
                    region=place[1],
                    city=place[2],
                    device=draw(st.sampled_from(DEVICES)),
                    expires_at=expires,
                )
            )
    traits: list[TraitRecord] = []
    for ts_offset in draw(st.lists(st.integers(-100 * DAY, 3 * DAY), max_size=3, unique=True)):
        name = draw(st.sampled_from(TRAIT_NAMES))
        expires = draw(st.sampled_from([None, now_s, now_s + 1]) | st.integers(now_s, now_s + 100 * 86_400))
        traits.append(TraitRecord(name, draw(st.sampled_from(TRAIT_VALUES[name])), now + ts_offset, expires))
    order = draw(st.permutations(range(len(events))))  # the engine must not rely on order
    return VisitorHistory(VISITOR, [events[i] for i in order], traits)


def _windows(definition: SegmentDefinition) -> set[int]:
    found: set[int] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "within_days" and value is not None:
                    found.add(round(value * DAY))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(definition.model_dump(mode="json", by_alias=True))
    return found


def brute_next_change(history: VisitorHistory, segments: list[CompiledSegment], now: int) -> int | None:
    """An independent, slower statement: every record's time, expiry and time plus every
    window of any rule, tried in order, with no bound."""
    windows = set().union(*(_windows(s.definition) for s in segments))
    instants = {r.ts_ms for r in [*history.events, *history.traits]}
    instants |= {r.expires_at * 1000 for r in [*history.events, *history.traits] if r.expires_at is not None}
    instants |= {e.ts_ms + w for e in history.events for w in windows}
    at_now = members_at(history, segments, now)
    for instant in sorted(i for i in instants if i > now):
        if members_at(history, segments, instant) != at_now:
            return instant
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), drawn=definitions(), now=st.sampled_from([NOW, NOW + 500]))
def test_membership_holds_until_the_due_instant_and_changes_at_it(
    data: st.DataObject, drawn: list[SegmentDefinition], now: int
):
    # GIVEN a drawn history, and the reference segments plus drawn rules
    history = data.draw(histories(now))
    segments = compile_segments(drawn)
    at_now = members_at(history, segments, now)
    # WHEN the next change is worked out with no bound, and with the default one
    exact = next_change_ms(history, segments, now, max_evaluations=NEVER_CHECKED)
    bounded = next_change_ms(history, segments, now)
    # THEN it is the first instant at which membership differs
    assert exact == brute_next_change(history, segments, now)
    if exact is not None:
        assert exact > now and members_at(history, segments, exact) != at_now
    # AND membership is the same at any instant before it, the last millisecond included
    horizon = exact if exact is not None else now + 200 * DAY
    for instant in [*data.draw(st.lists(st.integers(now, horizon - 1), max_size=8)), now, horizon - 1]:
        assert members_at(history, segments, instant) == at_now, instant
    # AND the bounded answer is never later than the exact one
    assert bounded is not None if exact is not None else True
    if bounded is not None:
        assert now < bounded <= (exact if exact is not None else bounded)


@pytest.mark.parametrize("seed", [1, 2])
def test_due_instants_on_a_generated_audience_are_exact(seed: int):
    # GIVEN a seeded audience (events on window edges, 30-minute gaps, expiries at now)
    population = generate(seed, 120)
    now = population.now_ms
    segments = compile_segments([s.definition for s in CATALOGUE])
    for history in population.histories(shuffle_seed=seed):
        at_now = members_at(history, segments, now)
        # WHEN its due instant is worked out
        exact = next_change_ms(history, segments, now, max_evaluations=NEVER_CHECKED)
        # THEN membership holds up to it and differs at it
        assert exact == brute_next_change(history, segments, now), history.visitor_id
        if exact is not None:
            assert members_at(history, segments, exact - 1) == at_now
            assert members_at(history, segments, exact) != at_now


def test_membership_expiry_is_the_last_records_expiry():
    history = visitor(
        hit(ago(days=2), expires_at=NOW_S + 10),
        hit(ago(days=1)),
        traits=(TraitRecord("tier", "gold", ago(days=1), expires_at=NOW_S + 20),),
    )
    assert membership_expiry(history) == NOW_S + 20
