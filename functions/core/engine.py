"""Evaluation of segment rules over one visitor's history at the build's time `now`.

Each rule is compiled once into a predicate over a `VisitorView`; the view derives what
rules ask for (live events, visits, latest geo and device, traits) lazily and once.
Semantics are those of DESIGN.md, "Segment definitions":
- a window `within_days: d` is the half-open interval (now - d days, now];
- events after `now`, and events whose retention has expired by `now`, do not exist;
- a visit is a run of events with gaps <= 30 minutes, formed over the whole live history,
  and lies in a window when its first event does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter

from functions.core.hits import as_text
from functions.core.records import EventRecord, TraitRecord, VisitorHistory
from functions.core.segments import (
    AllRule,
    AnyRule,
    DeviceRule,
    EventFilter,
    EventRule,
    FirstSeenRule,
    GeoRule,
    LastSeenRule,
    NotRule,
    Rule,
    SegmentDefinition,
    TraitRule,
    VisitsRule,
)
from functions.core.times import DAY_MS

VISIT_GAP_MS = 30 * 60 * 1000


def _alive(ts_ms: int, expires_at: int | None, now_ms: int) -> bool:
    return ts_ms <= now_ms and (expires_at is None or expires_at * 1000 > now_ms)


def _window_ms(within_days: float | None) -> int | None:
    return None if within_days is None else round(within_days * DAY_MS)


_BY_TIME = attrgetter("ts_ms")


class VisitorView:
    """What the rules see of a visitor at `now_ms`: its live events in time order, and
    what rules derive from them (visits, latest location, traits), each worked out once
    on first use. Plain slots and explicit caching: a build makes one view per visitor."""

    __slots__ = (
        "_location",
        "_location_done",
        "_raw_traits",
        "_traits",
        "_visit_starts",
        "events",
        "now_ms",
        "visitor_id",
    )

    def __init__(self, history: VisitorHistory, now_ms: int) -> None:
        self.visitor_id = history.visitor_id
        self.now_ms = now_ms
        events = [
            e for e in history.events if e.ts_ms <= now_ms and (e.expires_at is None or e.expires_at * 1000 > now_ms)
        ]
        events.sort(key=_BY_TIME)
        self.events: list[EventRecord] = events
        self._raw_traits = history.traits
        self._traits: dict[str, object] | None = None
        self._visit_starts: list[int] | None = None
        self._location: EventRecord | None = None
        self._location_done = False

    @property
    def is_known(self) -> bool:
        """A visitor with no live event and no live trait is not in the audience at all."""
        return bool(self.events) or bool(self.traits)

    @property
    def visit_starts(self) -> list[int]:
        starts = self._visit_starts
        if starts is None:
            starts = self._visit_starts = []
            previous: int | None = None
            for event in self.events:
                if previous is None or event.ts_ms - previous > VISIT_GAP_MS:
                    starts.append(event.ts_ms)
                previous = event.ts_ms
        return starts

    @property
    def location(self) -> EventRecord | None:
        """The most recent event with a known location."""
        if not self._location_done:
            self._location_done = True
            for event in reversed(self.events):
                if event.country or event.region or event.city:
                    self._location = event
                    break
        return self._location

    @property
    def traits(self) -> dict[str, object]:
        """Each trait's latest live value."""
        traits = self._traits
        if traits is None:
            latest: dict[str, TraitRecord] = {}
            for trait in self._raw_traits:
                if not _alive(trait.ts_ms, trait.expires_at, self.now_ms):
                    continue
                current = latest.get(trait.name)
                if current is None or trait.ts_ms >= current.ts_ms:
                    latest[trait.name] = trait
            traits = self._traits = {name: trait.value for name, trait in latest.items()}
        return traits

    def window_start(self, within_days: float | None) -> int | None:
        """Exclusive lower bound of the window, or None for all history."""
        window = _window_ms(within_days)
        return None if window is None else self.now_ms - window


Predicate = Callable[[VisitorView], bool]


def _count_bounds(low: int | None, high: int | None) -> tuple[int, float]:
    return (low if low is not None else (0 if high is not None else 1)), (high if high is not None else float("inf"))


def _event_matcher(spec: EventFilter) -> Callable[[EventRecord], bool] | None:
    """One function testing every filter of `spec` in turn (None: every event matches).
    Written out rather than composed from small lambdas: this runs for every event of
    every visitor, once per event leaf, and is most of a build's time."""
    name = spec.name
    needle = spec.url_contains.casefold() if spec.url_contains is not None else None
    prefix = spec.url_prefix
    pattern = re.compile(spec.url_regex) if spec.url_regex is not None else None
    ref_needle = spec.ref_contains.casefold() if spec.ref_contains is not None else None
    wanted_props = tuple(spec.text_props.items())
    if (name, needle, prefix, pattern, ref_needle) == (None,) * 5 and not wanted_props:
        return None

    def matches(event: EventRecord) -> bool:
        if name is not None and event.name != name:
            return False
        url = event.url
        if needle is not None and (url is None or needle not in event.folded_url()):
            return False
        if prefix is not None and (url is None or not url.startswith(prefix)):
            return False
        if pattern is not None and (url is None or pattern.search(url) is None):
            return False
        if ref_needle is not None and (event.ref is None or ref_needle not in event.ref.casefold()):
            return False
        if wanted_props:
            props = event.props
            for key, value in wanted_props:
                if props.get(key) != value:
                    return False
        return True

    return matches


def _compile_event(spec: EventFilter) -> Predicate:
    matches = _event_matcher(spec)
    low, high = _count_bounds(spec.min_count, spec.max_count)
    window = _window_ms(spec.within_days)

    def predicate(view: VisitorView) -> bool:
        start = None if window is None else view.now_ms - window
        count = 0
        for event in reversed(view.events):  # newest first: stop at the window's edge
            if start is not None and event.ts_ms <= start:
                break
            if matches is None or matches(event):
                count += 1
                if count > high:
                    return False
        return low <= count <= high

    return predicate


def _in_window(view: VisitorView, ts_ms: int | None, within_days: float) -> bool:
    start = view.window_start(within_days)
    return ts_ms is not None and start is not None and ts_ms > start


def compile_rule(rule: Rule) -> Predicate:
    """A predicate over a visitor that holds exactly when `rule` does."""
    if isinstance(rule, AllRule):
        parts = tuple(compile_rule(r) for r in rule.all)

        def all_hold(view: VisitorView) -> bool:
            for part in parts:  # noqa: SIM110 - a loop: no generator per visitor on the hot path
                if not part(view):
                    return False
            return True

        return all_hold
    if isinstance(rule, AnyRule):
        options = tuple(compile_rule(r) for r in rule.any)

        def any_holds(view: VisitorView) -> bool:
            for option in options:  # noqa: SIM110 - a loop: no generator per visitor on the hot path
                if option(view):
                    return True
            return False

        return any_holds
    if isinstance(rule, NotRule):
        inner = compile_rule(rule.not_)
        return lambda view: not inner(view)
    if isinstance(rule, EventRule):
        return _compile_event(rule.event)
    if isinstance(rule, VisitsRule):
        visits = rule.visits
        low, high = _count_bounds(visits.min, visits.max)

        visits_window = _window_ms(visits.within_days)

        def count_visits(view: VisitorView) -> bool:
            starts = view.visit_starts
            if visits_window is None:
                count = len(starts)
            else:
                start = view.now_ms - visits_window
                count = sum(1 for s in starts if s > start)
            return low <= count <= high

        return count_visits
    if isinstance(rule, GeoRule):
        wanted = [
            (attr, value.casefold())
            for attr, value in (("country", rule.geo.country), ("region", rule.geo.region), ("city", rule.geo.city))
            if value is not None
        ]

        def at(view: VisitorView) -> bool:
            place = view.location
            if place is None:
                return False
            for attr, value in wanted:  # noqa: SIM110 - a loop: no generator per visitor on the hot path
                if (getattr(place, attr) or "").casefold() != value:
                    return False
            return True

        return at
    if isinstance(rule, TraitRule):
        return _compile_trait(rule)
    if isinstance(rule, DeviceRule):
        device_type = rule.device.type
        return lambda view: bool(view.events) and view.events[-1].device == device_type
    if isinstance(rule, FirstSeenRule):
        first_days = rule.first_seen.within_days
        return lambda view: bool(view.events) and _in_window(view, view.events[0].ts_ms, first_days)
    if isinstance(rule, LastSeenRule):
        last_days = rule.last_seen.within_days
        return lambda view: bool(view.events) and _in_window(view, view.events[-1].ts_ms, last_days)
    raise TypeError(f"unknown rule {type(rule).__name__}")  # pragma: no cover - the models forbid it


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _compile_trait(rule: TraitRule) -> Predicate:
    spec = rule.trait
    name = spec.name
    if spec.exists is not None:
        wanted = spec.exists
        return lambda view: (name in view.traits) == wanted
    if spec.equals is not None:
        expected = as_text(spec.equals)
        return lambda view: name in view.traits and as_text(view.traits[name]) == expected  # type: ignore[arg-type]
    if spec.in_ is not None:
        options = {as_text(v) for v in spec.in_}
        return lambda view: name in view.traits and as_text(view.traits[name]) in options  # type: ignore[arg-type]
    low = spec.gte if spec.gte is not None else float("-inf")
    high = spec.lte if spec.lte is not None else float("inf")

    def ranged(view: VisitorView) -> bool:
        number = _number(view.traits.get(name))
        return number is not None and low <= number <= high

    return ranged


@dataclass(frozen=True)
class CompiledSegment:
    definition: SegmentDefinition
    holds: Predicate

    @property
    def segment_id(self) -> str:
        return self.definition.id


def compile_segments(definitions: Sequence[SegmentDefinition]) -> list[CompiledSegment]:
    return [CompiledSegment(d, compile_rule(d.rule)) for d in definitions]


def segments_of(view: VisitorView, segments: Sequence[CompiledSegment]) -> list[str]:
    if not view.is_known:
        return []
    return [s.segment_id for s in segments if s.holds(view)]


def evaluate(
    histories: Iterable[VisitorHistory], segments: Sequence[CompiledSegment], now_ms: int
) -> Iterator[tuple[str, list[str]]]:
    """(visitor_id, segment ids) for each visitor in at least one segment."""
    for history in histories:
        found = segments_of(VisitorView(history, now_ms), segments)
        if found:
            yield history.visitor_id, found
