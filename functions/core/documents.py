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
