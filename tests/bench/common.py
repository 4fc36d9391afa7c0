"""Shared helpers of the benchmarks: timing, fresh-process imports, request counting, and
what AWS would bill for requests made on moto (`UsageMeter`)."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from functions.core.storage.item_size import WRITE_UNIT_BYTES, item_bytes

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
    event hooks; only those naming `table`, when given (clients are shared by tables)."""

    def __init__(self, table: str | None = None) -> None:
        self.calls: list[str] = []
        self._table = table

    def attach(self, client: Any, service: str = "dynamodb") -> None:
        if self._table is None:
            client.meta.events.register(f"before-call.{service}.*", self._count)
        else:  # the API's own parameters, which name the table (before-call has the wire request)
            client.meta.events.register(f"before-parameter-build.{service}.*", self._count_for_table)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def _count_for_table(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self._table is not None and _names_table(params, self._table):
            self.calls.append(model.name)


def _names_table(params: dict[str, Any], table: str) -> bool:
    return params.get("TableName") == table or table in (params.get("RequestItems") or {})


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


# --- what AWS bills for a function's requests, measured on moto (bench_stream.py, bench_cost.py)

# DynamoDB bills a read in 4 KB units (half a unit eventually consistent), a write in 1 KB
# units (two for a transactional one), each at least one unit:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
READ_UNIT_BYTES = 4096
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_USAGE_HOOK = "bench-usage"


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of one read of `size` bytes (a missing item still costs one)."""
    return max(1, math.ceil(size / READ_UNIT_BYTES)) * (1.0 if consistent else 0.5)


def write_units(size: int) -> int:
    """Write units of one write of an item whose larger side is `size` bytes."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


@dataclass(frozen=True)
class Usage:
    """What requests used, as AWS bills it: DynamoDB's read and write units by table, and
    the requests made, by `service:Operation`. Adds, subtracts and scales, so figures
    measured at two sizes extrapolate (see `extrapolate`)."""

    read_units: Mapping[str, float] = field(default_factory=dict)
    write_units: Mapping[str, float] = field(default_factory=dict)
    requests: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_read_units(self) -> float:
        return sum(self.read_units.values())

    @property
    def total_write_units(self) -> float:
        return sum(self.write_units.values())

    def requests_of(self, service: str) -> dict[str, float]:
        """{operation: requests} of one service."""
        prefix = f"{service}:"
        return {name[len(prefix) :]: n for name, n in self.requests.items() if name.startswith(prefix)}

    def without_writes_to(self, table: str) -> Usage:
        return replace(self, write_units={t: u for t, u in self.write_units.items() if t != table})

    def _combine(self, other: Usage, sign: float) -> Usage:
        def merged(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
            combined = {key: a.get(key, 0.0) + sign * b.get(key, 0.0) for key in {*a, *b}}
            return {key: value for key, value in combined.items() if value}

        return Usage(
            merged(self.read_units, other.read_units),
            merged(self.write_units, other.write_units),
            merged(self.requests, other.requests),
        )

    def __add__(self, other: Usage) -> Usage:
        return self._combine(other, 1.0)

    def __sub__(self, other: Usage) -> Usage:
        return self._combine(other, -1.0)

    def __mul__(self, factor: float) -> Usage:
        return Usage(
            {k: v * factor for k, v in self.read_units.items()},
            {k: v * factor for k, v in self.write_units.items()},
            {k: v * factor for k, v in self.requests.items()},
        )


def extrapolate(small: Any, large: Any, *, measured: tuple[float, float], to: float) -> Any:
    """The straight line through (measured[0], small) and (measured[1], large), at `to`:
    small + (large - small) * (to - measured[0]) / (measured[1] - measured[0]). Works on
    floats and on `Usage`."""
    return small + (large - small) * ((to - measured[0]) / (measured[1] - measured[0]))


class UsageMeter:
    """What the AWS requests of the clients it watches would be billed, on moto: every
    request by service and operation, DynamoDB's read and write units by table (from each
    request and the size of each item it reads or writes, as moto holds it: a projection
    or a filter does not make a read cheaper), and the CPU moto spends answering (in AWS,
    the services' work, not the function's), so that `function_seconds()` counts only
    what a Lambda function itself would spend.

    Watches the clients given to `watch` and, with `watch_new_clients`, every client
    created afterwards; `close` (or leaving its `with`) stops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._read: dict[str, float] = {}
        self._write: dict[str, float] = {}
        self._requests: dict[str, float] = {}
        self._server_seconds = 0.0
        self._own_seconds = 0.0
        self._emitters: list[Any] = []
        self._paused = False
        self._closed = False
        self._hook = f"{_USAGE_HOOK}-{id(self)}"

    # --- setup

    def __enter__(self) -> UsageMeter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def watch(self, client: Any) -> UsageMeter:
        self._register(client.meta.events)
        return self

    def watch_new_clients(self) -> UsageMeter:
        """Every client created from now on: the storage adapters' (one botocore session,
        functions/core/storage/aws.py) and boto3's (the S3 client)."""
        import boto3

        from functions.core.storage import aws

        for session in (aws.session(), boto3._get_default_session()._session):
            self._register(session.get_component("event_emitter"))
        return self

    def close(self) -> None:
        self._closed = True
        for emitter in self._emitters:
            for event in ("before-send", "before-parse", "before-call", "before-parameter-build", "after-call"):
                emitter.unregister(event, unique_id=f"{self._hook}-{event}")
        self._emitters.clear()

    def _register(self, emitter: Any) -> None:
        emitter.register_first("before-send", self._server_starts, unique_id=f"{self._hook}-before-send")
        emitter.register("before-parse", self._server_answered, unique_id=f"{self._hook}-before-parse")
        emitter.register("before-call", self._count, unique_id=f"{self._hook}-before-call")
        emitter.register(
            "before-parameter-build", self._before_request, unique_id=f"{self._hook}-before-parameter-build"
        )
        emitter.register("after-call", self._after_request, unique_id=f"{self._hook}-after-call")
        self._emitters.append(emitter)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Requests made meanwhile are not counted (a benchmark's own set-up and checks)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    # --- readings

    def usage(self) -> Usage:
        with self._lock:
            return Usage(dict(self._read), dict(self._write), dict(self._requests))

    def function_seconds(self) -> float:
        """CPU seconds of this process so far, less moto's answering and this meter's own
        work: take the difference of two readings around what a function does."""
        with self._lock:
            return time.process_time() - self._server_seconds - self._own_seconds

    # --- hooks

    def _server_starts(self, **_: Any) -> None:
        if not self._closed:
            self._local.started = time.thread_time()

    def _server_answered(self, **_: Any) -> None:
        started = getattr(self._local, "started", None)
        if started is not None:
            self._local.started = None
            with self._lock:
                self._server_seconds += time.thread_time() - started

    def _count(self, model: Any, **_: Any) -> None:
        if self._closed or self._paused:
            return
        name = f"{model.service_model.service_name}:{model.name}"
        with self._lock:
            self._requests[name] = self._requests.get(name, 0) + 1

    def _before_request(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self._closed or self._paused or model.service_model.service_name != "dynamodb":
            return
        started = time.thread_time()
        context[self._hook] = {"params": params}
        if model.name in _WRITES:
            context[self._hook]["before"] = _Items(context.get("client_region")).sizes_written(model.name, params)
        self._spent(started)

    def _after_request(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], model: Any, **_: Any
    ) -> None:
        request = context.get(self._hook)
        if self._closed or request is None:
            return
        started = time.thread_time()
        items = _Items(context.get("client_region"))
        units = items.units(model.name, request["params"], parsed, request.get("before"), http_response.status_code)
        with self._lock:
            for table, (reads, writes) in units.items():
                if reads:
                    self._read[table] = self._read.get(table, 0.0) + reads
                if writes:
                    self._write[table] = self._write.get(table, 0.0) + writes
        self._spent(started)

    def _spent(self, started: float) -> None:
        with self._lock:
            self._own_seconds += time.thread_time() - started


class _Items:
    """The units of one DynamoDB request, from the items moto holds (in-process moto only:
    `mock_aws`)."""

    def __init__(self, region: str | None) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        self.backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][
            region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        ]

    def stored_bytes(self, table_name: str, item_or_key: Mapping[str, Any]) -> int:
        """The size of the stored item with the key of `item_or_key`; 0 if none."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self.backend.get_table(table_name)
        range_attr = table.range_key_attr
        if table.hash_key_attr not in item_or_key or (range_attr and range_attr not in item_or_key):
            return 0
        stored = table.get_item(
            DynamoType(item_or_key[table.hash_key_attr]),
            DynamoType(item_or_key[range_attr]) if range_attr else None,
        )
        if stored is None:
            return 0
        return item_bytes({name: value.to_regular_json() for name, value in stored.attrs.items()})

    def sizes_written(self, operation: str, params: Mapping[str, Any]) -> Any:
        """The stored sizes a write will replace: DynamoDB bills the larger side."""
        if operation == "PutItem":
            return [self.stored_bytes(params["TableName"], params["Item"])]
        if operation in ("UpdateItem", "DeleteItem"):
            return [self.stored_bytes(params["TableName"], params["Key"])]
        if operation == "BatchWriteItem":
            return {
                table: [self.stored_bytes(table, _written_key(request)) for request in requests]
                for table, requests in params["RequestItems"].items()
            }
        return [  # TransactWriteItems
            self.stored_bytes(body["TableName"], body.get("Item") or body["Key"])
            for entry in params["TransactItems"]
            for body in entry.values()
        ]

    def units(
        self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any], before: Any, status: int
    ) -> dict[str, tuple[float, float]]:
        """{table: (read units, write units)} of one request."""
        if status >= 300:
            # A write refused by its condition is billed as if made; other errors are not.
            refused = parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
            if not refused or operation not in ("PutItem", "UpdateItem", "DeleteItem"):
                return {}
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            size = self.stored_bytes(params["TableName"], params["Key"])
            return {params["TableName"]: (read_units(size, consistent=consistent), 0.0)}
        if operation == "BatchGetItem":
            return self._batch_get(params, parsed)
        if operation in ("Query", "Scan"):
            return {
                params["TableName"]: (
                    read_units(self._bytes_read(operation, params, parsed), consistent=consistent),
                    0.0,
                )
            }
        if operation == "PutItem":
            return {params["TableName"]: (0.0, write_units(max(before[0], item_bytes(params["Item"]))))}
        if operation == "UpdateItem":
            after = self.stored_bytes(params["TableName"], params["Key"])
            return {params["TableName"]: (0.0, write_units(max(before[0], after)))}
        if operation == "DeleteItem":
            return {params["TableName"]: (0.0, write_units(before[0]))}
        if operation == "BatchWriteItem":
            return self._batch_write(params, parsed, before)
        if operation == "TransactWriteItems":
            units: dict[str, tuple[float, float]] = {}
            bodies = [body for entry in params["TransactItems"] for body in entry.values()]
            for body, old in zip(bodies, before, strict=True):
                new = item_bytes(body["Item"]) if "Item" in body else self.stored_bytes(body["TableName"], body["Key"])
                reads, writes = units.get(body["TableName"], (0.0, 0.0))
                units[body["TableName"]] = (reads, writes + 2 * write_units(max(old, new)))
            return units
        return {}  # not billed per request (control plane: CreateTable, DescribeTable, ...)

    def _batch_get(self, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
        units: dict[str, tuple[float, float]] = {}
        for table, request in params["RequestItems"].items():
            unprocessed = parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            consistent = bool(request.get("ConsistentRead"))
            reads = sum(
                read_units(self.stored_bytes(table, key), consistent=consistent)
                for key in request["Keys"]
                if key not in unprocessed
            )
            units[table] = (reads, 0.0)
        return units

    def _batch_write(
        self, params: Mapping[str, Any], parsed: Mapping[str, Any], before: Mapping[str, list[int]]
    ) -> dict[str, tuple[float, float]]:
        units: dict[str, tuple[float, float]] = {}
        for table, requests in params["RequestItems"].items():
            unprocessed = parsed.get("UnprocessedItems", {}).get(table, [])
            writes = 0
            for request, old in zip(requests, before[table], strict=True):
                if request in unprocessed:
                    continue
                new = item_bytes(request["PutRequest"]["Item"]) if "PutRequest" in request else 0
                writes += write_units(max(old, new))
            units[table] = (0.0, float(writes))
        return units

    def _bytes_read(self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> int:
        """The size of the items a Query or Scan page read: whole items (a projection
        returns less than it reads), and those its filter dropped (estimated at the mean
        size of those returned, or of the table's items when none was)."""
        table = params["TableName"]
        items = parsed.get("Items", [])
        projected = any(name in params for name in ("ProjectionExpression", "AttributesToGet")) or params.get(
            "Select"
        ) in ("SPECIFIC_ATTRIBUTES", "COUNT")
        if projected:
            partition = self._queried_partition(operation, table, params)
            sizes = [self.stored_bytes(table, {**partition, **item}) for item in items]
        else:
            sizes = [item_bytes(item) for item in items]
        scanned = int(parsed.get("ScannedCount", len(items)))
        dropped = scanned - len(items)
        if dropped <= 0:
            return sum(sizes)
        mean = sum(sizes) / len(sizes) if sizes else self._mean_stored_bytes(table)
        return round(sum(sizes) + dropped * mean)

    def _queried_partition(self, operation: str, table_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A Query's partition key value (`#k = :k` in its key condition), which its
        projection may leave out of the items it returns."""
        if operation != "Query":
            return {}
        hash_attr = self.backend.get_table(table_name).hash_key_attr
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        for name, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)", params.get("KeyConditionExpression", "")):
            if names.get(name, name) == hash_attr and placeholder in values:
                return {hash_attr: values[placeholder]}
        return {}

    def _mean_stored_bytes(self, table_name: str) -> float:
        stored = list(self.backend.get_table(table_name).all_items())
        if not stored:
            return 0.0
        return sum(item_bytes({n: v.to_regular_json() for n, v in i.attrs.items()}) for i in stored) / len(stored)


def _written_key(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return request["PutRequest"]["Item"] if "PutRequest" in request else request["DeleteRequest"]["Key"]
