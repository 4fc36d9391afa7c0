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
from functools import cached_property

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

DAY_MS = 86_400_000
VISIT_GAP_MS = 30 * 60 * 1000


def _alive(ts_ms: int, expires_at: int | None, now_ms: int) -> bool:
    return ts_ms <= now_ms and (expires_at is None or expires_at * 1000 > now_ms)


class VisitorView:
    """What the rules see of a visitor at `now_ms`."""

    def __init__(self, history: VisitorHistory, now_ms: int) -> None:
        self.visitor_id = history.visitor_id
        self.now_ms = now_ms
        self.events: list[EventRecord] = sorted(
            (e for e in history.events if _alive(e.ts_ms, e.expires_at, now_ms)), key=lambda e: e.ts_ms
        )
        self._traits = history.traits

    @property
    def is_known(self) -> bool:
        """A visitor with no live event and no live trait is not in the audience at all."""
        return bool(self.events) or bool(self.traits)

    @cached_property
    def visit_starts(self) -> list[int]:
        starts: list[int] = []
        previous: int | None = None
        for event in self.events:
            if previous is None or event.ts_ms - previous > VISIT_GAP_MS:
                starts.append(event.ts_ms)
            previous = event.ts_ms
        return starts

    @cached_property
    def location(self) -> EventRecord | None:
        for event in reversed(self.events):
            if event.country or event.region or event.city:
                return event
        return None

    @cached_property
    def traits(self) -> dict[str, object]:
        latest: dict[str, TraitRecord] = {}
        for trait in self._traits:
            if not _alive(trait.ts_ms, trait.expires_at, self.now_ms):
                continue
            current = latest.get(trait.name)
            if current is None or trait.ts_ms >= current.ts_ms:
                latest[trait.name] = trait
        return {name: trait.value for name, trait in latest.items()}

    def window_start(self, within_days: float | None) -> int | None:
        """Exclusive lower bound of the window, or None for all history."""
        return None if within_days is None else self.now_ms - round(within_days * DAY_MS)


Predicate = Callable[[VisitorView], bool]


def _count_bounds(low: int | None, high: int | None) -> tuple[int, float]:
    return (low if low is not None else (0 if high is not None else 1)), (high if high is not None else float("inf"))


def _event_matcher(spec: EventFilter) -> Callable[[EventRecord], bool]:
    checks: list[Callable[[EventRecord], bool]] = []
    if spec.name is not None:
        name = spec.name
        checks.append(lambda e: e.name == name)
    if spec.url_contains is not None:
        needle = spec.url_contains.casefold()
        checks.append(lambda e: e.url is not None and needle in e.url.casefold())
    if spec.url_prefix is not None:
        prefix = spec.url_prefix
        checks.append(lambda e: e.url is not None and e.url.startswith(prefix))
    if spec.url_regex is not None:
        pattern = re.compile(spec.url_regex)
        checks.append(lambda e: e.url is not None and pattern.search(e.url) is not None)
    if spec.ref_contains is not None:
        ref_needle = spec.ref_contains.casefold()
        checks.append(lambda e: e.ref is not None and ref_needle in e.ref.casefold())
    wanted_props = spec.text_props
    if wanted_props:
        checks.append(lambda e: all(e.props.get(key) == value for key, value in wanted_props.items()))
    return lambda event: all(check(event) for check in checks)


def _compile_event(spec: EventFilter) -> Predicate:
    matches = _event_matcher(spec)
    low, high = _count_bounds(spec.min_count, spec.max_count)
    within = spec.within_days

    def predicate(view: VisitorView) -> bool:
        start = view.window_start(within)
        count = 0
        for event in reversed(view.events):  # newest first: stop at the window's edge
            if start is not None and event.ts_ms <= start:
                break
            if matches(event):
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
        parts = [compile_rule(r) for r in rule.all]
        return lambda view: all(p(view) for p in parts)
    if isinstance(rule, AnyRule):
        options = [compile_rule(r) for r in rule.any]
        return lambda view: any(p(view) for p in options)
    if isinstance(rule, NotRule):
        inner = compile_rule(rule.not_)
        return lambda view: not inner(view)
    if isinstance(rule, EventRule):
        return _compile_event(rule.event)
    if isinstance(rule, VisitsRule):
        visits = rule.visits
        low, high = _count_bounds(visits.min, visits.max)

        def count_visits(view: VisitorView) -> bool:
            start = view.window_start(visits.within_days)
            count = sum(1 for s in view.visit_starts if start is None or s > start)
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
            return place is not None and all((getattr(place, attr) or "").casefold() == value for attr, value in wanted)

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
