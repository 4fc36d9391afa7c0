"""When a visitor's membership can next change with no new data (DESIGN.md, "Freshness").

Membership at an instant t is a function of a few step functions of t, each of the form
"t >= a", so it is constant between the instants `a` and can change only at one of them:
- a record (event or trait) exists from its `ts_ms` on (`ts_ms <= t`) and until its
  retention ends (`expires_at * 1000 > t`): it appears at `ts_ms` and is gone at
  `expires_at * 1000`, exactly;
- a time `s` is in a window of `w` ms while `s > t - w`, i.e. until `t = s + w`, when it
  leaves; the times rules put in windows are the matching events' times (`event`), the
  visits' first events (`visits`) and the first and last events (`first_seen`,
  `last_seen`).

Visit starts, the first and last event, the latest location and device and the traits'
values are all worked out from the records that exist, so they stay put between two
instants where a record appears or goes. Inside such an interval nothing enters a
window, so each windowed leaf's count only falls, and its truth (`low <= count <= high`)
can change only where the count falls to `high` or below `low`: at most two instants per
leaf. `next_change_ms` walks those intervals in time order, lists each one's instants
from the view at its start, and evaluates at every candidate in increasing order until
membership differs: the first such candidate is the exact next change. Evaluation is
bounded: after `MAX_EVALUATIONS` equal answers the next candidate is returned, which may
be early (the visitor is re-evaluated then for nothing) but never late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from functions.core.engine import (
    CompiledSegment,
    VisitorView,
    _count_bounds,
    _event_matcher,
    _window_ms,
    compile_rule,
    segments_of,
)
from functions.core.records import EventRecord, TraitRecord, VisitorHistory
from functions.core.segments import (
    AllRule,
    AnyRule,
    EventRule,
    FirstSeenRule,
    LastSeenRule,
    NotRule,
    Rule,
    SegmentDefinition,
    VisitsRule,
)

# Evaluations at candidate instants before giving up on finding the exact change: a
# visitor's candidates are mostly its records' expiries and its recent events' window
# exits, and the first change is usually among the first few.
MAX_EVALUATIONS = 64


@dataclass(frozen=True, slots=True)
class _WindowedCount:
    """A leaf that holds when `low <= count <= high`, counting the times `times` gives
    for a view that lie in a window of `window` ms."""

    window: int
    low: int
    high: float
    times: Callable[[VisitorView], Iterable[int]]

    def crossings(self, view: VisitorView, start: int) -> Iterator[int]:
        """With the records of `view` fixed, the instants after `start` at which the
        count falls to `high`, and below `low`: the only ones where the leaf can flip."""
        inside = sorted(t for t in self.times(view) if t + self.window > start)
        count = len(inside)
        if count > self.high:  # the (count - high)-th exit brings it down to high
            yield inside[count - int(self.high) - 1] + self.window
        if count >= self.low > 0:  # the (count - low + 1)-th exit takes it below low
            yield inside[count - self.low] + self.window


@dataclass(frozen=True, slots=True)
class VisitorMembership:
    """One visitor's membership at an instant, as a build at that instant computes it,
    and the next instant at which it can change with no new data (None: never)."""

    segments: frozenset[str]
    expires_at: int | None  # epoch seconds, the membership table's TTL; None for no segment
    due_ms: int | None


def membership_expiry(history: VisitorHistory) -> int | None:
    """When the last of the visitor's records expires: after that it is in no segment."""
    expiries = [r.expires_at for r in history.events if r.expires_at is not None]
    expiries.extend(r.expires_at for r in history.traits if r.expires_at is not None)
    return max(expiries) if expiries else None


def evaluate_visitor(
    history: VisitorHistory,
    segments: Sequence[CompiledSegment],
    now_ms: int,
    *,
    max_evaluations: int = MAX_EVALUATIONS,
) -> VisitorMembership:
    """What a build at `now_ms` computes for this visitor (its segments, and the expiry
    written with them), and when to evaluate it again if no new record arrives."""
    found = frozenset(segments_of(VisitorView(history, now_ms), segments))
    return VisitorMembership(
        segments=found,
        expires_at=membership_expiry(history) if found else None,
        due_ms=_next_change(history, segments, now_ms, found, max_evaluations),
    )


def next_change_ms(
    history: VisitorHistory,
    segments: Sequence[SegmentDefinition] | Sequence[CompiledSegment],
    now_ms: int,
    *,
    max_evaluations: int = MAX_EVALUATIONS,
) -> int | None:
    """The earliest instant after `now_ms` at which the visitor's segments can differ from
    those at `now_ms` with no new record (None: never). Membership is the same at every
    instant of [now_ms, due); at `due` it differs, unless `max_evaluations` candidates
    were tried first, in which case `due` is the next candidate (early, never late)."""
    compiled = _compiled(segments)
    current = frozenset(segments_of(VisitorView(history, now_ms), compiled))
    return _next_change(history, compiled, now_ms, current, max_evaluations)


def _compiled(segments: Sequence[SegmentDefinition] | Sequence[CompiledSegment]) -> list[CompiledSegment]:
    return [s if isinstance(s, CompiledSegment) else CompiledSegment(s, compile_rule(s.rule)) for s in segments]


def _next_change(
    history: VisitorHistory,
    segments: Sequence[CompiledSegment],
    now_ms: int,
    current: frozenset[str],
    max_evaluations: int,
) -> int | None:
    windowed = [leaf for s in segments for leaf in _windowed_counts(s.definition.rule)]
    evaluations = 0
    start, view = now_ms, VisitorView(history, now_ms)
    ends: list[int | None] = [*_record_changes(history, now_ms), None]
    for end in ends:
        # [start, end): the same records exist throughout (`view` shows them); only
        # windows slide, so membership can change only where a windowed count crosses a bound
        exits = {instant for leaf in windowed for instant in leaf.crossings(view, start)}
        candidates = sorted(t for t in exits if end is None or t < end)
        if end is not None:
            candidates.append(end)
        for instant in candidates:
            if evaluations == max_evaluations:
                return instant
            evaluations += 1
            view = VisitorView(history, instant)
            if frozenset(segments_of(view, segments)) != current:
                return instant
        if end is None:
            break
        start = end
    return None


def _record_changes(history: VisitorHistory, now_ms: int) -> list[int]:
    """The instants after `now_ms` at which a record appears or is gone, in order."""
    instants: set[int] = set()
    records: list[EventRecord | TraitRecord] = [*history.events, *history.traits]
    for record in records:
        if record.ts_ms > now_ms:
            instants.add(record.ts_ms)
        if record.expires_at is not None and record.expires_at * 1000 > now_ms:
            instants.add(record.expires_at * 1000)
    return sorted(instants)


def _windowed_counts(rule: Rule) -> Iterator[_WindowedCount]:
    """Each windowed leaf of `rule`, as a count of times in its window between bounds."""
    if isinstance(rule, AllRule | AnyRule):
        for part in rule.all if isinstance(rule, AllRule) else rule.any:
            yield from _windowed_counts(part)
    elif isinstance(rule, NotRule):
        yield from _windowed_counts(rule.not_)
    elif isinstance(rule, EventRule):
        window = _window_ms(rule.event.within_days)
        if window is not None:
            low, high = _count_bounds(rule.event.min_count, rule.event.max_count)
            yield _WindowedCount(window, low, high, _matching_times(_event_matcher(rule.event)))
    elif isinstance(rule, VisitsRule):
        window = _window_ms(rule.visits.within_days)
        if window is not None:
            low, high = _count_bounds(rule.visits.min, rule.visits.max)
            yield _WindowedCount(window, low, high, lambda view: view.visit_starts)
    elif isinstance(rule, FirstSeenRule | LastSeenRule):
        # "the first (last) event lies in the window": a count of that one time, at least 1
        seen = rule.first_seen if isinstance(rule, FirstSeenRule) else rule.last_seen
        window = _window_ms(seen.within_days)
        assert window is not None  # the models require it
        first = isinstance(rule, FirstSeenRule)
        yield _WindowedCount(
            window, 1, float("inf"), lambda view: [e.ts_ms for e in (view.events[:1] if first else view.events[-1:])]
        )


def _matching_times(matches: Callable[[EventRecord], bool] | None) -> Callable[[VisitorView], Iterable[int]]:
    def times(view: VisitorView) -> Iterable[int]:
        return (e.ts_ms for e in view.events if matches is None or matches(e))

    return times
