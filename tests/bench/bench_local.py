"""Local stack benchmark (issue: the local stack cannot build a real site's week).

On `dmp serve` started for the run (its moto server in a process of its own, as the
operator runs it), 20 k events of 1,500 visitors (`tests/site_traffic.py`) are ingested
by the backfill code of `dmp ingest`, then, in turns:

- a build as `dmp build --local --shards 4` runs it: `build()` over the local stack's
  stores (`StackTarget.build_stores()`), with the local stack's environment (its clients'
  read timeout included), each at a new evaluation time so every one scans and publishes;
- a bare parallel scan of the same events table: 4 segments on 4 threads, through the
  same adapter (`EventStore.scan`), items counted and dropped.

- local_build_vs_scan_ratio: events/s through the build / events/s of the bare scan. The
  emulator answers ~1 k items/s, so the scan is the build's floor; aim >= 0.7.
- local_build_events_per_second, local_scan_events_per_second: the two rates.
- local_ingest_events_per_second: the backfill's rate (loading, measured once).
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.common import interleaved_medians

EVENTS = 20_000
SHARDS = 4


def run(repeat: int = 2) -> dict[str, float]:
    from dmp.backfill import ingest_lines
    from dmp.targets import local_target
    from functions.builder.build import build
    from functions.builder.plan import build_time_now
    from functions.core.storage.events import EventStore
    from tests.conftest import SEGMENTS_DIR
    from tests.localstack import dmp_serve, run_dmp
    from tests.site_traffic import week_lines

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as directory, dmp_serve(Path(directory)):
        cwd = Path(directory)
        try:
            target = local_target(cwd / ".dmp" / "local.json")
            os.environ.update(target.environment())  # as `dmp ... --local` does
            run_dmp(cwd, "segments", "push", str(SEGMENTS_DIR), "--local")
            start = time.perf_counter()
            report = ingest_lines(week_lines(EVENTS), EventStore(target.events_table), target.retention_days)
            ingest_seconds = time.perf_counter() - start
            assert report.stored == EVENTS and not report.problems, report

            def build_once() -> None:
                result = build(
                    target.build_stores(), build_time_now(), SHARDS, retention_seconds=target.retention_seconds
                )
                assert result.published

            def scan_once() -> None:
                events = EventStore(target.events_table)

                def segment(number: int) -> int:
                    return sum(1 for _ in events.scan(number, SHARDS))

                with ThreadPoolExecutor(max_workers=SHARDS) as pool:
                    scanned = sum(pool.map(segment, range(SHARDS)))
                assert scanned == EVENTS, scanned

            # no warm-up round: every round is a full scan of the table (~30 s on moto)
            seconds = interleaved_medians({"build": build_once, "scan": scan_once}, repeat=repeat, warmup=0)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {
        "local_build_vs_scan_ratio": seconds["scan"] / seconds["build"],
        "local_build_events_per_second": EVENTS / seconds["build"],
        "local_scan_events_per_second": EVENTS / seconds["scan"],
        "local_ingest_events_per_second": EVENTS / ingest_seconds,
    }
