"""The importer's logic: one dropped file of a data source, streamed, into trait items.

A file `imports/<source>/<name>.(csv|jsonl)[.gz]` is read line by line, never whole: rows
go in chunks of `CHUNK_ROWS` through the source's id resolution (its partner's sync
mappings, one BatchGetItem per chunk), the suppression list (one more) and into a buffer
of trait items written 25 to a BatchWriteItem. Memory holds one chunk, one buffer and
the first 100 rejections, whatever the file's size.

Idempotent, and resumable without starting over:
- a trait item's key is `(visitor, trait#<source>.<trait>)` and its time the file's
  LastModified, so importing a file again writes the very same items;
- the report (`<name>.report.json`) names the file's ETag: the same file delivered again
  finds its report and stores nothing;
- when the invocation's remaining time runs low (or every `CHECKPOINT_ROWS` rows), every
  buffered item is written and a checkpoint (`<name>.progress.json`: the ETag, the byte
  offset and line after the last row handled, the tallies) is saved; the continuation
  starts from that offset.
A file that cannot be imported (unknown source, not CSV/JSON Lines, a bad header) gets a
report saying why, and the invocation succeeds: it is not retried.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from functions.core import layout
from functions.core.identity import is_partner_uid, is_visitor_id
from functions.core.sources import SourceDefinition, TraitType
from functions.core.storage.imports import ObjectChanged, OpenedObject

CHUNK_ROWS = 100
BATCH_ITEMS = 25
CHECKPOINT_ROWS = 50_000
# Stop taking rows when less time than this is left: enough to write the buffer and save
# the checkpoint, whatever the emulator or DynamoDB's latency.
RESERVE_MS = 20_000
MAX_REJECTIONS = 100
MAX_LINE_BYTES = 64 * 1024
MAX_STRING_CHARS = 256
READ_CHUNK = 64 * 1024
FILE_NAME = re.compile(r"^(?P<name>.+?)\.(?P<format>csv|jsonl)(?P<gz>\.gz)?$")
TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


class Rejection(BaseModel):
    line: int
    error: str


class Tally(BaseModel):
    """What an import has done so far (a checkpoint carries it to the next invocation)."""

    rows: int = 0
    stored: int = 0
    unresolved: int = 0
    suppressed: int = 0
    rejected: list[Rejection] = Field(default_factory=list)
    rejected_rows: int = 0
    traits_stored: int = 0
    write_requests: int = 0

    def reject(self, line: int, error: str) -> None:
        self.rows += 1
        self.rejected_rows += 1
        if len(self.rejected) < MAX_REJECTIONS:
            self.rejected.append(Rejection(line=line, error=error))


class ImportProgress(BaseModel):
    """`<name>.progress.json`: where an import under way stopped."""

    etag: str
    offset: int
    line: int
    header: list[str] | None = None
    tally: Tally


class ImportReport(Tally):
    """`<name>.report.json`: `rows`, `stored`, `unresolved`, `rejected` (the first 100 as
    `{line, error}`), and beside them what else is worth knowing."""

    source: str
    file: str
    etag: str | None
    status: Literal["done", "failed"]
    error: str | None = None
    finished_at: str


@dataclass(frozen=True)
class ImportFile:
    """A key under `imports/<source>/`: its source, its name without extensions and its format."""

    key: str
    source_id: str
    name: str
    format: Literal["csv", "jsonl"] | None
    compressed: bool

    @classmethod
    def of(cls, key: str) -> ImportFile | None:
        """None for anything that is not a dropped file: other prefixes, sub-folders, and
        the importer's own reports and checkpoints."""
        if not key.startswith(layout.IMPORTS_PREFIX):
            return None
        parts = key[len(layout.IMPORTS_PREFIX) :].split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return None
        source_id, file_name = parts
        if file_name.endswith((layout.IMPORT_REPORT_SUFFIX, layout.IMPORT_PROGRESS_SUFFIX)):
            return None
        match = FILE_NAME.match(file_name)
        if match is None:
            return cls(key, source_id, file_name, None, False)
        return cls(key, source_id, match["name"], match["format"], bool(match["gz"]))  # type: ignore[arg-type]

    @property
    def report_key(self) -> str:
        return layout.import_report_key(self.source_id, self.name)

    @property
    def progress_key(self) -> str:
        return layout.import_progress_key(self.source_id, self.name)


@dataclass(frozen=True)
class ImportRequest:
    """A file to import (or to go on importing): its bucket, key and the ETag the event named."""

    bucket: str
    key: str
    etag: str | None


class ImportObjects(Protocol):
    def get_json_if_exists(self, key: str) -> Any | None: ...

    def put_json(self, key: str, document: Any) -> None: ...

    def open_text(self, key: str, etag: str | None, *, start: int, compressed: bool) -> OpenedObject: ...


class TraitTable(Protocol):
    def put_traits(self, items: list[dict[str, Any]]) -> int: ...


class IdResolver(Protocol):
    def resolve_many(self, partner: str, partner_uids: Iterable[str], *, now_s: int) -> dict[str, str]: ...


class SuppressionList(Protocol):
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]: ...


class Continuations(Protocol):
    def continue_import(self, bucket: str, key: str, etag: str | None) -> None: ...


TraitItem = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ImportStores:
    objects: ImportObjects
    traits: TraitTable
    suppression: SuppressionList
    continuations: Continuations
    trait_item: TraitItem
    # None only for a stack without the id map: partner-keyed sources then resolve nothing.
    id_map: IdResolver | None = None


Outcome = Literal["done", "failed", "continued", "already imported", "ignored", "superseded"]


@dataclass(frozen=True)
class ImportOutcome:
    outcome: Outcome
    key: str
    tally: Tally | None = None

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"outcome": self.outcome, "key": self.key}
        if self.tally is not None:
            answer.update(self.tally.model_dump(exclude={"rejected"}))
        return answer


class BadFile(ValueError):
    """The file as a whole cannot be imported; its report says why."""


# -- reading ----------------------------------------------------------------------------


def lines_of(body: Any, start: int) -> Iterator[tuple[bytes | None, int]]:
    """(line, offset just after it) of each line from byte `start` on, read in chunks; a
    line over MAX_LINE_BYTES comes as None (skipped, never held whole in memory)."""
    offset = start
    pending = b""
    too_long = False
    while True:
        data = body.read(READ_CHUNK)
        if not data:
            break
        buffer = pending + data if pending else data
        position = 0
        while True:
            end = buffer.find(b"\n", position)
            if end < 0:
                break
            line = buffer[position : end + 1]
            offset += len(line)
            position = end + 1
            if too_long or len(line) > MAX_LINE_BYTES:
                too_long = False
                yield None, offset
            else:
                yield line, offset
        pending = buffer[position:]
        if len(pending) > MAX_LINE_BYTES:
            offset += len(pending)
            pending = b""
            too_long = True
    if pending or too_long:
        offset += len(pending)
        yield (None if too_long else pending), offset


def _value(trait: str, kind: TraitType, raw: object, *, from_text: bool) -> str | float | bool:
    """The trait's value checked against its declared type; ValueError says why not."""
    if kind is TraitType.NUMBER:
        if from_text and isinstance(raw, str):
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"trait {trait!r}: expected a number, got {raw!r}") from None
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            number = float(raw)
        else:
            raise ValueError(f"trait {trait!r}: expected a number, got {json.dumps(raw)}")
        if not math.isfinite(number):
            raise ValueError(f"trait {trait!r}: expected a finite number, got {raw!r}")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind is TraitType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if from_text and isinstance(raw, str) and raw.strip().lower() in TRUE | FALSE:
            return raw.strip().lower() in TRUE
        raise ValueError(f"trait {trait!r}: expected a boolean, got {json.dumps(raw)}")
    if not isinstance(raw, str):
        raise ValueError(f"trait {trait!r}: expected a string, got {json.dumps(raw)}")
    if len(raw) > MAX_STRING_CHARS:
        raise ValueError(f"trait {trait!r}: longer than {MAX_STRING_CHARS} characters")
    return raw


def csv_header(line: bytes, source: SourceDefinition) -> list[str]:
    """The trait columns of a CSV header `id,<trait>...`; BadFile when it is not one."""
    try:
        text = line.decode("utf-8-sig").strip("\r\n")
    except UnicodeDecodeError:
        raise BadFile("line 1: the header is not UTF-8") from None
    columns = next(csv.reader([text]), [])
    if not columns or columns[0].strip() != "id":
        raise BadFile(f"line 1: a CSV header is id,<trait>...; got {text[:200]!r}")
    traits = [column.strip() for column in columns[1:]]
    if not traits:
        raise BadFile("line 1: the header names no trait")
    for trait in traits:
        if trait not in source.traits:
            raise BadFile(
                f"line 1: undeclared trait {trait!r} (source {source.id!r} declares: {', '.join(source.traits)})"
            )
    if len(set(traits)) != len(traits):
        raise BadFile("line 1: a trait is named twice in the header")
    return traits


def csv_row(text: str, header: list[str], source: SourceDefinition) -> tuple[str, dict[str, str | float | bool]]:
    cells = next(csv.reader([text]), [])
    if len(cells) != len(header) + 1:
        raise ValueError(f"expected {len(header) + 1} fields, got {len(cells)}")
    traits: dict[str, str | float | bool] = {}
    for trait, cell in zip(header, cells[1:], strict=True):
        if cell != "":
            traits[trait] = _value(trait, source.traits[trait], cell, from_text=True)
    return cells[0].strip(), traits


def jsonl_row(text: str, source: SourceDefinition) -> tuple[str, dict[str, str | float | bool]]:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(document, dict) or set(document) - {"id", "traits"}:
        raise ValueError('a line is {"id": ..., "traits": {...}}')
    visitor = document.get("id")
    traits = document.get("traits")
    if not isinstance(visitor, str):
        raise ValueError("id: expected a string")
    if not isinstance(traits, dict):
        raise ValueError("traits: expected an object")
    values: dict[str, str | float | bool] = {}
    for trait, raw in traits.items():
        if trait not in source.traits:
            raise ValueError(f"undeclared trait {trait!r} (source {source.id!r} declares: {', '.join(source.traits)})")
        if raw is not None:
            values[trait] = _value(trait, source.traits[trait], raw, from_text=False)
    return visitor, values


# -- writing ----------------------------------------------------------------------------


@dataclass
class _Row:
    line: int
    raw_id: str
    traits: dict[str, str | float | bool]


class _Writer:
    """Trait items by key (a later row of the same visitor wins within the buffer, and
    one BatchWriteItem never names a key twice), written 25 at a time."""

    def __init__(self, table: TraitTable, tally: Tally) -> None:
        self.table = table
        self.tally = tally
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, visitor_id: str, name: str, item: dict[str, Any]) -> None:
        self.pending.pop((visitor_id, name), None)
        self.pending[(visitor_id, name)] = item

    def write_full_batches(self) -> None:
        while len(self.pending) >= BATCH_ITEMS:
            self._write(BATCH_ITEMS)

    def flush(self) -> None:
        while self.pending:
            self._write(BATCH_ITEMS)

    def _write(self, count: int) -> None:
        keys = list(self.pending)[:count]
        items = [self.pending[key] for key in keys]
        self.tally.write_requests += self.table.put_traits(items)
        self.tally.traits_stored += len(items)
        for key in keys:
            del self.pending[key]


class _Importer:
    def __init__(
        self, request: ImportRequest, file: ImportFile, source: SourceDefinition, stores: ImportStores, now_s: int
    ) -> None:
        self.request = request
        self.file = file
        self.source = source
        self.stores = stores
        self.now_s = now_s
        self.tally = Tally()
        self.writer = _Writer(stores.traits, self.tally)
        self.ts_ms = 0
        self.expires_at = 0

    def stamp(self, last_modified: datetime) -> None:
        """Every trait of the file carries the file's time: a re-import writes identical items."""
        seconds = int(last_modified.timestamp())
        self.ts_ms = seconds * 1000
        self.expires_at = seconds + self.source.ttl_days * 86_400

    def parse(self, line: int, raw: bytes | None, header: list[str] | None) -> _Row | None:
        if raw is None:
            self.tally.reject(line, f"line longer than {MAX_LINE_BYTES} bytes")
            return None
        try:
            text = raw.decode("utf-8").strip("\r\n")
        except UnicodeDecodeError:
            self.tally.reject(line, "not UTF-8")
            return None
        if not text.strip():
            return None
        try:
            if header is not None:
                raw_id, traits = csv_row(text, header, self.source)
            else:
                raw_id, traits = jsonl_row(text, self.source)
        except ValueError as error:
            self.tally.reject(line, str(error))
            return None
        partner = self.source.partner
        if not (is_partner_uid(raw_id) if partner else is_visitor_id(raw_id)):
            kind = f"a {partner} user id" if partner else "a visitor id"
            self.tally.reject(line, f"id: {raw_id[:80]!r} is not {kind}")
            return None
        if not traits:
            self.tally.reject(line, "no trait value")
            return None
        return _Row(line, raw_id, traits)

    def store(self, rows: list[_Row]) -> None:
        """One chunk: resolve ids, drop suppressed visitors, buffer the items."""
        if not rows:
            return
        self.tally.rows += len(rows)
        partner = self.source.partner
        if partner is None:
            visitors = {row.raw_id: row.raw_id for row in rows}
        elif self.stores.id_map is None:
            visitors = {}
        else:
            visitors = self.stores.id_map.resolve_many(partner, {row.raw_id for row in rows}, now_s=self.now_s)
        resolved = [(row, visitors[row.raw_id]) for row in rows if row.raw_id in visitors]
        self.tally.unresolved += len(rows) - len(resolved)
        suppressed = self.stores.suppression.suppressed({visitor for _, visitor in resolved}) if resolved else set()
        for row, visitor_id in resolved:
            if visitor_id in suppressed:
                self.tally.suppressed += 1
                continue
            self.tally.stored += 1
            for trait, value in row.traits.items():
                name = self.source.trait_name(trait)
                item = self.stores.trait_item(visitor_id, name, value, ts_ms=self.ts_ms, expires_at=self.expires_at)
                self.writer.add(visitor_id, name, item)
        self.writer.write_full_batches()


def _source(objects: ImportObjects, source_id: str) -> SourceDefinition:
    document = objects.get_json_if_exists(layout.source_key(source_id))
    if document is None:
        raise BadFile(f"unknown source {source_id!r}: push its definition (dmp sources push) first")
    try:
        return SourceDefinition.model_validate(document)
    except ValidationError as error:
        raise BadFile(f"the definition of source {source_id!r} is invalid: {error.errors()[0]['msg']}") from None


def _report(
    file: ImportFile, request: ImportRequest, tally: Tally, status: Literal["done", "failed"], error: str | None
) -> ImportReport:
    return ImportReport(
        **tally.model_dump(),
        source=file.source_id,
        file=file.key,
        etag=request.etag,
        status=status,
        error=error,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def run_import(
    request: ImportRequest,
    stores: ImportStores,
    *,
    remaining_ms: Callable[[], int],
    now_s: int,
    reserve_ms: int = RESERVE_MS,
    checkpoint_rows: int = CHECKPOINT_ROWS,
) -> ImportOutcome:
    """Import (or go on importing) one file; see the module's docstring."""
    file = ImportFile.of(request.key)
    if file is None:
        return ImportOutcome("ignored", request.key)
    objects = stores.objects
    done = objects.get_json_if_exists(file.report_key)
    if done is not None and request.etag and done.get("etag") == request.etag:
        return ImportOutcome("already imported", request.key)
    try:
        if file.format is None:
            raise BadFile("not a CSV or JSON Lines file: name it <name>.csv or <name>.jsonl (optionally .gz)")
        source = _source(objects, file.source_id)
    except BadFile as bad:
        report = _report(file, request, Tally(), "failed", str(bad))
        objects.put_json(file.report_key, report.model_dump(mode="json"))
        return ImportOutcome("failed", request.key, report)
    importer = _Importer(request, file, source, stores, now_s)
    saved = objects.get_json_if_exists(file.progress_key)
    progress = ImportProgress.model_validate(saved) if saved is not None else None
    if progress is None or progress.etag != (request.etag or ""):
        progress = ImportProgress(etag=request.etag or "", offset=0, line=0, tally=Tally())
    importer.tally = importer.writer.tally = progress.tally
    try:
        opened = objects.open_text(file.key, request.etag, start=progress.offset, compressed=file.compressed)
    except ObjectChanged:
        return ImportOutcome("superseded", request.key)
    importer.stamp(opened.last_modified)
    try:
        return _stream(importer, progress, opened, remaining_ms, reserve_ms, checkpoint_rows)
    except BadFile as bad:
        report = _report(file, request, importer.tally, "failed", str(bad))
        objects.put_json(file.report_key, report.model_dump(mode="json"))
        return ImportOutcome("failed", request.key, report)


def _stream(
    importer: _Importer,
    progress: ImportProgress,
    opened: OpenedObject,
    remaining_ms: Callable[[], int],
    reserve_ms: int,
    checkpoint_rows: int,
) -> ImportOutcome:
    file, request, objects = importer.file, importer.request, importer.stores.objects
    header = progress.header
    line_number = progress.line
    offset = progress.offset
    chunk: list[_Row] = []
    since_checkpoint = 0

    def checkpoint() -> None:
        importer.writer.flush()
        saved = ImportProgress(
            etag=request.etag or "", offset=offset, line=line_number, header=header, tally=importer.tally
        )
        objects.put_json(file.progress_key, saved.model_dump(mode="json"))

    for raw, end in lines_of(opened.body, progress.offset):
        line_number += 1
        if file.format == "csv" and header is None:
            if raw is None:
                raise BadFile("line 1: the header is too long")
            header = csv_header(raw, importer.source)
            offset = end
            continue
        row = importer.parse(line_number, raw, header)
        if row is not None:
            chunk.append(row)
        offset = end
        if len(chunk) >= CHUNK_ROWS:
            importer.store(chunk)
            since_checkpoint += len(chunk)
            chunk = []
            if remaining_ms() < reserve_ms:
                checkpoint()
                importer.stores.continuations.continue_import(request.bucket, file.key, request.etag)
                return ImportOutcome("continued", request.key, importer.tally)
            if since_checkpoint >= checkpoint_rows:
                checkpoint()
                since_checkpoint = 0
    if file.format == "csv" and header is None:
        raise BadFile("the file is empty: a CSV file starts with the header id,<trait>...")
    importer.store(chunk)
    importer.writer.flush()
    report = _report(file, request, importer.tally, "done", None)
    objects.put_json(file.report_key, report.model_dump(mode="json"))
    return ImportOutcome("done", request.key, report)
