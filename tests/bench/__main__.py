"""`make bench`: every benchmark, each a ratio against a baseline measured in the same run
(these machines are noisy; absolute times are not comparable across runs), except the
cost suite's dollars (bench_cost.py). Prints `name: value` lines and writes
.bench/results.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.bench import (
    bench_builder,
    bench_consent,
    bench_cost,
    bench_importer,
    bench_ingest,
    bench_local,
    bench_lookup,
    bench_report,
    bench_shard,
    bench_stream,
)

SUITES = {
    "ingest": bench_ingest.run,
    "lookup": bench_lookup.run,
    "shard": bench_shard.run,
    "builder": bench_builder.run,
    "consent": bench_consent.run,
    "cost": bench_cost.run,
    "local": bench_local.run,
    "importer": bench_importer.run,
    "report": bench_report.run,
    "stream": bench_stream.run,
}


def _rounded(value: float) -> float:
    """Three decimals; three significant digits below 0.1, where the cost suite's
    components (fractions of a cent) would otherwise print as 0."""
    return float(f"{value:.3g}") if 0 < abs(value) < 0.1 else round(value, 3)


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    results: dict[str, float] = {}
    for name in chosen:
        for metric, value in SUITES[name]().items():
            results[metric] = _rounded(value)
            print(f"{metric}: {results[metric]}", flush=True)
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
