"""The published build as the lookup API serves it: which segments exist, their names,
sizes and destinations. Kept in the warm Lambda and checked at most every
`refresh_seconds`.

Each check is one GetItem of the catalog table's item, which every publish writes after
`latest.json` (a copy of it and of its manifest): the lookup already has a DynamoDB
client, and creating an S3 client would cost a cold start ~45-90 ms. S3 is read only
when the item cannot answer: an item too large for DynamoDB holds just the manifest's
key, and a stack whose builds predate the table has no item, so `latest.json` is
followed as before. Only those paths create the S3 client."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from functions.core.documents import LatestPointer, Manifest
    from functions.core.storage.catalog import StoredCatalog


class CatalogItem(Protocol):
    """The catalog table (CatalogStore)."""

    def get(self) -> StoredCatalog | None: ...


class PublishedBuilds(Protocol):
    """The segments bucket's published builds (SegmentsBucket)."""

    def manifest_at(self, key: str) -> Manifest: ...

    def latest_if_changed(self, etag: str | None) -> tuple[bool, str | None, LatestPointer | None]: ...


@dataclass(frozen=True)
class CatalogSegment:
    id: str
    name: str
    description: str
    size: int
    destinations: frozenset[str]


@dataclass(frozen=True)
class Catalog:
    build_id: str | None = None
    evaluated_at: str | None = None
    segments: dict[str, CatalogSegment] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Catalog:
        return cls(
            build_id=manifest.build_id,
            evaluated_at=manifest.evaluated_at,
            segments={
                s.id: CatalogSegment(
                    id=s.id,
                    name=s.name,
                    description=s.description,
                    size=s.size,
                    destinations=frozenset(s.destinations),
                )
                for s in manifest.segments
            },
        )

    def visible(self, partner: str, segment_ids: list[str] | None = None) -> list[CatalogSegment]:
        """The segments `partner` may see (of `segment_ids`, or all), in a stable order."""
        ids = self.segments.keys() if segment_ids is None else segment_ids
        found = [self.segments[i] for i in ids if i in self.segments]
        return sorted((s for s in found if partner in s.destinations), key=lambda s: s.id)


class CatalogCache:
    """The catalog, checked at most every `refresh_seconds`: one GetItem of the catalog
    item, which is all it takes while the build is unchanged or the item holds the new
    build's segments. A pointer-only item adds the manifest from S3; without an item,
    `latest.json` is followed: one conditional request while it is unchanged, two
    (pointer and manifest) when it moved."""

    def __init__(
        self,
        store: CatalogItem,
        bucket: PublishedBuilds,
        refresh_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._refresh = refresh_seconds
        self._clock = clock
        self._catalog = Catalog()
        self._etag: str | None = None  # of the `latest.json` the catalog came from, if it did
        self._checked_at: float | None = None

    def get(self) -> Catalog:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._refresh:
            return self._catalog
        self._checked_at = now
        stored = self._store.get()
        if stored is None:
            self._follow_latest_json()
        elif stored.build_id != self._catalog.build_id:
            manifest = stored.manifest()
            if manifest is None:
                manifest = self._bucket.manifest_at(stored.manifest_key)
            self._catalog = Catalog.from_manifest(manifest)
            # Not from latest.json: were the item to go, it is read afresh, not compared.
            self._etag = None
        return self._catalog

    def _follow_latest_json(self) -> None:
        changed, etag, latest = self._bucket.latest_if_changed(self._etag)
        if changed:
            self._catalog = Catalog.from_manifest(self._bucket.manifest_at(latest.manifest)) if latest else Catalog()
            self._etag = etag
