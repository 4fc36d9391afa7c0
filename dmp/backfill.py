"""`dmp ingest` and `dmp replay`: bulk writes of a stack's events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dmp.local import StackTarget
from functions.core.hits import (
    DEVICE_TYPES,
    Geo,
    InvalidEvent,
    TrackedEvent,
    clean_geo_value,
    to_epoch_ms,
    validate_event,
)
from functions.core.identity import VISITOR_ID_CHARS, is_visitor_id
from functions.core.storage.events import EventStore
from functions.core.storage.fallback import FallbackQueue
from functions.core.storage.suppression import SuppressionStore
from functions.core.times import DAY_SECONDS
from functions.replay.logic import replay_message

BATCH = 500


@dataclass
class IngestReport:
    stored: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def parse_line(text: str, now_ms: int, retention_seconds: int) -> TrackedEvent:
    """One backfill line, validated as the pixel validates a hit; raises InvalidEvent."""
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidEvent("malformed_json", "not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidEvent("invalid_line", "a line must be a JSON object")
    unknown = set(document) - {"uid", "ts", "e", "url", "ref", "eid", "props", "geo", "device"}
    if unknown:
        raise InvalidEvent("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    if "ts" not in document:
        raise InvalidEvent("missing_ts", "ts is required")
    ts_ms = to_epoch_ms(document["ts"])
    if ts_ms > now_ms + 60_000:
        raise InvalidEvent("future_ts", "ts lies in the future")
    if ts_ms // 1000 + retention_seconds <= now_ms // 1000:
        raise InvalidEvent("expired", "ts is older than the retention period")
    geo = document.get("geo") or {}
    if not isinstance(geo, dict):
        raise InvalidEvent("invalid_geo", "geo must be an object of country, region, city")
    device = document.get("device")
    if device is not None and device not in DEVICE_TYPES:
        raise InvalidEvent("invalid_device", f"device must be {', '.join(DEVICE_TYPES[:-1])} or {DEVICE_TYPES[-1]}")
    uid = document.get("uid")
    if not is_visitor_id(uid):
        raise InvalidEvent("invalid_uid", f"uid must match {VISITOR_ID_CHARS}")
    return validate_event(
        visitor_id=str(uid),
        ts_ms=ts_ms,
        name=document.get("e"),
        url=document.get("url"),
        ref=document.get("ref"),
        eid=document.get("eid"),
        props=document.get("props"),
        geo=Geo(
            *(
                clean_geo_value(geo.get(k)) if isinstance(geo.get(k), str) else None
                for k in ("country", "region", "city")
            )
        ),
        device=device,
    )


def ingest_lines(
    lines: Iterable[str], store: EventStore, retention_days: int, now_ms: int | None = None
) -> IngestReport:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    retention_seconds = retention_days * DAY_SECONDS
    report = IngestReport()
    batch: list[TrackedEvent] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            batch.append(parse_line(text, now_ms, retention_seconds))
        except InvalidEvent as error:
            report.problems.append((number, str(error)))
            continue
        if len(batch) >= BATCH:
            report.stored += _write(store, batch, retention_seconds)
            batch = []
    if batch:
        report.stored += _write(store, batch, retention_seconds)
    return report


def _write(store: EventStore, batch: list[TrackedEvent], retention_seconds: int) -> int:
    written, unwritten = store.put_many(batch, retention_seconds)
    if unwritten:
        raise RuntimeError(
            f"DynamoDB did not take {len(unwritten)} event(s) after retries; {written} of this batch were stored. "
            "Run the ingest again: lines with an eid are stored once."
        )
    return written


def ingest_file(path: Path, target: StackTarget, retention_days: int | None = None) -> IngestReport:
    with path.open(encoding="utf-8", errors="replace") as lines:
        return ingest_lines(lines, EventStore(target.events_table), retention_days or target.retention_days)


def replay_deferred(target: StackTarget) -> tuple[int, int, int]:
    """Drain the fallback queue: (hits written, hits already stored, messages). Hits of
    visitors suppressed since they were deferred are dropped."""
    queue = FallbackQueue(target.fallback_queue_url)
    store = EventStore(target.events_table)
    suppression = SuppressionStore(target.suppression_table) if target.suppression_table else None
    written = duplicates = handled = 0
    while messages := queue.receive():
        for message in messages:
            replayed = replay_message(message["Body"], store, suppression)
            queue.delete(message["ReceiptHandle"])  # only once its items are written
            written, duplicates, handled = written + replayed.written, duplicates + replayed.duplicates, handled + 1
    return written, duplicates, handled
