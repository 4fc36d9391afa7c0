"""Shared helpers of the benchmarks: timing, fresh-process imports, request counting."""

from __future__ import annotations

import contextlib
import io
import logging
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
    """API calls made through boto3 (DynamoDB's unless told), counted with botocore's
    event hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, client: Any, service: str = "dynamodb") -> None:
        client.meta.events.register(f"before-call.{service}.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)


# A Lambda context for handlers run in a fresh process (see `fresh_import_seconds`).
LAMBDA_CONTEXT = """
class Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    def get_remaining_time_in_millis(self):
        return 30_000
"""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto as a server of its own, so a fresh process imports nothing before its clock
    starts (moto in that process would have imported boto3 for it) and talks to its
    backend over HTTP, as a Lambda function talks to DynamoDB and S3."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
