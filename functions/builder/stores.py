"""What the build stages need of storage, as Protocols: the storage adapters
(`functions/core/storage/`) satisfy them in AWS and locally, and tests pass in-memory
fakes or wrappers that fail on demand."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from functions.core.documents import LatestPointer, Manifest, MembershipState
from functions.core.erasure import ErasureStores
from functions.core.records import Record
from functions.core.storage.bucket import LinesWriter
from functions.core.storage.membership import MembershipChange, StoredMembership


class EventSource(Protocol):
    def scan_records(self, segment: int, total_segments: int) -> Iterable[tuple[str, Record]]: ...

    def delete_visitors(self, visitor_ids: Iterable[str]) -> int: ...


class MembershipTable(Protocol):
    def scan(self) -> Iterable[tuple[str, StoredMembership]]: ...

    def apply(self, changes: Mapping[str, MembershipChange], build_id: str) -> int: ...

    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]: ...


class DueIndex(Protocol):
    def put_due(self, due_ms: Mapping[str, int], *, now_ms: int | None = None) -> int: ...


class CatalogTable(Protocol):
    def put(self, manifest: Manifest) -> bool: ...


class SuppressionList(Protocol):
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]: ...

    def visitor_ids(self) -> frozenset[str]: ...

    def export_notices(self) -> dict[str, dict[str, str]]: ...

    def clear_export_notice(self, visitor_id: str, partner: str, notice: str) -> bool: ...


class BuildBucket(Protocol):
    def definition_files(self) -> dict[str, str]: ...

    def source_files(self) -> dict[str, str]: ...

    def get_json(self, key: str) -> Any: ...

    def get_json_if_exists(self, key: str) -> Any | None: ...

    def put_json(self, key: str, document: Any) -> None: ...

    def put_text(self, key: str, text: str, *, content_type: str) -> None: ...

    def upload_lines(self, key: str, writer: LinesWriter, *, content_type: str) -> None: ...

    def iter_lines(self, key: str) -> Iterator[str]: ...

    def keys(self, prefix: str) -> Iterator[str]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def build_ids(self) -> list[str]: ...

    def delete_build(self, build_id: str) -> int: ...

    def manifest(self, build_id: str) -> Manifest: ...

    def put_manifest(self, manifest: Manifest) -> None: ...

    def latest(self) -> LatestPointer | None: ...

    def put_latest(self, build_id: str) -> LatestPointer: ...

    def membership_state(self) -> MembershipState | None: ...

    def put_membership_state(self, state: MembershipState) -> None: ...


@dataclass(frozen=True)
class BuildStores:
    events: EventSource
    membership: MembershipTable
    bucket: BuildBucket
    # None only for a stack deployed before the catalog table existed: its lookup finds
    # no catalog item and reads `latest.json` instead.
    catalog: CatalogTable | None = None
    # None only for a stack deployed before the suppression list existed.
    suppression: SuppressionList | None = None
    # The same stores as erasure uses them: a build's plan stage finishes the erasures
    # opt-outs left pending.
    erasure: ErasureStores | None = None
    # None only for a stack deployed before real-time membership: no schedule is filed.
    due: DueIndex | None = None

    def suppressed_visitors(self) -> frozenset[str]:
        return self.suppression.visitor_ids() if self.suppression is not None else frozenset()

    def without_suppressed(self, changes: dict[str, MembershipChange]) -> dict[str, MembershipChange]:
        """`changes` less the suppressed visitors: their tombstones stay as they are."""
        if self.suppression is None or not changes:
            return changes
        suppressed = self.suppression.suppressed(changes)
        return {v: m for v, m in changes.items() if v not in suppressed} if suppressed else changes

    @classmethod
    def connect(
        cls,
        *,
        events_table: str,
        membership_table: str,
        bucket: str,
        catalog_table: str = "",
        suppression_table: str = "",
        id_map_table: str = "",
        due_table: str = "",
    ) -> BuildStores:
        """The storage adapters of a stack's resources (no catalog, suppression or id map
        table: a stack deployed before it existed)."""
        from functions.core.storage.bucket import SegmentsBucket
        from functions.core.storage.catalog import CatalogStore
        from functions.core.storage.due import DueStore
        from functions.core.storage.events import EventStore
        from functions.core.storage.id_map import IdMapStore
        from functions.core.storage.membership import MembershipStore
        from functions.core.storage.suppression import SuppressionStore

        events, membership, segments = (
            EventStore(events_table),
            MembershipStore(membership_table),
            SegmentsBucket(bucket),
        )
        suppression = SuppressionStore(suppression_table) if suppression_table else None
        id_map = IdMapStore(id_map_table, same_client_as=events) if id_map_table else None
        erasure = ErasureStores(events, membership, suppression, segments, id_map) if suppression is not None else None
        return cls(
            events=events,
            membership=membership,
            bucket=segments,
            catalog=CatalogStore(catalog_table) if catalog_table else None,
            suppression=suppression,
            erasure=erasure,
            due=DueStore(due_table, same_client_as=membership) if due_table else None,
        )
