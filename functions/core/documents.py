"""The documents a build publishes, as the builder writes them and every reader (the
lookup's catalog, the CLI, the demo) reads them: one type each, not dicts picked apart by
key strings.

Frozen dataclasses rather than pydantic models: the lookup reads them, and its cold start
must not import pydantic. `from_json` refuses a document without its required fields with
a `DocumentError` that names the document and the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class DocumentError(ValueError):
    """A stored document is not what its type says."""


def _field(document: Mapping[str, Any], name: str, kind: str) -> Any:
    try:
        return document[name]
    except (KeyError, TypeError):
        raise DocumentError(f"{kind}: no {name!r}") from None


@dataclass(frozen=True)
class ManifestSegment:
    """One segment of a build: its definition's names, its audience, its part files."""

    id: str
    name: str
    description: str
    destinations: tuple[str, ...]
    size: int
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "destinations": list(self.destinations),
            "size": self.size,
            "files": list(self.files),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ManifestSegment:
        segment_id = str(_field(document, "id", "manifest segment"))
        return cls(
            id=segment_id,
            name=str(document.get("name", segment_id)),
            description=str(document.get("description", "")),
            destinations=tuple(document.get("destinations", ())),
            size=int(_field(document, "size", f"manifest segment {segment_id}")),
            files=tuple(document.get("files", ())),
        )


@dataclass(frozen=True)
class Manifest:
    """`builds/<build_id>/manifest.json`: what a build holds."""

    build_id: str
    evaluated_at: str  # ISO 8601, UTC
    segments: tuple[ManifestSegment, ...]
    shards: int = 0
    visitors_scanned: int = 0

    def segment(self, segment_id: str) -> ManifestSegment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "evaluated_at": self.evaluated_at,
            "shards": self.shards,
            "segments": [segment.to_json() for segment in self.segments],
            "visitors_scanned": self.visitors_scanned,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Manifest:
        return cls(
            build_id=str(_field(document, "build_id", "manifest")),
            evaluated_at=str(_field(document, "evaluated_at", "manifest")),
            segments=tuple(ManifestSegment.from_json(s) for s in _field(document, "segments", "manifest")),
            shards=int(document.get("shards", 0)),
            visitors_scanned=int(document.get("visitors_scanned", 0)),
        )


@dataclass(frozen=True)
class LatestPointer:
    """`latest.json`: the newest complete build, written last of a publish."""

    build_id: str
    manifest: str  # the manifest's key

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "manifest": self.manifest}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> LatestPointer:
        return cls(
            build_id=str(_field(document, "build_id", "latest.json")),
            manifest=str(_field(document, "manifest", "latest.json")),
        )


@dataclass(frozen=True)
class MembershipState:
    """`membership-state.json`: which build the membership table holds, and whether an
    update of it is under way (a crash mid-update leaves `complete` false)."""

    build_id: str
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "complete": self.complete}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MembershipState:
        return cls(
            build_id=str(_field(document, "build_id", "membership state")),
            complete=bool(_field(document, "complete", "membership state")),
        )


@dataclass(frozen=True)
class ExportFileRef:
    """One file of a partner's export: its key and its data rows (the header not counted)."""

    key: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "rows": self.rows}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ExportFileRef:
        return cls(key=str(_field(document, "key", "export file")), rows=int(_field(document, "rows", "export file")))


@dataclass(frozen=True)
class ExportPointer:
    """`exports/<partner>/latest.json`: the partner's newest export, written last of it,
    exactly `{"build_id", "previous_build_id" (null for the first), "full": {"key", "rows"},
    "delta": {"key", "rows"}}`; `GET /v1/exports/latest` serves it with pre-signed URLs."""

    build_id: str
    previous_build_id: str | None
    full: ExportFileRef
    delta: ExportFileRef

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "previous_build_id": self.previous_build_id,
            "full": self.full.to_json(),
            "delta": self.delta.to_json(),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ExportPointer:
        previous = _field(document, "previous_build_id", "export latest.json")
        return cls(
            build_id=str(_field(document, "build_id", "export latest.json")),
            previous_build_id=None if previous is None else str(previous),
            full=ExportFileRef.from_json(_field(document, "full", "export latest.json")),
            delta=ExportFileRef.from_json(_field(document, "delta", "export latest.json")),
        )


@dataclass(frozen=True)
class ReportSegment:
    """One segment of a build's report: its audience, how it moved since the previous
    published build (None when there is none to compare with), and its members' latest
    device type and latest country (`unknown` when the visitor has none)."""

    id: str
    name: str
    description: str
    destinations: tuple[str, ...]
    size: int
    added: int | None
    removed: int | None
    devices: Mapping[str, int]
    countries: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "destinations": list(self.destinations),
            "size": self.size,
            "added": self.added,
            "removed": self.removed,
            "devices": dict(sorted(self.devices.items())),
            "countries": dict(sorted(self.countries.items())),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ReportSegment:
        segment_id = str(_field(document, "id", "report segment"))
        added, removed = document.get("added"), document.get("removed")
        return cls(
            id=segment_id,
            name=str(document.get("name", segment_id)),
            description=str(document.get("description", "")),
            destinations=tuple(document.get("destinations", ())),
            size=int(_field(document, "size", f"report segment {segment_id}")),
            added=None if added is None else int(added),
            removed=None if removed is None else int(removed),
            devices={str(k): int(v) for k, v in document.get("devices", {}).items()},
            countries={str(k): int(v) for k, v in document.get("countries", {}).items()},
        )


@dataclass(frozen=True)
class SegmentOverlap:
    """Two segments' shared visitors, and their Jaccard index (shared / in either)."""

    a: str
    b: str
    shared: int
    jaccard: float

    def to_json(self) -> list[Any]:
        return [self.a, self.b, self.shared, self.jaccard]

    @classmethod
    def from_json(cls, document: Any) -> SegmentOverlap:
        a, b, shared, jaccard = document
        return cls(str(a), str(b), int(shared), float(jaccard))


@dataclass(frozen=True)
class DestinationReach:
    """A destination partner's reach: the distinct visitors in any segment it may see."""

    partner: str
    segments: tuple[str, ...]
    reach: int

    def to_json(self) -> dict[str, Any]:
        return {"partner": self.partner, "segments": list(self.segments), "reach": self.reach}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DestinationReach:
        return cls(
            partner=str(_field(document, "partner", "report destination")),
            segments=tuple(document.get("segments", ())),
            reach=int(_field(document, "reach", "report destination")),
        )


@dataclass(frozen=True)
class TrendPoint:
    """Every segment's size in one kept build."""

    build_id: str
    evaluated_at: str
    sizes: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "evaluated_at": self.evaluated_at, "sizes": dict(self.sizes)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> TrendPoint:
        return cls(
            build_id=str(_field(document, "build_id", "report trend")),
            evaluated_at=str(document.get("evaluated_at", "")),
            sizes={str(k): int(v) for k, v in _field(document, "sizes", "report trend").items()},
        )


@dataclass(frozen=True)
class BuildReport:
    """`builds/<build_id>/report.json`: what a marketer reads of a build (the page,
    `report.html`, is drawn from it). `overlaps` holds every pair of segments, in the
    manifest's order (`a` before `b`); `trend` the sizes of the kept builds that have a
    report, oldest first, this one last. `complete` is false when a shard ran a version
    without reports: overlaps, reach and mixes then leave its visitors out."""

    build_id: str
    evaluated_at: str
    previous_build_id: str | None
    visitors_scanned: int
    segments: tuple[ReportSegment, ...]
    overlaps: tuple[SegmentOverlap, ...]
    destinations: tuple[DestinationReach, ...]
    trend: tuple[TrendPoint, ...]
    complete: bool = True

    def segment(self, segment_id: str) -> ReportSegment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "evaluated_at": self.evaluated_at,
            "previous_build_id": self.previous_build_id,
            "visitors_scanned": self.visitors_scanned,
            "complete": self.complete,
            "segments": [s.to_json() for s in self.segments],
            "overlaps": [o.to_json() for o in self.overlaps],
            "destinations": [d.to_json() for d in self.destinations],
            "trend": [t.to_json() for t in self.trend],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> BuildReport:
        previous = document.get("previous_build_id")
        return cls(
            build_id=str(_field(document, "build_id", "report")),
            evaluated_at=str(_field(document, "evaluated_at", "report")),
            previous_build_id=None if previous is None else str(previous),
            visitors_scanned=int(document.get("visitors_scanned", 0)),
            segments=tuple(ReportSegment.from_json(s) for s in _field(document, "segments", "report")),
            overlaps=tuple(SegmentOverlap.from_json(o) for o in document.get("overlaps", ())),
            destinations=tuple(DestinationReach.from_json(d) for d in document.get("destinations", ())),
            trend=tuple(TrendPoint.from_json(t) for t in document.get("trend", ())),
            complete=bool(document.get("complete", True)),
        )
