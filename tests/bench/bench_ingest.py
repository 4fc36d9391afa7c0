"""Ingest benchmarks (issue: ingestion cost and speed).

- ingest_overhead_ratio: median pixel hit through the handler / median bare put_item of
  the same item on the same moto table. The hit carries a client event id, so its write
  is conditional (stored once however often it is retried); moto spends ~0.1 ms parsing
  that condition, which DynamoDB evaluates for free, so the figure includes it.
- ingest_overhead_ratio_without_eid: the same for a hit without a client event id,
  written without a condition: the handler's own overhead alone.
- ingest_cold_import_ratio: fresh-process import of the ingest handler / `import boto3`
  plus creating a DynamoDB client.
- writes_per_hit and stored_item_bytes: DynamoDB write requests per accepted hit, and
  the size of the stored item (<= 1 KB is one write capacity unit).
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from tests.bench.common import BASE_ENV, RequestCounter, fresh_import_seconds, interleaved_medians, quiet_stdout
from tests.conftest import FakeContext, load_event

TABLE_ENV = {
    "EVENTS_TABLE": "bench-events",
    "RETENTION_DAYS": "90",
    "FALLBACK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-fallback",
}


def item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers as their text, roughly)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        ((kind, raw),) = value.items()
        if kind == "M":
            total += 3 + item_bytes(raw)
        else:
            total += len(str(raw).encode())
    return total


def run(repeat: int = 300) -> dict[str, float]:
    from moto import mock_aws

    os.environ.update({**BASE_ENV, **TABLE_ENV})
    results: dict[str, float] = {}
    with mock_aws():
        from dmp.local import create_table
        from functions.core.tables import EVENTS

        handler_module = importlib.import_module("functions.ingest.handler")
        handler_module = importlib.reload(handler_module)
        client = handler_module.events.client
        create_table(client, EVENTS, TABLE_ENV["EVENTS_TABLE"])
        counter = RequestCounter()
        counter.attach(client)

        context = FakeContext()
        event = load_event("pixel_get")
        event["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
        sequence = iter(range(10**9))

        def pixel_hit() -> None:
            event["rawQueryString"] = f"e=page_view&url=https%3A%2F%2Fshop.example%2Fpricing&eid=b{next(sequence)}"
            handler_module.handler(event, context)

        def pixel_hit_without_eid() -> None:
            event["rawQueryString"] = "e=page_view&url=https%3A%2F%2Fshop.example%2Fpricing"
            handler_module.handler(event, context)

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

        def bare_put() -> None:
            item["event_id"] = {"S": f"eid:p{next(sequence)}"}
            client.put_item(TableName=TABLE_ENV["EVENTS_TABLE"], Item=item)

        with quiet_stdout():
            medians = interleaved_medians(
                {"hit": pixel_hit, "hit_without_eid": pixel_hit_without_eid, "put": bare_put}, repeat=repeat
            )
            counter.calls.clear()
            for _ in range(50):
                pixel_hit()
        results["ingest_overhead_ratio"] = medians["hit"] / medians["put"]
        results["ingest_overhead_ratio_without_eid"] = medians["hit_without_eid"] / medians["put"]
        results["writes_per_hit"] = sum(1 for c in counter.calls if c in ("PutItem", "BatchWriteItem")) / 50
        stored = client.scan(TableName=TABLE_ENV["EVENTS_TABLE"], Limit=1)["Items"][0]
        results["stored_item_bytes"] = item_bytes(stored)
        json.dumps(stored)

    env = {**BASE_ENV, **TABLE_ENV}
    handler_import = fresh_import_seconds("import functions.ingest.handler", env)
    baseline = fresh_import_seconds("import boto3\nboto3.client('dynamodb')", env)
    results["ingest_cold_import_ratio"] = handler_import / baseline
    return results
