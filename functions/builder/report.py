"""A build's report (DESIGN.md, "Reports"): every segment's size and its change since the
previous published build, its trend over the kept builds, the overlap of every pair of
segments, each destination's reach and the members' device and country mix.

The figures are counted by the shards in the very pass that evaluates the rules, never by
a second scan: a shard tallies its members by *profile* (the tuple of segments it is in,
its latest device type, its latest country) and folds those tallies into per-pair,
per-destination and per-segment counters whenever they pass `FOLD_AT` profiles, so its
memory is bounded by the number of segments squared (and of countries), not by visitors.
Publish sums the shards' counts (`ShardResult.report`), adds the trend from the previous
build's report (one small read, not the kept builds' part files) and writes
`report.json` and `report.html` before `latest.json`.

Change since the previous published build (`added`, `removed`): a shard planned on the
published build already diffs each of its visitors against that build's members
(changes.py), and counts the moves there. Without such a base (the first build after a
new shard count, or after a membership update cut short) publish diffs the two builds'
members files instead, holding the previous build's members in memory as the membership
fallback of that path does already. The first build has nothing to compare with: `None`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from functions.builder.changes import MemberLine
from functions.builder.stores import BuildBucket
from functions.core import layout
from functions.core.documents import (
    BuildReport,
    DestinationReach,
    Manifest,
    ReportSegment,
    SegmentOverlap,
    TrendPoint,
)
from functions.core.engine import VisitorView
from functions.core.segments import SegmentDefinition

# What a member with no known device type or country counts as.
UNKNOWN = "unknown"
# Profiles a shard keeps before folding them into its counters: a bounded buffer, which
# makes the per-visitor work one dictionary increment in the common case.
FOLD_AT = 4096


class SegmentMoves:
    """Members added to and removed from each segment against a previous build."""

    def __init__(self) -> None:
        self.added: dict[str, int] = {}
        self.removed: dict[str, int] = {}

    def moved(self, before: frozenset[str], after: Sequence[str]) -> None:
        if len(before) == len(after) and before.issuperset(after):
            return  # the common case: the same segments
        added, removed = self.added, self.removed
        for segment_id in after:
            if segment_id not in before:
                added[segment_id] = added.get(segment_id, 0) + 1
        for segment_id in before.difference(after):
            removed[segment_id] = removed.get(segment_id, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"added": dict(sorted(self.added.items())), "removed": dict(sorted(self.removed.items()))}

    def merge(self, document: Mapping[str, Any]) -> None:
        for target, counts in ((self.added, document["added"]), (self.removed, document["removed"])):
            for segment_id, count in counts.items():
                target[segment_id] = target.get(segment_id, 0) + int(count)


class ReportCounts:
    """A shard's (or, summed, a build's) report figures over its members."""

    def __init__(self, definitions: Sequence[SegmentDefinition]) -> None:
        self._destinations = {d.id: tuple(d.destinations) for d in definitions}
        self._profiles: dict[tuple[tuple[str, ...], str, str], int] = {}
        self.pairs: dict[tuple[str, str], int] = {}
        self.reach: dict[str, int] = {}
        self.devices: dict[str, dict[str, int]] = {}
        self.countries: dict[str, dict[str, int]] = {}
        # Against the plan's base build; None when the shard had none.
        self.moves: SegmentMoves | None = None

    def visit(self, view: VisitorView, found: list[str]) -> None:
        """Count a member: `found` its segments, in the definitions' order."""
        events = view.events
        device = (events[-1].device if events else None) or UNKNOWN
        place = view.location
        country = (place.country if place is not None else None) or UNKNOWN
        key = (tuple(found), device, country)
        profiles = self._profiles
        profiles[key] = profiles.get(key, 0) + 1
        if len(profiles) >= FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        pairs, reach, devices, countries = self.pairs, self.reach, self.devices, self.countries
        destinations = self._destinations
        for (found, device, country), count in self._profiles.items():
            for index, a in enumerate(found):
                for b in found[index + 1 :]:
                    pairs[a, b] = pairs.get((a, b), 0) + count
                mix = devices.setdefault(a, {})
                mix[device] = mix.get(device, 0) + count
                mix = countries.setdefault(a, {})
                mix[country] = mix.get(country, 0) + count
            for partner in {p for segment_id in found for p in destinations.get(segment_id, ())}:
                reach[partner] = reach.get(partner, 0) + count
        self._profiles = {}

    def to_json(self) -> dict[str, Any]:
        self._fold()
        return {
            "pairs": [[a, b, n] for (a, b), n in sorted(self.pairs.items())],
            "reach": dict(sorted(self.reach.items())),
            "devices": {s: dict(sorted(mix.items())) for s, mix in sorted(self.devices.items())},
            "countries": {s: dict(sorted(mix.items())) for s, mix in sorted(self.countries.items())},
            "moves": None if self.moves is None else self.moves.to_json(),
        }

    def merge(self, document: Mapping[str, Any]) -> None:
        """Add a shard's counts (its `to_json`) to these."""
        self._fold()
        for a, b, count in document["pairs"]:
            self.pairs[a, b] = self.pairs.get((a, b), 0) + int(count)
        for partner, count in document["reach"].items():
            self.reach[partner] = self.reach.get(partner, 0) + int(count)
        for target, mixes in ((self.devices, document["devices"]), (self.countries, document["countries"])):
            for segment_id, mix in mixes.items():
                into = target.setdefault(segment_id, {})
                for value, count in mix.items():
                    into[value] = into.get(value, 0) + int(count)


def sum_counts(definitions: Sequence[SegmentDefinition], shard_reports: Iterable[Mapping[str, Any]]) -> ReportCounts:
    """The build's counts: the shards' summed. Moves are summed only when every shard
    diffed against a base (the caller checks it is the same build for all)."""
    total = ReportCounts(definitions)
    moves: SegmentMoves | None = SegmentMoves()
    for document in shard_reports:
        total.merge(document)
        if moves is not None and document.get("moves") is not None:
            moves.merge(document["moves"])
        else:
            moves = None
    total.moves = moves
    return total


def moves_between(bucket: BuildBucket, previous: Manifest, build_id: str, shards: int) -> SegmentMoves | None:
    """Added and removed members of each segment, from the two builds' members files
    (the path without a base build); None when the previous build has no members files
    though it had members (a build from before they existed)."""
    members_prefix = layout.build_prefix(previous.build_id) + "members/"
    keys = list(bucket.keys(members_prefix))
    if not keys and any(s.size for s in previous.segments):
        return None
    before: dict[str, frozenset[str]] = {}
    for key in keys:
        for line in bucket.iter_lines(key):
            member = MemberLine.parse(line)
            before[member.visitor_id] = frozenset(member.segment_ids)
    moves = SegmentMoves()
    for shard in range(shards):
        for line in bucket.iter_lines(layout.members_key(build_id, shard)):
            member = MemberLine.parse(line)
            moves.moved(before.pop(member.visitor_id, frozenset()), member.segment_ids)
    for segment_ids in before.values():
        moves.moved(segment_ids, ())
    return moves


def kept_trend(previous: BuildReport | None, manifest: Manifest) -> tuple[TrendPoint, ...]:
    """The previous report's trend and its own sizes, then this build's, oldest first: one
    small read, never the kept builds' part files (the caller keeps the newest of them)."""
    points: dict[str, TrendPoint] = {}
    if previous is not None:
        for point in previous.trend:
            points[point.build_id] = point
        points[previous.build_id] = TrendPoint(
            previous.build_id, previous.evaluated_at, {s.id: s.size for s in previous.segments}
        )
    points[manifest.build_id] = TrendPoint(
        manifest.build_id, manifest.evaluated_at, {s.id: s.size for s in manifest.segments}
    )
    return tuple(points[b] for b in sorted(points))


def jaccard(shared: int, size_a: int, size_b: int) -> float:
    either = size_a + size_b - shared
    return shared / either if either else 0.0


def assemble(
    manifest: Manifest,
    counts: ReportCounts,
    *,
    previous_build_id: str | None,
    moves: SegmentMoves | None,
    trend: tuple[TrendPoint, ...],
    complete: bool = True,
) -> BuildReport:
    """The report of a build from its manifest and its summed counts."""
    counts._fold()
    sizes = {s.id: s.size for s in manifest.segments}
    segments = tuple(
        ReportSegment(
            id=s.id,
            name=s.name,
            description=s.description,
            destinations=s.destinations,
            size=s.size,
            added=None if moves is None else moves.added.get(s.id, 0),
            removed=None if moves is None else moves.removed.get(s.id, 0),
            devices=counts.devices.get(s.id, {}),
            countries=counts.countries.get(s.id, {}),
        )
        for s in manifest.segments
    )
    ids = [s.id for s in manifest.segments]
    overlaps = []
    for index, a in enumerate(ids):
        for b in ids[index + 1 :]:
            shared = counts.pairs.get((a, b), 0)
            overlaps.append(SegmentOverlap(a, b, shared, jaccard(shared, sizes[a], sizes[b])))
    partners: dict[str, list[str]] = {}
    for segment in manifest.segments:
        for partner in segment.destinations:
            partners.setdefault(partner, []).append(segment.id)
    destinations = tuple(
        DestinationReach(partner, tuple(segment_ids), counts.reach.get(partner, 0))
        for partner, segment_ids in sorted(partners.items())
    )
    return BuildReport(
        build_id=manifest.build_id,
        evaluated_at=manifest.evaluated_at,
        previous_build_id=previous_build_id,
        visitors_scanned=manifest.visitors_scanned,
        segments=segments,
        overlaps=tuple(overlaps),
        destinations=destinations,
        trend=trend,
        complete=complete,
    )


def read_report(bucket: BuildBucket, build_id: str) -> BuildReport | None:
    document = bucket.get_json_if_exists(layout.report_key(build_id, "json"))
    return None if document is None else BuildReport.from_json(document)


def publish_report(
    bucket: BuildBucket,
    manifest: Manifest,
    definitions: Sequence[SegmentDefinition],
    shard_reports: Sequence[Mapping[str, Any] | None],
    *,
    base_build_id: str | None,
    previous_build_id: str | None,
    keep: int,
) -> BuildReport:
    """Sum the shards' counts, work out the change since `previous_build_id` (the build
    published now, which this one replaces) and the trend, and write `report.json` and
    `report.html`. Idempotent: the same inputs write the same objects."""
    from functions.builder.report_html import render

    counted = [r for r in shard_reports if r is not None]
    counts = sum_counts(definitions, counted)
    complete = len(counted) == len(shard_reports)
    moves: SegmentMoves | None = None
    previous = read_report(bucket, previous_build_id) if previous_build_id is not None else None
    if previous_build_id is not None:
        if base_build_id == previous_build_id and complete and counts.moves is not None:
            moves = counts.moves
        else:
            moves = moves_between(bucket, bucket.manifest(previous_build_id), manifest.build_id, manifest.shards)
    trend = kept_trend(previous, manifest)[-keep:]
    report = assemble(
        manifest, counts, previous_build_id=previous_build_id, moves=moves, trend=trend, complete=complete
    )
    bucket.put_json(layout.report_key(manifest.build_id, "json"), report.to_json())
    bucket.put_text(layout.report_key(manifest.build_id, "html"), render(report), content_type=HTML)
    return report


HTML = "text/html; charset=utf-8"
