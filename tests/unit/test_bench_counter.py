"""The benchmarks' request counter (tests/bench/common.py): with a table named, it counts
only that table's requests, though the client is shared with another table."""

from __future__ import annotations

import boto3
from moto import mock_aws

from tests.bench.common import RequestCounter


def _table(client: object, name: str) -> None:
    client.create_table(  # type: ignore[attr-defined]
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_a_counter_for_one_table_leaves_the_other_tables_requests_out():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "membership")
        _table(client, "due")
        every, membership = RequestCounter(), RequestCounter(table="membership")
        every.attach(client)
        membership.attach(client)
        client.put_item(TableName="membership", Item={"k": {"S": "v1"}})
        client.batch_write_item(RequestItems={"due": [{"PutRequest": {"Item": {"k": {"S": "v1"}}}}]})
        client.batch_write_item(RequestItems={"membership": [{"PutRequest": {"Item": {"k": {"S": "v2"}}}}]})
        assert every.calls == ["PutItem", "BatchWriteItem", "BatchWriteItem"]
        assert membership.calls == ["PutItem", "BatchWriteItem"]
