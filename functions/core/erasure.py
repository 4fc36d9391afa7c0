"""Erasure: a visitor who opted out or asked to be forgotten leaves every copy.

In order, for a set of visitors: suppressed (so ingest, builds and lookups honour it at
once, and nothing replayed, built or imported later brings them back); membership
replaced by a tombstone (lookups answer no segments); every stored event and trait
deleted; removed from the lists of every kept build (part files, members, changes);
earlier object versions under `builds/` purged (the bucket is versioned); one audit record
each under `audit/`; marked erased.

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
from functions.core.times import DAY_SECONDS, iso

# How long a suppression outlives the retention: so every event stored before it has
# expired by the time the visitor's id may be forgotten.
SUPPRESSION_MARGIN_SECONDS = 30 * DAY_SECONDS


class Events(Protocol):
    def delete_visitors(self, visitor_ids: Iterable[str]) -> int: ...


class Memberships(Protocol):
    def suppress(self, visitor_ids: Iterable[str], expires_at: int) -> None: ...


class SuppressionRecords(Protocol):
    def suppress(self, visitor_ids: Iterable[str], *, reason: str, at_s: int, keep_seconds: int) -> None: ...

    def mark_erased(self, visitor_id: str, at_s: int) -> None: ...

    def scan(self, *, pending_only: bool = False) -> Iterator[Any]: ...


class Builds(Protocol):
    def keys(self, prefix: str) -> Iterator[str]: ...

    def rewrite_lines(self, key: str, keep: Any, *, content_type: str) -> int: ...

    def purge_noncurrent_versions(self, prefix: str) -> int: ...

    def put_json(self, key: str, document: Any) -> None: ...


@dataclass(frozen=True)
class ErasureStores:
    events: Events
    membership: Memberships
    suppression: SuppressionRecords
    bucket: Builds


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
    events = {visitor_id: stores.events.delete_visitors([visitor_id]) for visitor_id in ids}
    lines, files = scrub_builds(stores.bucket, frozenset(ids))
    versions = stores.bucket.purge_noncurrent_versions(layout.BUILDS_PREFIX)
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
    """Remove the visitors from every object of every kept build that lists visitors.
    Returns (lines removed per visitor, files rewritten)."""
    removed: dict[str, int] = {}
    rewritten = 0

    def keep(line: str) -> bool:
        visitor_id = _visitor_of(line)
        if visitor_id in visitor_ids:
            removed[visitor_id] = removed.get(visitor_id, 0) + 1
            return False
        return True

    for key in bucket.keys(layout.BUILDS_PREFIX):
        if layout.lists_visitors(key):
            content_type = "text/csv" if key.endswith(".csv.gz") else "application/x-ndjson"
            if bucket.rewrite_lines(key, keep, content_type=content_type):
                rewritten += 1
    return removed, rewritten


def _visitor_of(line: str) -> str:
    """The visitor a line of a build's list names: a part file's line is the id, a
    members or changes line a JSON array that starts with it."""
    if line.startswith("["):
        return str(json.loads(line)[0])
    return line
