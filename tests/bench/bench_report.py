"""Report benchmark (issue 14: the per-build report).

- report_overhead_ratio: CPU seconds of a build's shard and publish stages with the
  report (its counts taken in the shard's pass, summed and written by publish) over the
  same stages without it (`report=False`, which only this benchmark uses), on 1 M events
  (100 k visitors, 10 events each, as a parallel scan returns them, converted from
  DynamoDB items by the production code) with the shipped segments, over in-memory
  stores. Best of 5 each, in turns, on fresh stores every time (the machines are shared:
  the best run is the one least disturbed). Aim: <= 1.1.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from tests.bench.bench_shard import NOW, GeneratedEvents

VISITORS = int(os.environ.get("BENCH_REPORT_VISITORS", "100000"))
EVENTS_PER_VISITOR = 10


def _stores() -> Any:
    from functions.builder.stores import BuildStores
    from tests.conftest import SEGMENTS_DIR
    from tests.fakes import MemoryBucket, MemoryCatalog, MemoryMembership, MemorySuppression

    bucket = MemoryBucket()
    for path in sorted(SEGMENTS_DIR.glob("*.y*ml")):
        bucket.objects[f"segments/{path.name}"] = path.read_bytes()
    events = GeneratedEvents(VISITORS, EVENTS_PER_VISITOR)
    return BuildStores(events, MemoryMembership(), bucket, MemoryCatalog(), MemorySuppression())  # type: ignore[arg-type]


def _build_seconds(report: bool) -> float:
    """CPU seconds of plan -> shard -> publish on fresh stores."""
    from functions.builder.plan import plan_build
    from functions.builder.publish import publish
    from functions.builder.shard import run_shard

    stores = _stores()
    plan = plan_build(stores.bucket, NOW, 1)
    gc.collect()
    start = time.process_time()
    results = [run_shard(plan, 0, events=stores.events, bucket=stores.bucket, report=report)]
    publish(plan, stores, results, report=report)
    seconds = time.process_time() - start
    if report != (stores.bucket.get_json_if_exists(f"builds/{plan.build_id}/report.json") is not None):
        raise AssertionError("the report was written exactly when asked for")
    return seconds


def run(repeat: int = 5) -> dict[str, float]:
    _build_seconds(True)  # warm imports and compiled patterns out of the measurement
    with_report: list[float] = []
    without: list[float] = []
    for _ in range(repeat):
        without.append(_build_seconds(False))
        with_report.append(_build_seconds(True))
    return {
        "report_overhead_ratio": min(with_report) / min(without),
        "report_build_seconds": min(with_report),
        "report_bench_events_1m": VISITORS * EVENTS_PER_VISITOR / 1e6,
    }
