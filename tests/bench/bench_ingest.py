"""Ingest benchmarks (issue: ingestion cost and speed).

- ingest_overhead_ratio: median pixel hit of a returning visitor through the handler /
  median of the same DynamoDB requests made bare on the same moto tables: the visitor's
  suppression-list read and the put_item of the same item. The hit carries a client
  event id (its key, so a retry is stored once).
- ingest_cold_import_ratio: fresh-process import of the ingest handler / `import boto3`
  plus creating a DynamoDB client.
- ingest_cold_start_ratio: an on-demand cold start as a page view meets it: in a fresh
  process, importing the handler and storing one pixel hit (user-agent parsing and the
  crawler list included) / `import boto3`, creating a DynamoDB client, one `get_item` of
  the suppression list and one `put_item` of the same item. Both sides talk to the same
  moto server over HTTP.
- writes_per_hit, reads_per_hit and stored_item_bytes: DynamoDB write and read requests
  per accepted hit of a returning visitor (the read: is it suppressed?), and the size of
  the stored item (<= 1 KB is one write capacity unit).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.bench.common import (
    BASE_ENV,
    LAMBDA_CONTEXT,
    RequestCounter,
    fresh_import_seconds,
    interleaved_medians,
    moto_server,
    quiet_stdout,
)
from tests.conftest import FakeContext, dynamodb_item_bytes, load_event

TABLE_ENV = {
    "EVENTS_TABLE": "bench-events",
    # Written only when a visitor says no, which no benchmarked hit does.
    "MEMBERSHIP_TABLE": "bench-membership",
    # Read for every returning visitor's hit.
    "SUPPRESSION_TABLE": "bench-suppression",
    "RETENTION_DAYS": "90",
    "FALLBACK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-fallback",
}


@dataclass(frozen=True)
class PixelHarness:
    """A returning visitor's pixel hits through the ingest handler on moto tables, and the
    same DynamoDB requests made bare (the suppression-list read, the put_item of the item
    the handler stores), for the figures here and the cost suite's."""

    client: Any  # the handler's DynamoDB client, counted by `counter`
    counter: RequestCounter
    event: dict[str, Any]
    hit: Callable[[], dict[str, Any]]  # one hit through the handler; its answer
    bare: Callable[[], None]


@contextlib.contextmanager
def pixel_harness() -> Iterator[PixelHarness]:
    from moto import mock_aws

    os.environ.update({**BASE_ENV, **TABLE_ENV})
    with mock_aws():
        from dmp.local import create_table
        from functions.core.tables import EVENTS, SUPPRESSION

        handler_module = importlib.import_module("functions.ingest.handler")
        handler_module = importlib.reload(handler_module)
        client = handler_module.events.client
        create_table(client, EVENTS, TABLE_ENV["EVENTS_TABLE"])
        create_table(client, SUPPRESSION, TABLE_ENV["SUPPRESSION_TABLE"])
        counter = RequestCounter()
        counter.attach(client)

        context = FakeContext()
        event = load_event("pixel_get")
        event["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
        sequence = iter(range(10**9))

        def pixel_hit() -> dict[str, Any]:
            event["rawQueryString"] = f"e=page_view&url=https%3A%2F%2Fshop.example%2Fpricing&eid=b{next(sequence)}"
            answer: dict[str, Any] = handler_module.handler(event, context)
            return answer

        from functions.core.hits import Geo, validate_event

        sample = validate_event(
            visitor_id="5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e",
            ts_ms=event["requestContext"]["timeEpoch"],
            url="https://shop.example/pricing",
            eid="x",
            geo=Geo("GB", "ENG", "London"),
            device="desktop",
        )
        item = handler_module.events.to_item(sample, 90 * 86_400)

        def bare_requests() -> None:
            client.get_item(TableName=TABLE_ENV["SUPPRESSION_TABLE"], Key={"visitor_id": item["visitor_id"]})
            item["event_id"] = {"S": f"eid:p{next(sequence)}"}
            client.put_item(TableName=TABLE_ENV["EVENTS_TABLE"], Item=item)

        yield PixelHarness(client=client, counter=counter, event=event, hit=pixel_hit, bare=bare_requests)


def stored_event(pixel: PixelHarness) -> dict[str, Any]:
    """An event item as the handler stored it."""
    item: dict[str, Any] = pixel.client.scan(TableName=TABLE_ENV["EVENTS_TABLE"], Limit=1)["Items"][0]
    return item


def run(repeat: int = 300) -> dict[str, float]:
    results: dict[str, float] = {}
    with pixel_harness() as pixel:
        with quiet_stdout():
            medians = interleaved_medians({"hit": pixel.hit, "bare": pixel.bare}, repeat=repeat)
            pixel.counter.calls.clear()
            for _ in range(50):
                pixel.hit()
        calls = pixel.counter.calls
        results["ingest_overhead_ratio"] = medians["hit"] / medians["bare"]
        results["writes_per_hit"] = sum(1 for c in calls if c in ("PutItem", "BatchWriteItem")) / 50
        results["reads_per_hit"] = sum(1 for c in calls if c in ("GetItem", "BatchGetItem")) / 50
        stored = stored_event(pixel)
        results["stored_item_bytes"] = dynamodb_item_bytes(stored)
        event = pixel.event

    env = {**BASE_ENV, **TABLE_ENV}
    handler_import = fresh_import_seconds("import functions.ingest.handler", env)
    baseline = fresh_import_seconds("import boto3\nboto3.client('dynamodb')", env)
    results["ingest_cold_import_ratio"] = handler_import / baseline
    results["ingest_cold_start_ratio"] = cold_start_ratio(event, stored, env)
    return results


def cold_start_ratio(event: dict[str, Any], item: dict[str, Any], env: dict[str, str]) -> float:
    import boto3

    from dmp.local import create_table
    from functions.core.tables import EVENTS, SUPPRESSION

    table = TABLE_ENV["EVENTS_TABLE"]
    suppression = TABLE_ENV["SUPPRESSION_TABLE"]
    event = {**event, "rawQueryString": "e=page_view&url=https%3A%2F%2Fshop.example%2Fpricing"}
    with moto_server() as endpoint:
        client = boto3.client("dynamodb", endpoint_url=endpoint)
        create_table(client, EVENTS, table)
        create_table(client, SUPPRESSION, suppression)
        cold_env = {**env, "AWS_ENDPOINT_URL": endpoint}
        setup = f"import json\nEVENT = json.loads({json.dumps(event)!r})\nITEM = json.loads({json.dumps(item)!r})\n{LAMBDA_CONTEXT}"
        first_hit = fresh_import_seconds(
            "import functions.ingest.handler\n"
            "answer = functions.ingest.handler.handler(EVENT, Context())\n"
            "assert answer['headers']['Content-Type'] == 'image/gif', answer",
            cold_env,
            setup=setup,
        )
        hits = client.scan(TableName=table, Select="COUNT")["Count"]
        first_requests = fresh_import_seconds(
            "import boto3\nclient = boto3.client('dynamodb')\n"
            f"client.get_item(TableName={suppression!r}, Key={{'visitor_id': ITEM['visitor_id']}})\n"
            f"client.put_item(TableName={table!r}, Item=ITEM)",
            cold_env,
            setup=setup,
        )
        # Each fresh handler stored its hit (under a new event id); the puts, one item.
        assert hits > 1 and client.scan(TableName=table, Select="COUNT")["Count"] == hits + 1, hits
    return first_hit / first_requests
