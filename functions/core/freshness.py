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

With a horizon, the search stops there: a build, which evaluates everyone, only needs
the changes before the next build is overdue, and most visitors have no candidate that
soon, so it costs little more than the evaluation itself.

An evaluation also looks ahead: the segments from the due instant on and when those can
change in turn, and as many changes after that as asked for (`steps`), each found from
the view at the one before. The visitor's item holds them, so lookups switch at each
instant by themselves, and the sweep needs to re-evaluate the visitor only when they have
passed (most visitors' membership changes once or twice with no new data: they leave
their segments, and are never swept). A build asks for one step: its horizon is near.
"""

from __future__ import annotations

from bisect import bisect_right
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

    def crossings(self, view: VisitorView, start: int, limit: int | None, stamps: list[int]) -> Iterator[int]:
        """With the records of `view` fixed, the instants after `start` at which the
        count falls to `high`, and below `low`: the only ones where the leaf can flip.
        Only those before `limit` are wanted: an exit `t + window` lies in (start, limit)
        only if some event time does in (start - window, limit - window), which the
        view's event times (`stamps`, ascending) tell without matching any event."""
        if limit is not None:
            first = bisect_right(stamps, start - self.window)
            if first == len(stamps) or stamps[first] >= limit - self.window:
                return
        inside = sorted(t for t in self.times(view) if t + self.window > start)
        count = len(inside)
        if count > self.high:  # the (count - high)-th exit brings it down to high
            yield inside[count - int(self.high) - 1] + self.window
        if count >= self.low > 0:  # the (count - low + 1)-th exit takes it below low
            yield inside[count - self.low] + self.window


@dataclass(frozen=True, slots=True)
class VisitorMembership:
    """One visitor's membership at an instant, as a build at that instant computes it;
    the next instant at which it can change with no new data (None: never, or not before
    the horizon); the segments from then on, and when those can change in turn; and, when
    more steps were asked for, the steps after that one (`later`: from each instant, the
    segments) and when the last of them can change (`until_ms`)."""

    segments: frozenset[str]
    expires_at: int | None  # epoch seconds, the membership table's TTL; None for no segment
    due_ms: int | None
    next_segments: frozenset[str] = frozenset()
    next_due_ms: int | None = None
    later: tuple[tuple[int, frozenset[str]], ...] = ()
    until_ms: int | None = None


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
    horizon_ms: int | None = None,
    max_evaluations: int = MAX_EVALUATIONS,
    view: VisitorView | None = None,
    steps: int = 1,
) -> VisitorMembership:
    """What a build at `now_ms` computes for this visitor (its segments, and the expiry
    written with them), when to evaluate it again if no new record arrives (changes at or
    after `horizon_ms` are not looked for), and up to `steps` steps from then on: the
    segments from each change, and when the last of them can change in turn. `view`: the
    visitor's view at `now_ms`, when the caller has made it already."""
    view = view if view is not None else VisitorView(history, now_ms)
    found = frozenset(segments_of(view, segments))
    change = _next_change(history, segments, view, found, max_evaluations, horizon_ms)
    if change is None:
        return VisitorMembership(found, membership_expiry(history) if found else None, None)
    due_ms, then, at_due = change
    after = _next_change(history, segments, at_due, then, max_evaluations, horizon_ms)
    later: list[tuple[int, frozenset[str]]] = []
    expiry = membership_expiry(history)
    # (Past the data's expiry the visitor is in nothing, whatever a step would say.)
    while after is not None and len(later) + 1 < steps and (expiry is None or after[0] < expiry * 1000):
        at_ms, segments_then, view_then = after
        later.append((at_ms, segments_then))
        after = _next_change(history, segments, view_then, segments_then, max_evaluations, horizon_ms)
    return VisitorMembership(
        segments=found,
        expires_at=expiry if found or then or any(s for _, s in later) else None,
        due_ms=due_ms,
        next_segments=then,
        next_due_ms=later[0][0] if later else after[0] if after is not None else None,
        later=tuple(later),
        until_ms=after[0] if later and after is not None else None,
    )


def next_change_ms(
    history: VisitorHistory,
    segments: Sequence[SegmentDefinition] | Sequence[CompiledSegment],
    now_ms: int,
    *,
    horizon_ms: int | None = None,
    max_evaluations: int = MAX_EVALUATIONS,
) -> int | None:
    """The earliest instant after `now_ms` at which the visitor's segments can differ from
    those at `now_ms` with no new record (None: never, or not before `horizon_ms`).
    Membership is the same at every instant of [now_ms, due); at `due` it differs, unless
    `max_evaluations` candidates were tried first, in which case `due` is the next
    candidate (early, never late)."""
    compiled = _compiled(segments)
    view = VisitorView(history, now_ms)
    current = frozenset(segments_of(view, compiled))
    change = _next_change(history, compiled, view, current, max_evaluations, horizon_ms)
    return change[0] if change is not None else None


def _compiled(segments: Sequence[SegmentDefinition] | Sequence[CompiledSegment]) -> list[CompiledSegment]:
    return [s if isinstance(s, CompiledSegment) else CompiledSegment(s, compile_rule(s.rule)) for s in segments]


def _next_change(
    history: VisitorHistory,
    segments: Sequence[CompiledSegment],
    view: VisitorView,
    current: frozenset[str],
    max_evaluations: int,
    horizon_ms: int | None,
) -> tuple[int, frozenset[str], VisitorView] | None:
    """The next change after `view`'s instant (its instant, the segments from then on
    and the view there), or None."""
    windowed = [leaf for s in segments for leaf in _leaves_of(s)]
    evaluations = 0
    start = view.now_ms
    ends: list[int | None] = [*_record_changes(history, start), None]
    for end in ends:
        if horizon_ms is not None and (end is None or end >= horizon_ms):
            end = None  # the last interval looked at: candidates before the horizon only
            limit: int | None = horizon_ms
        else:
            limit = end
        # [start, end): the same records exist throughout (`view` shows them); only
        # windows slide, so membership can change only where a windowed count crosses a bound
        stamps = [e.ts_ms for e in view.events]
        exits = {instant for leaf in windowed for instant in leaf.crossings(view, start, limit, stamps)}
        candidates = sorted(t for t in exits if limit is None or t < limit)
        if end is not None:
            candidates.append(end)
        for instant in candidates:
            view = VisitorView(history, instant)
            found = frozenset(segments_of(view, segments))
            if evaluations == max_evaluations or found != current:
                return instant, found, view
            evaluations += 1
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


# The windowed leaves of each compiled segment, worked out once: a build or a batch
# evaluates many visitors with the same segments. Keyed by the object's id, which the
# entry keeps alive, so an id is never reused while its entry stands.
_LEAVES: dict[int, tuple[CompiledSegment, tuple[_WindowedCount, ...]]] = {}
_LEAVES_KEPT = 1024


def _leaves_of(segment: CompiledSegment) -> tuple[_WindowedCount, ...]:
    entry = _LEAVES.get(id(segment))
    if entry is None or entry[0] is not segment:
        if len(_LEAVES) >= _LEAVES_KEPT:
            _LEAVES.clear()
        entry = _LEAVES[id(segment)] = (segment, tuple(_windowed_counts(segment.definition.rule)))
    return entry[1]


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
