"""The importer's logic with in-memory stores: streaming, batching, checkpoints."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from functions.core.storage.events import EventStore
from functions.core.storage.imports import ObjectChanged, OpenedObject
from functions.importer.logic import ImportFile, ImportRequest, ImportStores, lines_of, run_import

SOURCE = {
    "id": "interest-graph",
    "name": "Interests",
    "kind": "third",
    "id_type": "dmp",
    "traits": {"interest": "string"},
    "ttl_days": 60,
}
MODIFIED = datetime(2026, 11, 1, tzinfo=UTC)


class MemoryObjects:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.documents: dict[str, Any] = {"sources/interest-graph.json": SOURCE}

    def get_json_if_exists(self, key: str) -> Any | None:
        return self.documents.get(key)

    def put_json(self, key: str, document: Any) -> None:
        self.documents[key] = json.loads(json.dumps(document))

    def open_text(self, key: str, etag: str | None, *, start: int, compressed: bool) -> OpenedObject:
        if etag != "v1":
            raise ObjectChanged(key)
        data = self.files[key]
        body = io.BytesIO(gzip.decompress(data) if compressed else data)
        body.seek(start)
        return OpenedObject(body, MODIFIED)  # type: ignore[arg-type]


class MemoryTraits:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests = 0

    def put_traits(self, items: list[dict[str, Any]]) -> int:
        assert len(items) <= 25
        assert len({(i["visitor_id"]["S"], i["event_id"]["S"]) for i in items}) == len(items)
        for item in items:
            self.items[(item["visitor_id"]["S"], item["event_id"]["S"])] = item
        self.requests += 1
        return 1


class NoOneSuppressed:
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]:
        return set()


class Continuations:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def continue_import(self, bucket: str, key: str, etag: str | None) -> None:
        self.asked.append(key)


def stores(files: dict[str, bytes]) -> tuple[ImportStores, MemoryObjects, MemoryTraits, Continuations]:
    objects, traits, continuations = MemoryObjects(files), MemoryTraits(), Continuations()
    return (
        ImportStores(objects, traits, NoOneSuppressed(), continuations, EventStore.trait_item),
        objects,
        traits,
        continuations,
    )


def csv_file(rows: int) -> bytes:
    return ("id,interest\n" + "".join(f"visitor-{i:06d},travel\n" for i in range(rows))).encode()


def test_file_names_give_source_format_and_report() -> None:
    file = ImportFile.of("imports/interest-graph/week-48.jsonl.gz")
    assert file is not None and (file.source_id, file.name, file.format, file.compressed) == (
        "interest-graph",
        "week-48",
        "jsonl",
        True,
    )
    assert file.report_key == "imports/interest-graph/week-48.report.json"
    assert ImportFile.of("imports/interest-graph/week-48.report.json") is None
    assert ImportFile.of("segments/x.csv") is None


def test_lines_carry_the_offset_after_them_and_overlong_lines_are_dropped() -> None:
    body = io.BytesIO(b"a\n" + b"x" * 70_000 + b"\nb")
    assert [(line, end) for line, end in lines_of(body, 0)] == [(b"a\n", 2), (None, 70_003), (b"b", 70_004)]


def test_items_are_written_in_full_batches_of_25() -> None:
    # GIVEN 1000 rows of one trait
    importing, _, traits, _ = stores({"imports/interest-graph/a.csv": csv_file(1000)})
    # WHEN imported
    outcome = run_import(
        ImportRequest("b", "imports/interest-graph/a.csv", "v1"), importing, remaining_ms=lambda: 10**9, now_s=0
    )
    # THEN 40 requests wrote 1000 items, each expiring ttl_days after the file's time
    assert outcome.outcome == "done" and traits.requests == 40 and len(traits.items) == 1000
    item = traits.items[("visitor-000000", "trait#interest-graph.interest")]
    assert int(item["expires_at"]["N"]) == int(MODIFIED.timestamp()) + 60 * 86_400


def test_a_continuation_resumes_at_the_checkpoint_and_never_rereads_written_rows() -> None:
    # GIVEN an invocation that runs out of time after its second chunk
    importing, objects, traits, continuations = stores({"imports/interest-graph/a.csv": csv_file(450)})
    budget = iter([10**9, 0])
    request = ImportRequest("b", "imports/interest-graph/a.csv", "v1")
    first = run_import(request, importing, remaining_ms=lambda: next(budget, 0), now_s=0)
    # THEN it checkpointed after 200 rows and asked to go on
    assert first.outcome == "continued" and continuations.asked == ["imports/interest-graph/a.csv"]
    assert objects.documents["imports/interest-graph/a.progress.json"]["line"] == 201
    # WHEN the continuation runs
    second = run_import(request, importing, remaining_ms=lambda: 10**9, now_s=0)
    # THEN it reads on from there: 450 rows in total, each stored once
    report = objects.documents["imports/interest-graph/a.report.json"]
    assert second.outcome == "done" and (report["rows"], report["stored"]) == (450, 450)
    assert len(traits.items) == 450


def test_a_replaced_file_is_left_to_its_own_event() -> None:
    importing, objects, _, _ = stores({"imports/interest-graph/a.csv": csv_file(1)})
    outcome = run_import(
        ImportRequest("b", "imports/interest-graph/a.csv", "v0"), importing, remaining_ms=lambda: 10**9, now_s=0
    )
    assert outcome.outcome == "superseded" and "imports/interest-graph/a.report.json" not in objects.documents


def test_memory_stays_flat_with_the_files_size() -> None:
    def peak(rows: int) -> int:
        importing, _, traits, _ = stores({"imports/interest-graph/a.jsonl.gz": b""})
        traits.put_traits = lambda items: 1  # type: ignore[method-assign]  # keep nothing
        data = gzip.compress(
            b"".join(b'{"id": "visitor-%06d", "traits": {"interest": "travel"}}\n' % i for i in range(rows))
        )
        importing.objects.files["imports/interest-graph/a.jsonl.gz"] = data  # type: ignore[attr-defined]
        tracemalloc.start()
        tracemalloc.reset_peak()
        run_import(
            ImportRequest("b", "imports/interest-graph/a.jsonl.gz", "v1"),
            importing,
            remaining_ms=lambda: 10**9,
            now_s=0,
        )
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    # The in-memory file's decompression is the fakes', not the importer's: measure the
    # importer alone by comparing 4x the rows with 1x.
    assert peak(20_000) < 1.5 * peak(5_000) + 2_000_000
