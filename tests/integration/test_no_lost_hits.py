"""No lost hits: when DynamoDB throttles or fails, botocore retries (standard mode);
when its retries are spent the hit goes to the fallback queue, and replaying the queue
stores every accepted hit exactly once."""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.endpoint
import pytest
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.responses import DynamoHandler

from functions.core.storage.fallback import FallbackQueue
from tests.conftest import load_event


class Throttled(DynamodbException):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException",
            message="The level of configured provisioned throughput for the table was exceeded.",
        )


class Throttle:
    """The emulated DynamoDB answers the next `failures` calls of `operation` with a
    throttling error, as the real service does under pressure."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, operation: str, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        original = getattr(DynamoHandler, operation)

        def refuse(handler: Any) -> Any:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise Throttled()
            return original(handler)

        monkeypatch.setattr(DynamoHandler, operation, refuse)


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore's standard retry sleeps between attempts; the behaviour, not the wait, is under test
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _seconds: None)


@pytest.fixture
def ingest(load_handler: Any) -> Any:
    return load_handler("ingest")


def stored(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def queued(queue_url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return messages.get("Messages", [])


def pixel_event(eid: str | None) -> dict[str, Any]:
    event = load_event("pixel_get")
    event["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
    event["rawQueryString"] = "e=page_view&url=https%3A%2F%2Fshop.example%2F" + (f"&eid={eid}" if eid else "")
    return event


def test_a_throttled_write_is_retried_by_botocore_and_stored_once(ingest, aws, lambda_context, monkeypatch):
    throttle = Throttle(monkeypatch, "put_item", failures=2)
    ingest.handler(pixel_event("retry-1"), lambda_context)
    assert throttle.attempts == 3
    assert len(stored(aws.events_table)) == 1
    assert queued(aws.fallback_queue_url) == []


@pytest.mark.parametrize("eid", ["deferred-1", None])
def test_when_retries_are_spent_the_hit_is_deferred_and_replay_stores_it_once(
    ingest, load_handler, aws, lambda_context, eid, monkeypatch
):
    # GIVEN DynamoDB refuses every attempt of one hit
    outage = Throttle(monkeypatch, "put_item", failures=100)
    response = ingest.handler(pixel_event(eid), lambda_context)
    # THEN the browser still gets the GIF, nothing is in the table, the hit is in the queue
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "image/gif"
    assert stored(aws.events_table) == []
    (message,) = queued(aws.fallback_queue_url)
    outage.failures = 0  # DynamoDB is back
    # WHEN the replay function receives the message, twice (SQS delivers at least once)
    replay = load_handler("replay")
    sqs_event = {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:dmp-local-fallback",
                "awsRegion": "eu-west-1",
            }
        ]
    }
    assert replay.handler(sqs_event, lambda_context) == {"batchItemFailures": []}
    assert replay.handler(sqs_event, lambda_context) == {"batchItemFailures": []}
    # THEN the hit is stored exactly once, as the pixel would have stored it
    (item,) = stored(aws.events_table)
    assert item["visitor_id"]["S"] == "5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"
    assert item["url"]["S"] == "https://shop.example/"


def test_a_hit_deferred_before_its_visitor_opted_out_is_not_replayed(
    ingest, load_handler, aws, lambda_context, monkeypatch
):
    # GIVEN a hit deferred to the fallback queue while DynamoDB refused it
    outage = Throttle(monkeypatch, "put_item", failures=100)
    ingest.handler(pixel_event("deferred-2"), lambda_context)
    assert len(queued(aws.fallback_queue_url)) == 1
    outage.failures = 0
    # AND the visitor opts out before the replay
    optout = load_event("optout_get")
    optout["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
    ingest.handler(optout, lambda_context)
    # WHEN `dmp replay` drains the queue
    from dmp.backfill import replay_deferred

    written, duplicates, messages = replay_deferred(aws)
    # THEN the message is consumed and nothing of the visitor is written
    assert (written, duplicates, messages) == (0, 0, 1)
    assert stored(aws.events_table) == []
    assert queued(aws.fallback_queue_url) == []


def test_collect_defers_the_chunks_dynamodb_refused_and_replay_completes_the_batch(
    ingest, aws, lambda_context, monkeypatch
):
    # GIVEN a batch of 30 events (two BatchWriteItem chunks) and a table that refuses everything
    event = load_event("collect_post")
    event["body"] = json.dumps({"events": [{"e": "page_view", "url": f"https://shop.example/{i}"} for i in range(30)]})
    outage = Throttle(monkeypatch, "batch_write_item", failures=100)
    response = ingest.handler(event, lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["accepted"] == 30
    # WHEN DynamoDB is back and `dmp replay` drains the queue
    outage.failures = 0
    from dmp.backfill import replay_deferred

    written, duplicates, messages = replay_deferred(aws)
    # THEN all 30 are stored, once
    assert (written, duplicates, messages) == (30, 0, 1)
    assert len(stored(aws.events_table)) == 30
    assert queued(aws.fallback_queue_url) == []


def test_collect_answers_503_when_table_and_queue_both_fail(ingest, aws, lambda_context, monkeypatch):
    Throttle(monkeypatch, "batch_write_item", failures=100)
    ingest.fallback = FallbackQueue("https://sqs.eu-west-1.amazonaws.com/123456789012/missing-queue")
    response = ingest.handler(load_event("collect_post"), lambda_context)
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "unavailable"


def test_replayed_client_event_already_stored_is_not_stored_again(ingest, aws, lambda_context):
    # GIVEN a hit that reached the table, and the same hit deferred by an earlier attempt
    ingest.handler(pixel_event("both-1"), lambda_context)
    (item,) = stored(aws.events_table)
    FallbackQueue(aws.fallback_queue_url).defer([item])
    from dmp.backfill import replay_deferred

    assert replay_deferred(aws) == (0, 1, 1)
    assert len(stored(aws.events_table)) == 1


def test_a_hit_is_stored_when_the_suppression_list_cannot_be_read(ingest, aws, lambda_context, monkeypatch, capsys):
    # GIVEN a returning visitor's hit, and a suppression list whose reads all fail
    outage = Throttle(monkeypatch, "get_item", failures=100)
    ingest.handler(pixel_event("unchecked-1"), lambda_context)
    # THEN the check was tried (with botocore's retries), the hit is stored rather than
    # lost (a build would delete it, were the visitor suppressed), and the failure counted
    assert outage.attempts > 1
    assert len(stored(aws.events_table)) == 1
    assert "suppression_check_failed" in capsys.readouterr().out


def test_a_new_visitor_s_hit_costs_no_suppression_read(ingest, aws, lambda_context, monkeypatch):
    reads = Throttle(monkeypatch, "get_item", failures=0)
    ingest.handler(load_event("pixel_get"), lambda_context)  # no cookie, no uid: a new id
    assert reads.attempts == 0
    ingest.handler(pixel_event("returning-1"), lambda_context)
    assert reads.attempts == 1
    assert len(stored(aws.events_table)) == 2
