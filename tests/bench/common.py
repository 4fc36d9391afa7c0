"""Shared helpers of the benchmarks: timing, fresh-process imports, request counting."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_NAMESPACE": "DMP",
}


def median_seconds(action: Callable[[], Any], *, repeat: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved_medians(actions: dict[str, Callable[[], Any]], *, repeat: int, warmup: int = 20) -> dict[str, float]:
    """Median of each action, run in turns so machine noise hits all of them alike."""
    for _ in range(warmup):
        for action in actions.values():
            action()
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def fresh_import_seconds(code: str, env: dict[str, str], *, repeat: int = 7, setup: str = "") -> float:
    """Median wall time of `code` in a new interpreter, measured inside it (after `setup`,
    which is not timed)."""
    program = f"{setup}\nimport time\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)\n"
    samples = []
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-c", program], env={**os.environ, **env}, capture_output=True, text=True, check=True
        ).stdout
        samples.append(float(output.strip().splitlines()[-1]))
    return statistics.median(samples)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Powertools prints metrics (EMF) to stdout, as in Lambda; keep them off the report."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class RequestCounter:
    """DynamoDB API calls made through boto3, counted with botocore's event hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)
