"""In-memory stores for the build stages: what `functions/builder/stores.py` asks of
storage, held in dicts, so the stages' logic is tested without an emulator."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from functions.core import layout
from functions.core.documents import Manifest
from functions.core.records import Record
from functions.core.storage.bucket import BuildDocuments, LinesWriter
from functions.core.storage.membership import Membership, MembershipChange, Schedule, StoredMembership


class MemoryEvents:
    """An events table: (visitor_id, record) pairs, a visitor's records together."""

    def __init__(self, records: Iterable[tuple[str, Record]] = ()) -> None:
        self.records = sorted(records, key=lambda pair: pair[0])

    def delete_visitors(self, visitor_ids: Iterable[str]) -> int:
        doomed = set(visitor_ids)
        before = len(self.records)
        self.records = [pair for pair in self.records if pair[0] not in doomed]
        return before - len(self.records)

    def scan_records(self, segment: int = 0, total_segments: int = 1) -> Iterator[tuple[str, Record]]:
        # A visitor belongs to one segment, as a partition key does in a parallel scan.
        return (pair for pair in self.records if zlib.crc32(pair[0].encode()) % total_segments == segment)


class MemoryMembership:
    """The membership table; a tombstoned visitor's item is never written over."""

    def __init__(self) -> None:
        self.stored: dict[str, StoredMembership] = {}
        self.tombstones: set[str] = set()
        self.writes = 0

    @property
    def items(self) -> dict[str, Membership]:
        """The visitors in a segment as of the last build written."""
        return {v: stored.current for v, stored in self.stored.items() if stored.current is not None}

    def scan(self) -> Iterator[tuple[str, StoredMembership]]:
        return iter(list(self.stored.items()))

    def apply(self, changes: Mapping[str, MembershipChange], build_id: str) -> int:
        for visitor_id, change in changes.items():
            if visitor_id in self.tombstones:
                continue
            self.writes += 1
            current = change.current if change.current is not None and change.current.segments else None
            self.stored[visitor_id] = StoredMembership(current, build_id, change.previous, change.schedule)
        return len(changes)

    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]:
        return {v: self.stored[v] for v in visitor_ids if v in self.stored}

    def put_evaluated(
        self, visitor_id: str, membership: Membership, *, schedule: Schedule | None, published: str
    ) -> bool:
        """The evaluator's conditional write (see MembershipStore.put_evaluated)."""
        stored = self.stored.get(visitor_id)
        if visitor_id in self.tombstones or (stored and stored.build_id and stored.build_id > published):
            return False
        self.writes += 1
        if not membership.segments and (schedule is None or not schedule.next_segments):
            self.stored.pop(visitor_id, None)
        else:
            current = membership if membership.segments else None
            self.stored[visitor_id] = StoredMembership(current, published, None, schedule)
        return True

    def suppress(self, visitor_ids: Iterable[str], expires_at: int) -> None:
        for visitor_id in visitor_ids:
            self.stored.pop(visitor_id, None)
            self.tombstones.add(visitor_id)


class MemoryDue:
    """The due index, as the evaluator files visitors in it."""

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}

    def put_due(self, due_ms: Mapping[str, int], *, now_ms: int | None = None) -> int:
        self.entries.update(due_ms)
        return 1


class MemorySuppression:
    def __init__(self, visitor_ids: Iterable[str] = ()) -> None:
        self.ids = set(visitor_ids)
        # Removal notices: {visitor_id: {partner: "<partner_uid>\t<segment|segment>"}}.
        self.notices: dict[str, dict[str, str]] = {}

    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]:
        return self.ids.intersection(visitor_ids)

    def visitor_ids(self) -> frozenset[str]:
        return frozenset(self.ids)

    def add_export_notices(self, visitor_id: str, notices: Mapping[str, str]) -> None:
        assert visitor_id in self.ids, "erasure suppresses before it keeps notices"
        self.notices.setdefault(visitor_id, {}).update(notices)

    def export_notices(self) -> dict[str, dict[str, str]]:
        by_partner: dict[str, dict[str, str]] = {}
        for visitor_id, notices in self.notices.items():
            for partner, notice in notices.items():
                by_partner.setdefault(partner, {})[visitor_id] = notice
        return by_partner

    def clear_export_notice(self, visitor_id: str, partner: str, notice: str) -> bool:
        if self.notices.get(visitor_id, {}).get(partner) != notice:
            return False
        del self.notices[visitor_id][partner]
        return True


class MemoryCatalog:
    def __init__(self) -> None:
        self.manifest: Manifest | None = None

    def put(self, manifest: Manifest) -> bool:
        if self.manifest is not None and self.manifest.build_id > manifest.build_id:
            return False
        self.manifest = manifest
        return True


class MemoryBucket(BuildDocuments):
    """The segments bucket as key -> bytes; gzip objects stored compressed, as in S3. Its
    typed documents (manifest, latest.json, ...) are the real bucket's code."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def definition_files(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.objects.items() if k.startswith(layout.DEFINITIONS_PREFIX)}

    def source_files(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.objects.items() if k.startswith(layout.SOURCES_PREFIX)}

    def get_json(self, key: str) -> Any:
        return json.loads(self.objects[key])

    def get_json_if_exists(self, key: str) -> Any | None:
        return self.get_json(key) if key in self.objects else None

    def get_bytes_if_exists(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def put_json(self, key: str, document: Any) -> None:
        self.objects[key] = json.dumps(document, sort_keys=True).encode()

    def put_text(self, key: str, text: str, *, content_type: str) -> None:
        self.objects[key] = text.encode("utf-8")

    def upload_lines(self, key: str, writer: LinesWriter, *, content_type: str) -> None:
        body = writer.finish()
        self.objects[key] = body.read()
        body.close()

    def iter_lines(self, key: str) -> Iterator[str]:
        return (line for line in gzip.decompress(self.objects[key]).decode().splitlines() if line)

    def read_members(self, key: str) -> list[str]:
        return list(self.iter_lines(key))[1:]

    def keys(self, prefix: str) -> Iterator[str]:
        return iter(sorted(key for key in self.objects if key.startswith(prefix)))

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.objects if key.startswith(prefix)]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    def rewrite_lines(self, key: str, keep: Callable[[str], bool], *, content_type: str) -> int:
        lines = list(self.iter_lines(key))
        kept = [line for line in lines if keep(line)]
        if len(kept) < len(lines):
            self.objects[key] = gzip.compress("".join(line + "\n" for line in kept).encode(), mtime=0)
        return len(lines) - len(kept)

    def purge_noncurrent_versions(self, prefix: str) -> int:
        return 0  # not versioned

    def build_ids(self) -> list[str]:
        prefixes = {key.split("/")[1] for key in self.objects if key.startswith(layout.BUILDS_PREFIX)}
        return sorted(prefixes)

    def delete_build(self, build_id: str) -> int:
        doomed = [key for key in self.objects if key.startswith(layout.build_prefix(build_id))]
        for key in doomed:
            del self.objects[key]
        return len(doomed)
