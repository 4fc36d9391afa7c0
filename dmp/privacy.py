"""`dmp erase`, `dmp audit` and `dmp visitor show`: a data subject's rights, operated on a
local or deployed stack."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from dmp.local import StackTarget
from functions.core import erasure, layout
from functions.core.identity import VISITOR_ID_CHARS, is_visitor_id
from functions.core.records import EventRecord, MappingRecord
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.events import EventStore
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.membership import MembershipStore
from functions.core.storage.suppression import SuppressionStore
from functions.core.times import iso


class PrivacyError(ValueError):
    """The request cannot be carried out as asked (nothing was changed)."""


def _stores(target: StackTarget) -> erasure.ErasureStores:
    if not target.suppression_table:
        raise PrivacyError("this stack has no suppression table: deploy the current version first")
    return erasure.ErasureStores(
        events=EventStore(target.events_table),
        membership=MembershipStore(target.membership_table),
        suppression=SuppressionStore(target.suppression_table),
        bucket=SegmentsBucket(target.bucket),
        id_map=IdMapStore(target.id_map_table) if target.id_map_table else None,
    )


def _check(visitor_ids: Sequence[str]) -> None:
    bad = [v for v in visitor_ids if not is_visitor_id(v)]
    if bad:
        raise PrivacyError(f"not visitor ids ({VISITOR_ID_CHARS}): {', '.join(bad)}")


def erase(visitor_ids: Sequence[str], target: StackTarget, *, now: datetime | None = None) -> list[erasure.AuditRecord]:
    """Every step of an erasure, now, by the operator (audit `by: cli`)."""
    _check(visitor_ids)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    return erasure.erase(
        visitor_ids,
        by="cli",
        reason="erase",
        at=iso(moment),
        at_s=int(moment.timestamp()),
        retention_seconds=target.retention_seconds,
        stores=_stores(target),
    )


def audit_records(target: StackTarget, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The audit records, oldest first; with `since`, those at or after it."""
    bucket = SegmentsBucket(target.bucket)
    floor = iso(since) if since is not None else ""
    for key in sorted(bucket.keys(layout.AUDIT_PREFIX)):
        record = bucket.get_json(key)
        if record.get("time", "") >= floor:
            yield record


def visitor_report(visitor_id: str, target: StackTarget) -> dict[str, Any]:
    """Everything held about a visitor, as JSON-ready values."""
    _check([visitor_id])
    events: list[dict[str, Any]] = []
    traits: list[dict[str, Any]] = []
    mappings: list[dict[str, Any]] = []
    for record in EventStore(target.events_table).records_of(visitor_id):
        time = iso(datetime.fromtimestamp(record.ts_ms / 1000, UTC))
        if isinstance(record, MappingRecord):
            # The partner's own id for the visitor, from ID sync.
            mappings.append({"partner": record.partner, "partner_uid": record.partner_uid, "synced_at": time})
            continue
        document = {k: v for k, v in asdict(record).items() if not k.startswith("_")}
        document["time"] = time
        (events if isinstance(record, EventRecord) else traits).append(document)
    suppression = SuppressionStore(target.suppression_table).get(visitor_id) if target.suppression_table else None
    return {
        "visitor_id": visitor_id,
        "events": sorted(events, key=lambda e: e["ts_ms"]),
        "traits": traits,
        "mappings": sorted(mappings, key=lambda m: m["partner"]),
        "membership": MembershipStore(target.membership_table).describe(visitor_id),
        "suppression": asdict(suppression) if suppression is not None else None,
    }


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
