"""The benchmarks' `UsageMeter` (tests/bench/common.py) on moto: it bills DynamoDB's units as
DynamoDB does, whatever the request returns, so the cost figures built on it are AWS's
bill and not a count of requests."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.core.storage.due import DueStore
from tests.bench.common import UsageMeter, item_bytes


@pytest.fixture
def dynamodb(aws: Any) -> Any:
    return boto3.client("dynamodb")


def big_event(visitor_id: str, number: int) -> dict[str, Any]:
    """An events-table item of about 1.5 KB."""
    return {
        "visitor_id": {"S": visitor_id},
        "event_id": {"S": f"{number:04d}"},
        "ts": {"N": "1717243230000"},
        "url": {"S": "https://shop.example/" + "x" * 1500},
    }


def test_a_query_is_billed_on_the_whole_items_it_reads_not_on_its_projection(aws, dynamodb):
    # GIVEN a visitor with three events of ~1.5 KB (4.5 KB in all)
    for number in range(3):
        dynamodb.put_item(TableName=aws.events_table, Item=big_event("v1", number))
    size = 3 * item_bytes(big_event("v1", 0))
    assert 4096 < size <= 8192
    # WHEN a query returns only their keys
    with UsageMeter() as meter:
        meter.watch(dynamodb)
        dynamodb.query(
            TableName=aws.events_table,
            KeyConditionExpression="visitor_id = :v",
            ExpressionAttributeValues={":v": {"S": "v1"}},
            ProjectionExpression="event_id",
        )
    # THEN it is billed for the 4.5 KB it read, one page: two 4 KB units, halved
    assert meter.usage().read_units == {aws.events_table: 1.0}


def test_a_batch_get_costs_half_a_unit_for_every_key_found_or_not(aws, dynamodb):
    # GIVEN no suppressed visitor
    # WHEN 100 visitors are checked in one BatchGetItem
    with UsageMeter() as meter:
        meter.watch(dynamodb)
        dynamodb.batch_get_item(
            RequestItems={aws.suppression_table: {"Keys": [{"visitor_id": {"S": f"v{n}"}} for n in range(100)]}}
        )
    # THEN it costs 50 units though it found nothing, in one request
    usage = meter.usage()
    assert usage.read_units == {aws.suppression_table: 50.0}
    assert usage.requests == {"dynamodb:BatchGetItem": 1}


def test_a_put_is_billed_on_the_larger_of_the_item_it_replaces_and_the_new_one(aws, dynamodb):
    # GIVEN a stored item of ~1.5 KB
    dynamodb.put_item(TableName=aws.events_table, Item=big_event("v1", 0))
    small = {"visitor_id": {"S": "v1"}, "event_id": {"S": "0000"}}
    with UsageMeter() as meter:
        meter.watch(dynamodb)
        # WHEN a small item replaces it, then a refused conditional write tries again
        dynamodb.put_item(TableName=aws.events_table, Item=small)
        dynamodb.put_item(TableName=aws.events_table, Item=big_event("v1", 0))
        with pytest.raises(ClientError):
            dynamodb.put_item(
                TableName=aws.events_table, Item=small, ConditionExpression="attribute_not_exists(visitor_id)"
            )
    # THEN the replacement costs the old item's 2 units, the big one 2, and the refused one 2 as well
    assert meter.usage().write_units == {aws.events_table: 6.0}


def test_the_due_index_pays_a_unit_an_entry_and_a_strongly_consistent_checkpoint_read(aws, dynamodb):
    due = DueStore(aws.due_table, dynamodb)
    with UsageMeter() as meter:
        meter.watch(dynamodb)
        # WHEN 30 visitors are filed (two BatchWriteItems) and the checkpoint is read
        due.put_due({f"v{n}": 1_717_243_230_000 for n in range(30)})
        due.swept_minute()
        # AND an empty minute-bucket is queried
        due.visitors_due(28_620_720, 0)
    # THEN each entry is a write unit, the consistent read of a missing item one read unit,
    # the empty query half of one
    usage = meter.usage()
    assert usage.write_units == {aws.due_table: 30.0}
    assert usage.read_units == {aws.due_table: 1.5}
    assert usage.requests == {"dynamodb:BatchWriteItem": 2, "dynamodb:GetItem": 1, "dynamodb:Query": 1}


def test_the_meter_counts_nothing_while_paused_or_after_it_is_closed(aws, dynamodb):
    with UsageMeter() as meter:
        meter.watch(dynamodb)
        with meter.paused():
            dynamodb.put_item(TableName=aws.events_table, Item=big_event("v1", 0))
    dynamodb.put_item(TableName=aws.events_table, Item=big_event("v1", 1))
    assert meter.usage().write_units == {} and meter.usage().requests == {}
