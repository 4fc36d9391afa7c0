"""Erasure: a visitor who opted out or asked to be forgotten leaves every copy.

In order, for a set of visitors: suppressed (so ingest, builds and lookups honour it at
once, and nothing replayed, built or imported later brings them back); membership
replaced by a tombstone (lookups answer no segments); every stored event, trait and ID
sync mapping deleted (the partners' side of a mapping too); removed from the lists of every kept build (part files, members, changes) and
from every partner's export files, a removal notice kept first for each partner whose
newest export held it (the partner's next delta tells it to remove the visitor); earlier
object versions under `builds/` and `exports/` purged (the bucket is versioned); one
audit record each under `audit/`; marked erased.

`GET /optout` does the first two steps in the request and leaves the rest to the next
build's plan stage (`erase_pending`); `dmp erase` does everything at once. Every step is
idempotent, so an erasure cut short is finished by running it again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from functions.core import layout
from functions.core.documents import ExportPointer
from functions.core.records import MappingRecord
from functions.core.times import DAY_SECONDS, iso

# How long a suppression outlives the retention: so every event stored before it has
# expired by the time the visitor's id may be forgotten.
SUPPRESSION_MARGIN_SECONDS = 30 * DAY_SECONDS


class Events(Protocol):
    def delete_visitors(self, visitor_ids: Iterable[str]) -> int: ...

    def mappings_of(self, visitor_id: str) -> list[MappingRecord]: ...


class PartnerIdMap(Protocol):
    """The partners' side of ID sync mappings (partner's id -> visitor)."""

    def forget(self, mappings: Iterable[tuple[str, str]], visitor_id: str) -> int: ...


class Memberships(Protocol):
    def suppress(self, visitor_ids: Iterable[str], expires_at: int) -> None: ...


class SuppressionRecords(Protocol):
    def suppress(self, visitor_ids: Iterable[str], *, reason: str, at_s: int, keep_seconds: int) -> None: ...

    def mark_erased(self, visitor_id: str, at_s: int) -> None: ...

    def add_export_notices(self, visitor_id: str, notices: Mapping[str, str]) -> None: ...

    def scan(self, *, pending_only: bool = False) -> Iterator[Any]: ...


class Builds(Protocol):
    def keys(self, prefix: str) -> Iterator[str]: ...

    def rewrite_lines(self, key: str, keep: Any, *, content_type: str) -> int: ...

    def iter_lines(self, key: str) -> Iterator[str]: ...

    def get_json_if_exists(self, key: str) -> Any | None: ...

    def purge_noncurrent_versions(self, prefix: str) -> int: ...

    def put_json(self, key: str, document: Any) -> None: ...


@dataclass(frozen=True)
class ErasureStores:
    events: Events
    membership: Memberships
    suppression: SuppressionRecords
    bucket: Builds
    # None only for a stack deployed before ID sync (no id map, so no partner's side).
    id_map: PartnerIdMap | None = None


@dataclass(frozen=True)
class AuditRecord:
    """`audit/...json`: what was done about one visitor, never the visitor's id itself."""

    time: str  # when the erasure was done
    requested_at: str  # when the visitor opted out, or the operator asked
    visitor_sha256: str
    by: str  # `optout` or `cli`
    action: str  # `erase`
    deleted: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "requested_at": self.requested_at,
            "visitor_sha256": self.visitor_sha256,
            "by": self.by,
            "action": self.action,
            "deleted": self.deleted,
        }


def visitor_hash(visitor_id: str) -> str:
    return hashlib.sha256(visitor_id.encode()).hexdigest()


def suppress(
    visitor_ids: Sequence[str],
    *,
    reason: str,
    at_s: int,
    retention_seconds: int,
    suppression: SuppressionRecords,
    membership: Memberships,
) -> None:
    """From this moment: nothing stored, built or served for these visitors."""
    keep = retention_seconds + SUPPRESSION_MARGIN_SECONDS
    suppression.suppress(visitor_ids, reason=reason, at_s=at_s, keep_seconds=keep)
    membership.suppress(visitor_ids, expires_at=at_s + keep)


def erase(
    visitor_ids: Sequence[str],
    *,
    by: str,
    reason: str,
    at: str,
    at_s: int,
    retention_seconds: int,
    stores: ErasureStores,
    requested_at: Mapping[str, str] | None = None,
) -> list[AuditRecord]:
    """Every step of an erasure for `visitor_ids`; returns the audit records written.

    `requested_at` gives, for visitors suppressed already (an opt-out), when they asked:
    their suppression stays as it was written. Others are suppressed now."""
    ids = list(dict.fromkeys(visitor_ids))
    if not ids:
        return []
    requested = dict(requested_at or {})
    new = [visitor_id for visitor_id in ids if visitor_id not in requested]
    if new:
        suppress(
            new,
            reason=reason,
            at_s=at_s,
            retention_seconds=retention_seconds,
            suppression=stores.suppression,
            membership=stores.membership,
        )
    # The partners' side of the visitors' mappings is found through ours: before it goes.
    mappings = {visitor_id: _forget_mappings(stores, visitor_id) for visitor_id in ids}
    events = {visitor_id: stores.events.delete_visitors([visitor_id]) for visitor_id in ids}
    # Notices first: once scrubbed, what a partner was sent is known nowhere else.
    for visitor_id, notices in removal_notices(stores.bucket, frozenset(ids)).items():
        stores.suppression.add_export_notices(visitor_id, notices)
    lines, files = scrub_builds(stores.bucket, frozenset(ids))
    versions = sum(stores.bucket.purge_noncurrent_versions(p) for p in (layout.BUILDS_PREFIX, layout.EXPORTS_PREFIX))
    records = []
    for visitor_id in ids:
        record = AuditRecord(
            time=at,
            requested_at=requested.get(visitor_id, at),
            visitor_sha256=visitor_hash(visitor_id),
            by=by,
            action="erase",
            deleted={
                "events_and_traits": events[visitor_id],
                "mappings": mappings[visitor_id],
                "membership": 1,
                "build_lines": lines.get(visitor_id, 0),
                "build_files_rewritten": files,
                "object_versions_purged": versions,
            },
        )
        stores.bucket.put_json(layout.audit_key(at, record.visitor_sha256), record.to_json())
        stores.suppression.mark_erased(visitor_id, at_s)
        records.append(record)
    return records


def _forget_mappings(stores: ErasureStores, visitor_id: str) -> int:
    """Delete the partners' side of the visitor's ID sync mappings (where a later sync has
    not given the partner's id to another visitor); ours goes with the visitor's other
    items. Returns how many mappings the visitor had."""
    mappings = [(m.partner, m.partner_uid) for m in stores.events.mappings_of(visitor_id)]
    if mappings and stores.id_map is not None:
        stores.id_map.forget(mappings, visitor_id)
    return len(mappings)


def erase_pending(*, at: str, at_s: int, retention_seconds: int, stores: ErasureStores) -> list[AuditRecord]:
    """Finish the erasures that opt-outs left to a build: at most once per visitor."""
    requested = {
        s.visitor_id: iso(datetime.fromtimestamp(s.suppressed_at, UTC))
        for s in stores.suppression.scan(pending_only=True)
    }
    return erase(
        list(requested),
        by="optout",
        reason="optout",
        at=at,
        at_s=at_s,
        retention_seconds=retention_seconds,
        stores=stores,
        requested_at=requested,
    )


def scrub_builds(bucket: Builds, visitor_ids: frozenset[str]) -> tuple[dict[str, int], int]:
    """Remove the visitors from every object of every kept build that lists visitors, and
    from every partner's export files. Returns (lines removed per visitor, files rewritten)."""
    removed: dict[str, int] = {}
    rewritten = 0

    def keep(line: str) -> bool:
        visitor_id = _visitor_of(line)
        if visitor_id in visitor_ids:
            removed[visitor_id] = removed.get(visitor_id, 0) + 1
            return False
        return True

    for key in (k for prefix in (layout.BUILDS_PREFIX, layout.EXPORTS_PREFIX) for k in bucket.keys(prefix)):
        if layout.lists_visitors(key):
            content_type = "text/csv" if key.endswith(".csv.gz") else "application/x-ndjson"
            if bucket.rewrite_lines(key, keep, content_type=content_type):
                rewritten += 1
    return removed, rewritten


def _visitor_of(line: str) -> str:
    """The visitor a line of a build's list names: a part file's line is the id, a
    members or changes line a JSON array that starts with it, an export's line a CSV row
    that does (no field of an export can hold a comma: see functions/builder/export.py)."""
    if line.startswith("["):
        return str(json.loads(line)[0])
    return line.split(",", 1)[0]


@dataclass(frozen=True)
class RemovalNotice:
    """What a partner's newest export held of an erased visitor, kept on its suppression
    item as `<partner_uid>\t<segment|segment>` until the partner's next delta says
    `removed` (the partner uid empty when it never synced)."""

    partner_uid: str
    segment_ids: tuple[str, ...]

    def to_text(self) -> str:
        return f"{self.partner_uid}\t{'|'.join(self.segment_ids)}"

    @classmethod
    def parse(cls, text: str) -> RemovalNotice:
        partner_uid, _, segments = text.partition("\t")
        return cls(partner_uid, tuple(s for s in segments.split("|") if s))


def removal_notices(bucket: Builds, visitor_ids: frozenset[str]) -> dict[str, dict[str, str]]:
    """{visitor: {partner: notice}} for the visitors each partner's newest export (its
    `latest.json`) names: the segments its full file gives them, and those its delta
    removed (a partner that had not fetched that delta yet must still hear of them)."""
    found: dict[str, dict[str, tuple[str, set[str]]]] = {}
    for key in bucket.keys(layout.EXPORTS_PREFIX):
        partner = layout.partner_of_export_latest(key)
        document = bucket.get_json_if_exists(key) if partner is not None else None
        if partner is None or document is None:
            continue
        pointer = ExportPointer.from_json(document)
        for file, column in ((pointer.full.key, 2), (pointer.delta.key, 3)):
            lines = bucket.iter_lines(file)
            next(lines, None)  # the header
            for line in lines:
                fields = line.split(",")
                if fields[0] not in visitor_ids:
                    continue
                partner_uid, segments = found.setdefault(fields[0], {}).get(partner, ("", set()))
                segments.update(s for s in fields[column].split("|") if s)
                found[fields[0]][partner] = (partner_uid or fields[1], segments)
    return {
        visitor_id: {
            partner: RemovalNotice(partner_uid, tuple(sorted(segments))).to_text()
            for partner, (partner_uid, segments) in by_partner.items()
            if segments
        }
        for visitor_id, by_partner in found.items()
    }
