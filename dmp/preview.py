"""`dmp segments preview PATH...`: the exact size each definition would have at an instant,
and its overlap with each published segment, without publishing or writing anything.

It runs the builds' own engine the way a build shard does (the events table's parallel
scan, `group_by_visitor`, `VisitorView`, `segments_of`, suppressed visitors in no
segment), so its sizes are those a build at that instant would publish. Shards run on
threads, as `dmp build` runs them. The published segments' members come from the latest
build's part files (less the visitors suppressed since), held in memory as one set of
segment indexes per member: a preview is an operator's command, not a Lambda function."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from functions.builder.plan import evaluation_moment
from functions.builder.report import jaccard
from functions.core.documents import LatestPointer, Manifest
from functions.core.engine import VisitorView, compile_segments, segments_of
from functions.core.records import Record, group_by_visitor
from functions.core.segments import SegmentDefinition
from functions.core.times import iso


class PreviewEvents(Protocol):
    def scan_records(self, segment: int, total_segments: int) -> Iterable[tuple[str, Record]]: ...


class PublishedBuilds(Protocol):
    def latest(self) -> LatestPointer | None: ...

    def manifest(self, build_id: str) -> Manifest: ...

    def read_members(self, key: str) -> Iterable[str]: ...


@dataclass(frozen=True)
class PreviewOverlap:
    """A previewed definition against one published segment."""

    segment_id: str
    published_size: int  # its members now: the part files less the visitors suppressed since
    shared: int
    jaccard: float

    def to_json(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "published_size": self.published_size,
            "shared": self.shared,
            "jaccard": self.jaccard,
        }


@dataclass(frozen=True)
class SegmentPreview:
    id: str
    name: str
    size: int
    overlaps: tuple[PreviewOverlap, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "size": self.size, "overlaps": [o.to_json() for o in self.overlaps]}


@dataclass(frozen=True)
class Preview:
    evaluated_at: str
    published_build_id: str | None  # the build the overlaps are against; None: none published
    visitors_scanned: int
    segments: tuple[SegmentPreview, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "evaluated_at": self.evaluated_at,
            "published_build_id": self.published_build_id,
            "visitors_scanned": self.visitors_scanned,
            "segments": [s.to_json() for s in self.segments],
        }

    def lines(self) -> Iterator[str]:
        against = f"published build {self.published_build_id}" if self.published_build_id else "no published build"
        yield f"Preview at {self.evaluated_at} over {self.visitors_scanned:,} visitors ({against}); nothing written."
        for segment in self.segments:
            yield f"  {segment.id:<40} {segment.size:>9,} visitors  ({segment.name})"
            for overlap in sorted(segment.overlaps, key=lambda o: (-o.shared, o.segment_id)):
                yield (
                    f"      shares {overlap.shared:>9,} with {overlap.segment_id:<36} "
                    f"(of {overlap.published_size:,}; Jaccard {overlap.jaccard:.3f})"
                )


@dataclass
class _ShardCounts:
    visitors: int
    sizes: list[int]
    shared: dict[tuple[int, int], int]


def published_members(
    bucket: PublishedBuilds, suppressed: frozenset[str]
) -> tuple[Manifest | None, dict[str, list[int]]]:
    """The latest build's manifest and, for each of its members, the indexes of its
    segments there; suppressed visitors are in none, as in builds."""
    latest = bucket.latest()
    if latest is None:
        return None, {}
    manifest = bucket.manifest(latest.build_id)
    members: dict[str, list[int]] = {}
    for index, segment in enumerate(manifest.segments):
        for key in segment.files:
            for visitor_id in bucket.read_members(key):
                if visitor_id not in suppressed:
                    members.setdefault(visitor_id, []).append(index)
    return manifest, members


def preview(
    definitions: Sequence[SegmentDefinition],
    *,
    events: PreviewEvents,
    bucket: PublishedBuilds,
    suppressed: frozenset[str],
    at: datetime,
    shards: int = 4,
    parallel: int = 4,
) -> Preview:
    """Each definition's size at `at` and its overlap with each published segment. Reads
    only: it scans the events table and reads the latest build's part files."""
    if shards < 1:
        raise ValueError("a preview needs at least one shard")
    moment = evaluation_moment(at)
    now_ms = int(moment.timestamp() * 1000)
    compiled = compile_segments(definitions)
    position = {d.id: index for index, d in enumerate(definitions)}
    manifest, published = published_members(bucket, suppressed)

    def shard(number: int) -> _ShardCounts:
        counts = _ShardCounts(0, [0] * len(definitions), {})
        shared = counts.shared
        for history in group_by_visitor(events.scan_records(number, shards)):
            counts.visitors += 1
            if history.visitor_id in suppressed:
                continue
            found = segments_of(VisitorView(history, now_ms), compiled)
            if not found:
                continue
            theirs = published.get(history.visitor_id, ())
            for segment_id in found:
                mine = position[segment_id]
                counts.sizes[mine] += 1
                for other in theirs:
                    shared[mine, other] = shared.get((mine, other), 0) + 1
        return counts

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, shards))) as pool:
        results = list(pool.map(shard, range(shards)))
    sizes = [sum(r.sizes[i] for r in results) for i in range(len(definitions))]
    shared: dict[tuple[int, int], int] = {}
    for result in results:
        for pair, count in result.shared.items():
            shared[pair] = shared.get(pair, 0) + count
    published_sizes = [0] * (len(manifest.segments) if manifest else 0)
    for indexes in published.values():
        for index in indexes:
            published_sizes[index] += 1
    segments = []
    for mine, definition in enumerate(definitions):
        overlaps = tuple(
            PreviewOverlap(
                segment.id,
                published_sizes[theirs],
                shared.get((mine, theirs), 0),
                jaccard(shared.get((mine, theirs), 0), sizes[mine], published_sizes[theirs]),
            )
            for theirs, segment in enumerate(manifest.segments if manifest else ())
        )
        segments.append(SegmentPreview(definition.id, definition.name, sizes[mine], overlaps))
    return Preview(
        evaluated_at=iso(moment),
        published_build_id=manifest.build_id if manifest else None,
        visitors_scanned=sum(r.visitors for r in results),
        segments=tuple(segments),
    )
