"""Lookup benchmarks (issue: a lookup that fits a real-time-bidding budget).

- lookup_overhead_ratio: median lookup of one visitor through the handler / median bare
  get_item of the same key on the same moto table.
- lookup_cold_import_ratio: fresh-process import of the lookup handler / `import boto3`
  plus creating a DynamoDB client.
- reads_per_lookup, reads_per_batch_lookup: DynamoDB requests per single lookup and per
  batch of 100 visitors.
"""

from __future__ import annotations

import importlib
import json
import os

from tests.bench.common import BASE_ENV, RequestCounter, fresh_import_seconds, interleaved_medians, quiet_stdout
from tests.conftest import FakeContext, load_event

ENV = {"MEMBERSHIP_TABLE": "bench-membership", "SEGMENTS_BUCKET": "bench-segments", "CATALOG_REFRESH_SECONDS": "30"}
VISITORS = [f"bench-visitor-{i:05d}" for i in range(1000)]


def run(repeat: int = 300) -> dict[str, float]:
    from moto import mock_aws

    os.environ.update({**BASE_ENV, **ENV})
    results: dict[str, float] = {}
    with mock_aws():
        import boto3

        from dmp.local import create_table
        from functions.core.storage import Membership, MembershipStore, SegmentsBucket
        from functions.core.tables import MEMBERSHIP

        handler_module = importlib.reload(importlib.import_module("functions.lookup.handler"))
        client = handler_module.membership.client
        create_table(client, MEMBERSHIP, ENV["MEMBERSHIP_TABLE"])
        boto3.client("s3").create_bucket(Bucket=ENV["SEGMENTS_BUCKET"])
        bucket = SegmentsBucket(ENV["SEGMENTS_BUCKET"])
        segments = [f"segment-{i}" for i in range(10)]
        manifest = {
            "build_id": "20261128T100000Z",
            "evaluated_at": "2026-11-28T10:00:00Z",
            "segments": [
                {"id": s, "name": s.title(), "description": "", "destinations": ["demo-dsp"], "size": 1, "files": []}
                for s in segments
            ],
        }
        bucket.put_json("builds/20261128T100000Z/manifest.json", manifest)
        bucket.put_json(
            "latest.json", {"build_id": "20261128T100000Z", "manifest": "builds/20261128T100000Z/manifest.json"}
        )
        MembershipStore(ENV["MEMBERSHIP_TABLE"], client).apply(
            dict.fromkeys(VISITORS, Membership(frozenset(segments[:3]))), "20261128T100000Z"
        )

        context = FakeContext()
        event = load_event("lookup_user_get")
        event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
        uid = VISITORS[7]
        event["path"] = f"/v1/users/{uid}/segments"
        event["pathParameters"] = {"uid": uid}
        key = {"visitor_id": {"S": uid}}

        def lookup() -> None:
            handler_module.handler(event, context)

        def bare_get() -> None:
            client.get_item(TableName=ENV["MEMBERSHIP_TABLE"], Key=key)

        counter = RequestCounter()
        counter.attach(client)
        with quiet_stdout():
            assert json.loads(handler_module.handler(event, context)["body"])["segments"]
            medians = interleaved_medians({"lookup": lookup, "get": bare_get}, repeat=repeat)
            counter.calls.clear()
            lookup()
            results["reads_per_lookup"] = len(counter.calls)
            batch = load_event("lookup_batch_post")
            batch["body"] = json.dumps({"uids": VISITORS[:100]})
            counter.calls.clear()
            answer = json.loads(handler_module.handler(batch, context)["body"])
            assert len(answer["results"]) == 100
            results["reads_per_batch_lookup"] = len(counter.calls)
        results["lookup_overhead_ratio"] = medians["lookup"] / medians["get"]

    env = {**BASE_ENV, **ENV}
    handler_import = fresh_import_seconds("import functions.lookup.handler", env)
    baseline = fresh_import_seconds("import boto3\nboto3.client('dynamodb')", env)
    results["lookup_cold_import_ratio"] = handler_import / baseline
    return results
