"""Lookup benchmarks (issue: a lookup that fits a real-time-bidding budget).

- lookup_overhead_ratio: median lookup of one visitor through the handler / median bare
  get_item of the same key on the same moto table.
- partner_lookup_overhead_ratio: the same lookup by the partner's own id
  (`?id_type=partner`) through the handler / the two bare get_items it stands for (the
  ID map's item, then the membership's).
- lookup_cold_import_ratio: fresh-process import of the lookup handler / `import boto3`
  plus creating a DynamoDB client.
- lookup_cold_start_ratio: an on-demand cold start as a visitor's lookup meets it: in a
  fresh process, importing the handler and answering one `GET /v1/users/{uid}/segments`
  / `import boto3`, creating a DynamoDB client and one `get_item`. Both sides talk to the
  same seeded moto server over HTTP.
- reads_per_lookup, reads_per_batch_lookup: DynamoDB requests per single lookup and per
  batch of 100 visitors.
- reads_per_partner_lookup, reads_per_partner_batch: the same by the partner's own ids.
"""

from __future__ import annotations

import importlib
import json
import os
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
from tests.conftest import FakeContext, load_event

ENV = {
    "MEMBERSHIP_TABLE": "bench-membership",
    "CATALOG_TABLE": "bench-catalog",
    "ID_MAP_TABLE": "bench-id-map",
    "SEGMENTS_BUCKET": "bench-segments",
    "CATALOG_REFRESH_SECONDS": "30",
}
VISITORS = [f"bench-visitor-{i:05d}" for i in range(1000)]
# demo-dsp's own id of each visitor (ID sync).
PARTNER_UIDS = [f"dsp:{i:05d}.bench~uid" for i in range(len(VISITORS))]


def run(repeat: int = 300) -> dict[str, float]:
    from moto import mock_aws

    os.environ.update({**BASE_ENV, **ENV})
    results: dict[str, float] = {}
    with mock_aws():
        import boto3

        from dmp.local import create_table
        from functions.core.documents import Manifest
        from functions.core.storage.bucket import SegmentsBucket
        from functions.core.storage.catalog import CatalogStore
        from functions.core.storage.id_map import IdMapStore, map_key
        from functions.core.storage.membership import Membership, MembershipChange, MembershipStore
        from functions.core.tables import CATALOG, ID_MAP, MEMBERSHIP

        handler_module = importlib.reload(importlib.import_module("functions.lookup.handler"))
        client = handler_module.membership.client
        create_table(client, MEMBERSHIP, ENV["MEMBERSHIP_TABLE"])
        create_table(client, CATALOG, ENV["CATALOG_TABLE"])
        create_table(client, ID_MAP, ENV["ID_MAP_TABLE"])
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
        published = Manifest.from_json(manifest)
        bucket.put_manifest(published)
        bucket.put_latest(published.build_id)
        # As a publish leaves it: the lookup reads the catalog from this item, not from S3.
        assert CatalogStore(ENV["CATALOG_TABLE"], client).put(published)
        MembershipStore(ENV["MEMBERSHIP_TABLE"], client).apply(
            dict.fromkeys(VISITORS, MembershipChange(Membership(frozenset(segments[:3])), None)), "20261128T100000Z"
        )
        id_map = IdMapStore(ENV["ID_MAP_TABLE"], client)
        for partner_uid, visitor in zip(PARTNER_UIDS, VISITORS, strict=True):
            id_map.put("demo-dsp", partner_uid, visitor, at_s=0, expires_at=2**40)

        context = FakeContext()
        event = load_event("lookup_user_get")
        event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
        uid = VISITORS[7]
        event["path"] = f"/v1/users/{uid}/segments"
        event["pathParameters"] = {"uid": uid}
        key = {"visitor_id": {"S": uid}}
        partner_event = load_event("lookup_user_get")
        partner_event["path"] = f"/v1/users/{PARTNER_UIDS[7]}/segments"
        partner_event["pathParameters"] = {"uid": PARTNER_UIDS[7]}
        partner_event["queryStringParameters"] = {"id_type": "partner"}
        partner_event["multiValueQueryStringParameters"] = {"id_type": ["partner"]}
        partner_key = {ID_MAP.partition_key: {"S": map_key("demo-dsp", PARTNER_UIDS[7])}}

        def lookup() -> None:
            handler_module.handler(event, context)

        def bare_get() -> None:
            client.get_item(TableName=ENV["MEMBERSHIP_TABLE"], Key=key)

        def partner_lookup() -> None:
            handler_module.handler(partner_event, context)

        def bare_two_gets() -> None:
            client.get_item(TableName=ENV["ID_MAP_TABLE"], Key=partner_key)
            client.get_item(TableName=ENV["MEMBERSHIP_TABLE"], Key=key)

        counter = RequestCounter()
        counter.attach(client)
        with quiet_stdout():
            assert json.loads(handler_module.handler(event, context)["body"])["segments"]
            assert json.loads(handler_module.handler(partner_event, context)["body"])["segments"]
            medians = interleaved_medians(
                {"lookup": lookup, "get": bare_get, "partner_lookup": partner_lookup, "two_gets": bare_two_gets},
                repeat=repeat,
            )
            counter.calls.clear()
            lookup()
            results["reads_per_lookup"] = len(counter.calls)
            batch = load_event("lookup_batch_post")
            batch["body"] = json.dumps({"uids": VISITORS[:100]})
            counter.calls.clear()
            answer = json.loads(handler_module.handler(batch, context)["body"])
            assert len(answer["results"]) == 100
            results["reads_per_batch_lookup"] = len(counter.calls)
            counter.calls.clear()
            partner_lookup()
            results["reads_per_partner_lookup"] = len(counter.calls)
            batch["body"] = json.dumps({"uids": PARTNER_UIDS[:100], "id_type": "partner"})
            counter.calls.clear()
            answer = json.loads(handler_module.handler(batch, context)["body"])
            assert all(result["segments"] for result in answer["results"]) and len(answer["results"]) == 100
            results["reads_per_partner_batch"] = len(counter.calls)
        results["lookup_overhead_ratio"] = medians["lookup"] / medians["get"]
        results["partner_lookup_overhead_ratio"] = medians["partner_lookup"] / medians["two_gets"]
        item = client.get_item(TableName=ENV["MEMBERSHIP_TABLE"], Key=key)["Item"]

    env = {**BASE_ENV, **ENV}
    handler_import = fresh_import_seconds("import functions.lookup.handler", env)
    baseline = fresh_import_seconds("import boto3\nboto3.client('dynamodb')", env)
    results["lookup_cold_import_ratio"] = handler_import / baseline
    with moto_server() as endpoint:
        seed(endpoint, item, manifest)
        cold_env = {**env, "AWS_ENDPOINT_URL": endpoint}
        setup = f"import json\nEVENT = json.loads({json.dumps(event)!r})\nKEY = {key!r}\n{LAMBDA_CONTEXT}"
        first_lookup = fresh_import_seconds(
            "import functions.lookup.handler\n"
            "answer = functions.lookup.handler.handler(EVENT, Context())\n"
            "assert answer['statusCode'] == 200 and json.loads(answer['body'])['segments'], answer",
            cold_env,
            setup=setup,
        )
        table = ENV["MEMBERSHIP_TABLE"]
        first_get = fresh_import_seconds(
            f"import boto3\nassert boto3.client('dynamodb').get_item(TableName={table!r}, Key=KEY)['Item']",
            cold_env,
            setup=setup,
        )
    results["lookup_cold_start_ratio"] = first_lookup / first_get
    return results


def seed(endpoint: str, item: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The visitor's item and the published build (S3 and catalog item), on the server at `endpoint`."""
    import boto3

    from dmp.local import create_table
    from functions.core.documents import Manifest
    from functions.core.storage.bucket import SegmentsBucket
    from functions.core.storage.catalog import CatalogStore
    from functions.core.tables import CATALOG, MEMBERSHIP

    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
    create_table(dynamodb, MEMBERSHIP, ENV["MEMBERSHIP_TABLE"])
    dynamodb.put_item(TableName=ENV["MEMBERSHIP_TABLE"], Item=item)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=ENV["SEGMENTS_BUCKET"])
    bucket = SegmentsBucket(ENV["SEGMENTS_BUCKET"], s3)
    published = Manifest.from_json(manifest)
    bucket.put_manifest(published)
    bucket.put_latest(published.build_id)
    create_table(dynamodb, CATALOG, ENV["CATALOG_TABLE"])
    assert CatalogStore(ENV["CATALOG_TABLE"], dynamodb).put(published)
