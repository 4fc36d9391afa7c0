"""The importer: memory flat with the file's size, writes per row, and its throughput
against bare BatchWriteItem of the same items on the same moto, in the same run."""

from __future__ import annotations

import gzip
import io
import os
import time
import tracemalloc
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tests.bench.common import BASE_ENV, RequestCounter

SOURCE = {
    "id": "interest-graph",
    "name": "Interests",
    "kind": "third",
    "id_type": "dmp",
    "traits": {"interest": "string"},
    "ttl_days": 60,
}
# Rows of the throughput comparison on moto.
ROWS = 5_000
# Rows of the memory comparison's smaller file (the larger has four times as many): past
# the first ~10 k rows the peak no longer moves (the decompressor's and the writer's
# buffers have reached their size), so the figure compares files, not warm-up.
MEMORY_ROWS = 20_000


def _file(rows: int) -> bytes:
    lines = b"".join(b"visitor-%08d,travel\n" % i for i in range(rows))
    return gzip.compress(b"id,interest\n" + lines)


class _Objects:
    """The file in memory, compressed (as S3 holds it); reports kept in a dict."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.documents: dict[str, Any] = {"sources/interest-graph.json": SOURCE}

    def get_json_if_exists(self, key: str) -> Any | None:
        return self.documents.get(key)

    def put_json(self, key: str, document: Any) -> None:
        self.documents[key] = document

    def open_text(self, key: str, etag: str | None, *, start: int, compressed: bool) -> Any:
        from functions.core.storage.imports import OpenedObject

        return OpenedObject(gzip.GzipFile(fileobj=io.BytesIO(self.data)), datetime.now(UTC))  # type: ignore[arg-type]


class _Nobody:
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]:
        return set()


class _Never:
    def continue_import(self, bucket: str, key: str, etag: str | None) -> None:
        raise AssertionError("no continuation expected")


def _import(data: bytes, traits: Any) -> Any:
    from functions.core.storage.events import EventStore
    from functions.importer.logic import ImportRequest, ImportStores, run_import

    stores = ImportStores(_Objects(data), traits, _Nobody(), _Never(), EventStore.trait_item)
    return run_import(
        ImportRequest("b", "imports/interest-graph/f.csv.gz", "v1"), stores, remaining_ms=lambda: 10**9, now_s=0
    )


class _Discard:
    def put_traits(self, items: list[dict[str, Any]]) -> int:
        return 1


def _peak(rows: int) -> int:
    data = _file(rows)
    tracemalloc.start()
    tracemalloc.reset_peak()
    _import(data, _Discard())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def run() -> dict[str, float]:
    os.environ.update(BASE_ENV)
    from moto import mock_aws

    results: dict[str, float] = {}
    _peak(100)  # imports and first-use caches, outside the comparison
    results["importer_peak_memory_ratio"] = _peak(4 * MEMORY_ROWS) / _peak(MEMORY_ROWS)
    with mock_aws():
        from dmp.local import create_resources
        from functions.core.storage.aws import batch_write
        from functions.core.storage.events import EventStore

        target = create_resources(None, region="us-east-1")
        events = EventStore(target.events_table)
        counter = RequestCounter()
        counter.attach(events.client)
        data = _file(ROWS)
        start = time.perf_counter()
        outcome = _import(data, events)
        importer_seconds = time.perf_counter() - start
        assert outcome.tally.stored == ROWS
        writes = counter.calls.count("BatchWriteItem")
        results["import_writes_per_row"] = writes / ROWS
        now = int(time.time())
        items = [
            EventStore.trait_item(f"visitor-{i:08d}", "bare.interest", "travel", ts_ms=now * 1000, expires_at=now)
            for i in range(ROWS)
        ]
        start = time.perf_counter()
        batch_write(events.client, target.events_table, [{"PutRequest": {"Item": item}} for item in items])
        bare_seconds = time.perf_counter() - start
        results["importer_overhead_ratio"] = importer_seconds / bare_seconds
    return results
