"""Cost benchmarks (issue: what it costs): a pixel hit and a build, in dollars.

The requests, bytes and milliseconds measured here are priced at AWS's on-demand list
prices, all kept in tests/bench/aws_prices.py with their region and the date they were
read. Unlike the other suites' ratios these are absolute dollars. Request counts and
bytes are exact for the code as it is; the Lambda parts rest on times measured on this
machine (taking one of its cores for one Lambda vCPU), so they are estimates.

- cost_per_million_hits_usd: a million pixel hits of a returning visitor, measured with
  the ingest suite's harness (the handler on moto tables); the sum of
  - ..._lambda_usd: one invocation, and the hit's median time through the handler here
    scaled to the function's 256 MB (Lambda gives CPU in proportion to memory, one full
    vCPU at 1769 MB, so the same work takes 1769/256 = 6.9 times as long), billed per
    started ms. moto's in-process work stands in for DynamoDB's network round trips.
  - ..._dynamodb_usd: the requests counted per hit: the PutItem of the event (write
    units: its stored size over 1 KB, rounded up) and the suppression check (an
    eventually consistent GetItem: half a read unit).
  - ..._storage_usd: the stored event (its size and DynamoDB's 100 bytes an item) kept
    for cdk.json's `retention_days`.
  - ..._api_usd: one HTTP API request.
  - ..._cloudfront_usd: one HTTPS request, and the answer's bytes out: status line, the
    handler's headers and cookies, the GIF, and the headers API Gateway and CloudFront
    add (`ADDED_HEADERS`, an example answer's).
  - ..._logs_usd: what the invocation writes to CloudWatch Logs: the handler's output,
    counted (Powertools' metrics line), and Lambda's START, END and REPORT lines
    (`PLATFORM_LOG_LINES`, an example invocation's).
  - ..._xray_usd: the traces Lambda's active tracing records: 1 a second and 5 % of the
    other invocations (its default sampling rule), taken as 5 % at steady traffic.
- build_cost_per_million_events_usd: one build over an events table of 1 M events
  (visitors as in the builder suite's population, about 10.6 events each), with
  cdk.json's `build_shards`; the sum of
  - ..._lambda_usd: the evaluation's CPU time, measured on a quarter of the builder
    suite's population (the same 21 reference segments) and scaled linearly to 1 M
    events (`builder_scaling_ratio` shows it is linear), at the builder's 1769 MB, one
    invocation a shard; and the plan, publish and export invocations' requests. Not
    measured: turning the scan's pages into records, the wait for them, and the other
    stages' durations.
  - ..._scan_usd: the parallel scan's read units: pages of up to 1 MB of events of the
    size the pixel stores, each page's bytes over 4 KB rounded up, halved (eventually
    consistent).
  - ..._membership_usd: `CHANGED_FRACTION` of the visitors changing segments: each a
    conditional PutItem (one write unit up to 1 KB) and a suppression check in a
    BatchGetItem (half a read unit).
  - ..._s3_usd: the S3 requests of a rebuild run stage by stage, as the state machine
    runs it, counted on moto (the definitions of segments/ and their partners' exports);
    PUT, COPY, POST and LIST at one price, GET and the rest at another, DELETE free.
  - ..._stepfunctions_usd: the state transitions of one execution: Plan, Published?,
    Shards, one Shard each, Publish, Export.

- evaluator_cost_per_million_hits_usd: what real-time membership (DESIGN.md, "Freshness")
  adds to a million hits: the events table's stream invokes the evaluator with batches of
  up to `BATCH_SIZE` records (infra/evaluator.py; taken full, i.e. at least that many hits
  in the batching window of 1 s, so a million hits are 1 M / 100 = 10,000 invocations),
  and it re-evaluates each batch's visitors. Measured by invoking the evaluator's handler
  on moto with `EVALUATOR_BATCHES` stream batches of 100 hits of 100 returning visitors,
  whose histories run evenly from 10 to 100 events (the pixel's items, over 40 days), each
  batch a new hit of the same visitors, after a batch of their previous hits (an hour
  earlier) that warms the container (its plan read and compiled) and leaves each
  visitor's item as the evaluator would have. The mean batch's share per hit of
  - ..._lambda_usd: one invocation, and the batch's CPU time here (moto's own work in
    answering left out: in AWS that is DynamoDB's and S3's) scaled to the evaluator's
    memory (`MEMORY_MB` of infra/evaluator.py) as for the pixel, billed per started ms.
    Not measured: the wait for DynamoDB's answers (one Query per visitor, one after the
    other, a few ms each), which Lambda bills too.
  - ..._dynamodb_usd: the read and write units of every request, computed from each
    request and the sizes of the items it read or wrote (`UsageMeter`, common.py): the
    catalog's GetItem, the suppression and membership BatchGetItems (half a unit per key,
    found or not), each visitor's Query (its events' bytes over 4 KB), the membership
    writes of visitors whose item changed, the due index's BatchWriteItem (one unit an
    entry). Reading the stream costs nothing: Lambda's reads of a DynamoDB stream are free.
  - ..._s3_usd: the S3 requests (none once the container has read the published plan).
  - ..._logs_usd and ..._xray_usd: as for the pixel, per invocation (X-Ray's 5 %: at under
    one invocation a second, below ~100 hits a second, Lambda's one-a-second reservoir
    traces each, up to $0.05 more per million hits).

Supporting figures: cost_hit_lambda_billed_ms, cost_hit_answer_bytes, cost_hit_log_bytes,
build_cost_eval_seconds_per_million_events, build_cost_s3_put_requests,
build_cost_s3_get_requests, evaluator_batch_billed_ms, evaluator_read_units_per_hit and
evaluator_write_units_per_hit.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import http
import importlib
import io
import json
import math
import os
import random
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bench import aws_prices as price
from tests.bench.common import BASE_ENV, RequestCounter, Usage, UsageMeter, median_seconds, quiet_stdout
from tests.conftest import ROOT

# infra/ingest.py and infra/builder.py (tests/infra pins both).
INGEST_MEMORY_MB = 256
BUILDER_MEMORY_MB = 1769
# Lambda gives a function the CPU share of its memory: one full vCPU at 1769 MB.
FULL_VCPU_MB = 1769
# Of a DynamoDB item's size, as stored (not as read or written).
ITEM_OVERHEAD_BYTES = 100
# A Scan page stops at 1 MB of items read.
SCAN_PAGE_BYTES = 2**20
# Lambda records a trace of 1 invocation a second and 5 % of the others; at steady
# traffic the one a second is negligible.
XRAY_SAMPLED = 0.05
# Assumed: the share of visitors whose segments change from one build to the next.
CHANGED_FRACTION = 0.05
AVERAGE_MONTH_DAYS = 365 / 12
BUILD_EVENTS = 1_000_000
# Stream batches measured (after one that warms the container), and the shortest and
# longest history of their visitors.
EVALUATOR_BATCHES = 3
HISTORY_EVENTS = (10, 100)

# Headers API Gateway and CloudFront add to the handler's answer, as an example answer
# carries them (HTTP/1.1 text; HTTP/2 compresses them, so this is on the high side).
ADDED_HEADERS = (
    "Content-Length: 43\r\n"
    "Connection: keep-alive\r\n"
    "Date: Sat, 28 Nov 2026 09:15:30 GMT\r\n"
    "apigw-requestid: CQ3kHgZ5IAMEbYw=\r\n"
    "X-Cache: Miss from cloudfront\r\n"
    "Via: 1.1 0f3c7a1e8b2d4c6f9a0b1c2d3e4f5a6b.cloudfront.net (CloudFront)\r\n"
    "X-Amz-Cf-Pop: LHR61-P3\r\n"
    "X-Amz-Cf-Id: k3Xq9oV6n2Yw1bE8tR4uZp0sLmJc7HdGfA5iQxNyWvKe2TzUaSbC3g==\r\n"
    "\r\n"
)
# The lines Lambda itself logs for each invocation (text format, active tracing).
PLATFORM_LOG_LINES = (
    "START RequestId: 8f5e0c3a-6a1b-4f0e-9c7d-2b3a4c5d6e7f Version: $LATEST\n"
    "END RequestId: 8f5e0c3a-6a1b-4f0e-9c7d-2b3a4c5d6e7f\n"
    "REPORT RequestId: 8f5e0c3a-6a1b-4f0e-9c7d-2b3a4c5d6e7f\tDuration: 9.87 ms\tBilled Duration: 10 ms\t"
    "Memory Size: 256 MB\tMax Memory Used: 92 MB\t\n"
    "XRAY TraceId: 1-6749c2a0-1b2c3d4e5f60718293a4b5c6\tSegmentId: 3c4d5e6f7a8b9c0d\tSampled: true\t\n"
)
# S3's cheaper request class is "GET, SELECT and all other requests"; these are billed
# as PUT, or not at all.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})


# --- the arithmetic: plain values in, dollars out (tests/unit/test_bench_cost.py)


def on_lambda_seconds(seconds_on_one_core: float, memory_mb: int) -> float:
    """How long CPU-bound work timed on one full core takes at `memory_mb`."""
    return seconds_on_one_core * max(1.0, FULL_VCPU_MB / memory_mb)


def lambda_invocation_usd(seconds: float, memory_mb: int) -> float:
    """One invocation lasting `seconds` at `memory_mb`: its request, and its duration
    billed per started millisecond."""
    billed_ms = math.ceil(round(seconds * 1000, 6))
    return price.LAMBDA_REQUEST + billed_ms / 1000 * memory_mb / 1024 * price.LAMBDA_GB_SECOND


def write_units(item_bytes: int) -> int:
    """Write request units of one (non-transactional) write: one per 1 KB started."""
    return max(1, math.ceil(item_bytes / 1024))


def scan_read_units(items: int, item_bytes: int) -> float:
    """Read request units of an eventually consistent scan: each page's bytes (up to
    1 MB) over 4 KB, rounded up, halved."""
    per_page = max(1, SCAN_PAGE_BYTES // item_bytes)
    full_pages, rest = divmod(items, per_page)
    units = full_pages * math.ceil(per_page * item_bytes / 4096) + math.ceil(rest * item_bytes / 4096)
    return units / 2


def dynamodb_usd(read_units: float, write_units: float) -> float:
    return read_units * price.DYNAMODB_READ_REQUEST_UNIT + write_units * price.DYNAMODB_WRITE_REQUEST_UNIT


def s3_request_classes(requests: Mapping[str, float]) -> tuple[float, float]:
    """(PUT-class, GET-class) requests of {S3 operation: requests}; DELETE is free."""
    put = sum(n for operation, n in requests.items() if operation in S3_PUT_CLASS)
    get = sum(n for operation, n in requests.items() if operation not in S3_PUT_CLASS and operation not in S3_FREE)
    return put, get


def s3_usd(requests: Mapping[str, float]) -> float:
    put, get = s3_request_classes(requests)
    return put * price.S3_PUT_REQUEST + get * price.S3_GET_REQUEST


def membership_change_usd(changes: float) -> float:
    """A build's writes for visitors whose membership changed: a conditional PutItem each
    (one write unit: the item is under 1 KB) and a suppression check (half a read unit)."""
    return dynamodb_usd(changes * 0.5, changes * write_units(1))


@dataclass(frozen=True)
class Hit:
    """What one pixel hit uses, as measured."""

    handler_seconds: float  # its time through the handler here, on one core
    write_units: float
    read_units: float
    stored_item_bytes: int
    answer_bytes: int  # what the browser receives
    log_bytes: int  # what goes to CloudWatch Logs


def hit_usd(hit: Hit, *, retention_days: int, memory_mb: int = INGEST_MEMORY_MB) -> dict[str, float]:
    """Dollars of one hit, by component."""
    retention_months = retention_days / AVERAGE_MONTH_DAYS
    return {
        "lambda": lambda_invocation_usd(on_lambda_seconds(hit.handler_seconds, memory_mb), memory_mb),
        "dynamodb": hit.write_units * price.DYNAMODB_WRITE_REQUEST_UNIT
        + hit.read_units * price.DYNAMODB_READ_REQUEST_UNIT,
        "storage": (hit.stored_item_bytes + ITEM_OVERHEAD_BYTES)
        / price.GB
        * retention_months
        * price.DYNAMODB_STORAGE_GB_MONTH,
        "api": price.HTTP_API_REQUEST,
        "cloudfront": price.CLOUDFRONT_HTTPS_REQUEST + hit.answer_bytes / price.GB * price.CLOUDFRONT_TRANSFER_OUT_GB,
        "logs": hit.log_bytes / price.GB * price.CLOUDWATCH_LOGS_INGESTED_GB,
        "xray": XRAY_SAMPLED * price.XRAY_TRACE_RECORDED,
    }


@dataclass(frozen=True)
class Build:
    """What one build uses, as measured and assumed."""

    events: int
    visitors: int
    event_item_bytes: int
    eval_seconds: float  # evaluating every visitor, on one core here
    shards: int
    s3_put_requests: int
    s3_get_requests: int
    changed_fraction: float = CHANGED_FRACTION


def state_transitions(shards: int) -> int:
    """Plan, Published?, Shards, one Shard each, Publish, Export (infra/builder.py)."""
    return 5 + shards


def build_usd(build: Build, *, memory_mb: int = BUILDER_MEMORY_MB) -> dict[str, float]:
    """Dollars of one build, by component."""
    shard_seconds = on_lambda_seconds(build.eval_seconds, memory_mb) / build.shards
    changed = round(build.visitors * build.changed_fraction)
    return {
        # a shard's invocation each; plan, publish and export: their requests only
        "lambda": build.shards * lambda_invocation_usd(shard_seconds, memory_mb) + 3 * price.LAMBDA_REQUEST,
        "scan": scan_read_units(build.events, build.event_item_bytes) * price.DYNAMODB_READ_REQUEST_UNIT,
        # a membership item (id, segment ids and the previous ones, build id, expiries)
        # is well under 1 KB
        "membership": membership_change_usd(changed),
        "s3": build.s3_put_requests * price.S3_PUT_REQUEST + build.s3_get_requests * price.S3_GET_REQUEST,
        "stepfunctions": state_transitions(build.shards) * price.STEP_FUNCTIONS_STATE_TRANSITION,
    }


@dataclass(frozen=True)
class EvaluatorBatch:
    """What one invocation of the stream evaluator uses, as measured."""

    hits: int  # stream records in the batch
    function_seconds: float  # its CPU time here, on one core, moto's answering left out
    read_units: float
    write_units: float
    s3_put_requests: float
    s3_get_requests: float
    log_bytes: int


def evaluator_usd(batch: EvaluatorBatch, *, memory_mb: int) -> dict[str, float]:
    """Dollars of one hit's share of an evaluator invocation, by component."""
    per_invocation = {
        "lambda": lambda_invocation_usd(on_lambda_seconds(batch.function_seconds, memory_mb), memory_mb),
        "dynamodb": dynamodb_usd(batch.read_units, batch.write_units),
        "s3": batch.s3_put_requests * price.S3_PUT_REQUEST + batch.s3_get_requests * price.S3_GET_REQUEST,
        "logs": batch.log_bytes / price.GB * price.CLOUDWATCH_LOGS_INGESTED_GB,
        "xray": XRAY_SAMPLED * price.XRAY_TRACE_RECORDED,
    }
    return {component: usd / batch.hits for component, usd in per_invocation.items()}


def answer_bytes(answer: dict[str, Any]) -> int:
    """The bytes of an HTTP answer as the browser receives it: the handler's status,
    headers, cookies and body, and the headers added on the way."""
    head = f"HTTP/1.1 {answer['statusCode']} {http.HTTPStatus(answer['statusCode']).phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in answer.get("headers", {}).items())
    head += "".join(f"Set-Cookie: {cookie}\r\n" for cookie in answer.get("cookies", []))
    body = answer.get("body") or ""
    raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    return len((head + ADDED_HEADERS).encode()) + len(raw)


# --- the measurements


def _context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def measure_hit(repeat: int = 300, hits: int = 50) -> Hit:
    from tests.bench.bench_ingest import pixel_harness, stored_event
    from tests.conftest import dynamodb_item_bytes

    with pixel_harness() as pixel:
        with quiet_stdout():
            seconds = median_seconds(pixel.hit, repeat=repeat)
            pixel.counter.calls.clear()
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                answers = [pixel.hit() for _ in range(hits)]
        calls = pixel.counter.calls
        item_bytes = dynamodb_item_bytes(stored_event(pixel))
    writes = sum(1 for c in calls if c in ("PutItem", "BatchWriteItem")) / hits
    reads = sum(1 for c in calls if c in ("GetItem", "BatchGetItem")) / hits
    return Hit(
        handler_seconds=seconds,
        write_units=writes * write_units(item_bytes),
        read_units=reads * 0.5,  # eventually consistent, of an item under 4 KB
        stored_item_bytes=item_bytes,
        answer_bytes=answer_bytes(answers[-1]),
        log_bytes=len(output.getvalue().encode()) // hits + len(PLATFORM_LOG_LINES.encode()),
    )


def measure_evaluation(repeat: int = 3) -> tuple[float, float]:
    """CPU seconds per event of the builder's evaluation, and visitors per event, on a
    quarter of the builder suite's population (its harness)."""
    from tests.bench.bench_builder import EVENTS_PER_VISITOR, VISITORS, builder_evaluation, cpu_seconds
    from tests.reference.population import generate

    gc.disable()  # as the builder suite: the collector would only rescan the records
    try:
        population = generate(3, VISITORS // 4, events_per_visitor=EVENTS_PER_VISITOR)
        evaluation = builder_evaluation(population)
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()
    try:
        seconds = min(cpu_seconds(evaluation) for _ in range(repeat))
    finally:
        gc.unfreeze()
    return seconds / population.event_count, len(population.visitor_ids) / population.event_count


def count_build_s3_requests(shards: int) -> dict[str, int]:
    """S3 requests of a rebuild (the second of two builds an hour apart, so it writes
    membership changes against the first), run stage by stage through the builder
    function as the state machine runs it, on moto."""
    from moto import mock_aws

    from tests.bench.bench_shard import NOW, GeneratedEvents

    with mock_aws():
        from dmp.local import create_resources
        from functions.core.segments import load_definitions
        from functions.core.times import iso
        from tests.conftest import SEGMENTS_DIR

        os.environ.update(BASE_ENV)
        target = create_resources(None, region=price.REGION)
        os.environ.update(target.environment())
        builder = importlib.reload(importlib.import_module("functions.builder.handler"))
        stores = builder.stores
        for item in GeneratedEvents(300, 5).scan():
            stores.events.client.put_item(TableName=target.events_table, Item=item)
        for definition in load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}):
            stores.bucket.put_definition(
                definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            )

        def execution(at: str) -> None:
            plan = builder.run({"stage": "plan", "time": at, "shards": shards})
            for shard in plan.shards:
                builder.run({"stage": "shard", "build_id": plan.build_id, "shard": shard})
            builder.run({"stage": "publish", "build_id": plan.build_id})
            builder.run({"stage": "export", "build_id": plan.build_id})

        counter = RequestCounter()
        with quiet_stdout():
            execution(iso(NOW))
            counter.attach(stores.bucket.client, "s3")
            execution(iso(NOW + timedelta(hours=1)))
    return {
        "put": sum(1 for call in counter.calls if call in S3_PUT_CLASS),
        "get": sum(1 for call in counter.calls if call not in S3_PUT_CLASS and call not in S3_FREE),
    }


@dataclass(frozen=True)
class StackSettings:
    """The stack's own constants, imported from infra/ rather than copied."""

    evaluator_memory_mb: int  # the sweep's too
    evaluator_batch_size: int
    builder_memory_mb: int
    sweep_interval: timedelta


def stack_settings() -> StackSettings:
    """infra/evaluator.py's and infra/builder.py's settings. Importing infra starts the
    CDK's node runtime (seconds), so only a suite that prices them does."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # as the Makefile does
    import infra.builder
    import infra.evaluator

    return StackSettings(
        evaluator_memory_mb=infra.evaluator.MEMORY_MB,
        evaluator_batch_size=infra.evaluator.BATCH_SIZE,
        builder_memory_mb=infra.builder.MEMORY_MB,
        sweep_interval=rate_interval(infra.evaluator.SWEEP_SCHEDULE.expression_string),
    )


def rate_interval(schedule: str) -> timedelta:
    """The interval of a `rate(...)` schedule (as infra/settings.py accepts them)."""
    from infra.settings import RATE, RATE_UNITS

    match = RATE.match(schedule)
    if match is None:
        raise ValueError(f"not a rate(...) schedule: {schedule!r}")
    return int(match["value"]) * RATE_UNITS[match["unit"]]


def visitor_history(visitor_id: str, events: int, now_ms: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """`events` page views of a returning visitor over the 40 days before `now_ms`, as the
    pixel stores them (the items of bench_shard.GeneratedEvents)."""
    from tests.bench.bench_shard import CITIES, PAGES, page_view_item

    place = CITIES[rng.randrange(len(CITIES))]
    for index in range(events):
        ts = now_ms - rng.randrange(3_600_000, 40 * 86_400_000)
        page = PAGES[rng.randrange(len(PAGES))]
        yield page_view_item(visitor_id, index, ts, page, place, rng.choice(("mobile", "desktop")))


def stream_event(items: list[dict[str, Any]], table_arn: str) -> dict[str, Any]:
    """Lambda's DynamoDB Streams event for new items (NEW_IMAGE, as infra/evaluator.py
    subscribes)."""
    return {
        "Records": [
            {
                "eventID": f"{number:032x}",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": price.REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(item["ts"]["N"]) // 1000,
                    "Keys": {"visitor_id": item["visitor_id"], "event_id": item["event_id"]},
                    "NewImage": item,
                    "SequenceNumber": f"{number:021d}",
                    "SizeBytes": len(json.dumps(item)),
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": f"{table_arn}/stream/2026-11-28T00:00:00.000",
            }
            for number, item in enumerate(items)
        ]
    }


def measure_evaluator(batch_size: int, batches: int = EVALUATOR_BATCHES) -> EvaluatorBatch:
    """The evaluator's handler on stream batches of `batch_size` hits of returning
    visitors, on moto: the mean batch (median CPU time) of `batches`, each a new hit of
    the same visitors, after one (their previous hits, an hour earlier) that warms the
    container. The same visitors each time: moto's Query sorts the whole table, so a
    table of a few thousand items keeps the suite to minutes."""
    import time

    from moto import mock_aws

    from tests.conftest import SEGMENTS_DIR, FakeContext

    with mock_aws():
        from dmp.local import create_resources
        from functions.builder.build import build
        from functions.core.hits import Geo, TrackedEvent
        from functions.core.segments import load_definitions
        from functions.core.storage.events import EventStore

        os.environ.update(BASE_ENV)
        target = create_resources(None, region=price.REGION)
        os.environ.update(target.environment())
        stores = target.build_stores()
        for definition in load_definitions({str(p): p.read_text() for p in SEGMENTS_DIR.glob("*.yaml")}):
            stores.bucket.put_definition(  # type: ignore[attr-defined]
                definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        now_ms = int(time.time() * 1000)
        with quiet_stdout():  # a published build to evaluate against (of no events: its plan is what counts)
            build(stores, datetime.fromtimestamp(now_ms // 1000 - 7200, UTC), retention_seconds=90 * 86_400)
        events = EventStore(target.events_table)
        rng = random.Random(11)
        low, high = HISTORY_EVENTS
        visitors = [f"visitor-{number:04d}" for number in range(batch_size)]
        items = [
            item
            for number, visitor_id in enumerate(visitors)
            for item in visitor_history(
                visitor_id, low + round((high - low) * number / max(1, batch_size - 1)), now_ms - 3_600_000, rng
            )
        ]
        for start in range(0, len(items), 25):
            requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            events.client.batch_write_item(RequestItems={target.events_table: requests})
        arn = events.client.describe_table(TableName=target.events_table)["Table"]["TableArn"]

        samples: list[tuple[float, Usage, int]] = []
        with UsageMeter() as meter:
            meter.watch_new_clients()
            handler = importlib.reload(importlib.import_module("functions.evaluator.handler"))
            for batch in range(batches + 1):
                hit_ms = int(time.time() * 1000) - (3_600_000 if batch == 0 else 0)
                hits = [
                    TrackedEvent(
                        visitor_id=visitor_id,
                        event_id=f"{hit_ms:013d}:{number:04x}",
                        ts_ms=hit_ms,
                        name="page_view",
                        url="https://shop.example/pricing",
                        geo=Geo(country="GB", region="ENG", city="London"),
                        device="mobile",
                    )
                    for number, visitor_id in enumerate(visitors)
                ]
                with meter.paused():
                    events.put_many(hits, 90 * 86_400)
                event = stream_event([events.to_item(hit, 90 * 86_400) for hit in hits], arn)
                output = io.StringIO()
                used, seconds = meter.usage(), meter.function_seconds()
                with contextlib.redirect_stdout(output):
                    handler.handler(event, FakeContext())
                samples.append((meter.function_seconds() - seconds, meter.usage() - used, len(output.getvalue())))
    measured = samples[1:]  # the first warmed the container
    usage = sum((u for _, u, _ in measured), Usage()) * (1 / len(measured))
    put, get = s3_request_classes(usage.requests_of("s3"))
    return EvaluatorBatch(
        hits=batch_size,
        function_seconds=statistics.median(seconds for seconds, _, _ in measured),
        read_units=usage.total_read_units,
        write_units=usage.total_write_units,
        s3_put_requests=put,
        s3_get_requests=get,
        log_bytes=round(statistics.mean(n for _, _, n in measured)) + len(PLATFORM_LOG_LINES.encode()),
    )


def run() -> dict[str, float]:
    context = _context()
    shards = int(context["build_shards"])
    results: dict[str, float] = {}

    hit = measure_hit()
    per_hit = hit_usd(hit, retention_days=int(context["retention_days"]))
    results["cost_per_million_hits_usd"] = sum(per_hit.values()) * 1e6
    for component, usd in per_hit.items():
        results[f"cost_per_million_hits_{component}_usd"] = usd * 1e6
    results["cost_hit_lambda_billed_ms"] = math.ceil(
        round(on_lambda_seconds(hit.handler_seconds, INGEST_MEMORY_MB) * 1000, 6)
    )
    results["cost_hit_answer_bytes"] = hit.answer_bytes
    results["cost_hit_log_bytes"] = hit.log_bytes

    seconds_per_event, visitors_per_event = measure_evaluation()
    s3 = count_build_s3_requests(shards)
    build = Build(
        events=BUILD_EVENTS,
        visitors=round(BUILD_EVENTS * visitors_per_event),
        event_item_bytes=hit.stored_item_bytes,
        eval_seconds=seconds_per_event * BUILD_EVENTS,
        shards=shards,
        s3_put_requests=s3["put"],
        s3_get_requests=s3["get"],
    )
    per_build = build_usd(build)
    scale = 1e6 / build.events
    results["build_cost_per_million_events_usd"] = sum(per_build.values()) * scale
    for component, usd in per_build.items():
        results[f"build_cost_per_million_events_{component}_usd"] = usd * scale
    results["build_cost_eval_seconds_per_million_events"] = seconds_per_event * 1e6
    results["build_cost_s3_put_requests"] = s3["put"]
    results["build_cost_s3_get_requests"] = s3["get"]

    stack = stack_settings()
    batch = measure_evaluator(stack.evaluator_batch_size)
    per_evaluated_hit = evaluator_usd(batch, memory_mb=stack.evaluator_memory_mb)
    results["evaluator_cost_per_million_hits_usd"] = sum(per_evaluated_hit.values()) * 1e6
    for component, usd in per_evaluated_hit.items():
        results[f"evaluator_cost_per_million_hits_{component}_usd"] = usd * 1e6
    results["evaluator_batch_billed_ms"] = math.ceil(
        round(on_lambda_seconds(batch.function_seconds, stack.evaluator_memory_mb) * 1000, 6)
    )
    results["evaluator_read_units_per_hit"] = batch.read_units / batch.hits
    results["evaluator_write_units_per_hit"] = batch.write_units / batch.hits
    return results
