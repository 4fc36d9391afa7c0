"""A failure while evaluating the events table's stream, on moto (DESIGN.md, "Freshness"):
the evaluator's handler answers Lambda which records to retry (partial batch response),
and `dmp serve`'s poller (dmp/local.py `StreamPoller`) retries them as Lambda's event
source mapping does: from the lowest failed record, at most `RETRY_ATTEMPTS` times, then
gives them up with a log line, as Lambda would send them to the dead-letter queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import boto3
import pytest

from dmp.local import StreamPoller
from functions.core.records import Record
from functions.core.storage.membership import MembershipStore
from functions.core.times import DAY_MS
from functions.evaluator.stream import RETRY_ATTEMPTS
from tests.integration.conftest import LONDON, PARIS, hit, push_definitions
from tests.integration.test_realtime_membership import build_now, stream_batch


def streams_client() -> Any:
    # The regional endpoint, which moto's in-process mock routes (see stream_batch).
    region = boto3.client("dynamodb").meta.region_name
    return boto3.client("dynamodbstreams", endpoint_url=f"https://streams.dynamodb.{region}.amazonaws.com")


def stream_arn(events_table: str) -> str:
    return str(boto3.client("dynamodb").describe_table(TableName=events_table)["Table"]["LatestStreamArn"])


def sequence_numbers(event: Mapping[str, Any]) -> list[str]:
    return [record["dynamodb"]["SequenceNumber"] for record in event["Records"]]


class FailingOnce:
    """The events store, whose Query fails the first time for each of some visitors."""

    def __init__(self, events: Any, visitor_ids: Iterable[str]) -> None:
        self._events = events
        self.failing = set(visitor_ids)

    def records_of(self, visitor_id: str) -> list[Record]:
        if visitor_id in self.failing:
            self.failing.discard(visitor_id)
            raise TimeoutError("the events table did not answer")
        return list(self._events.records_of(visitor_id))


class ScriptedHandler:
    """An evaluator that answers from a script, one answer (or error) per invocation, and
    succeeds once the script runs out; it keeps the sequence numbers of every batch."""

    def __init__(self, *answers: Callable[[list[str]], Mapping[str, Any]] | Exception) -> None:
        self.answers = list(answers)
        self.batches: list[list[str]] = []

    def __call__(self, event: dict[str, Any]) -> Mapping[str, Any]:
        self.batches.append(sequence_numbers(event))
        answer = self.answers.pop(0) if self.answers else (lambda _: {"batchItemFailures": []})
        if isinstance(answer, Exception):
            raise answer
        return answer(self.batches[-1])


def failing_at(index: int) -> Callable[[list[str]], Mapping[str, Any]]:
    """A partial batch response naming the batch's record at `index`."""
    return lambda batch: {"batchItemFailures": [{"itemIdentifier": batch[index]}]}


@pytest.fixture
def hits(load_handler: Any, lambda_context: Any) -> Callable[[int], None]:
    """Send `count` hits of distinct visitors through the pixel."""
    ingest = load_handler("ingest")
    sent = [0]

    def send(count: int) -> None:
        for _ in range(count):
            sent[0] += 1
            visitor_id, at = f"visitor-{sent[0]:04d}", int(time.time() * 1000)
            hit(ingest, lambda_context, visitor_id, at, "https://shop.example/", PARIS)

    return send


# --- the handler's answer ---------------------------------------------------------------------


def test_the_handler_answers_the_first_record_of_a_failed_visitor_and_writes_the_others(
    load_handler, aws, lambda_context, monkeypatch
):
    # GIVEN a published build, then hits of two visitors, one of whose records cannot be read
    push_definitions(aws.bucket)
    ingest = load_handler("ingest")
    now = int(time.time() * 1000)
    hit(ingest, lambda_context, "visitor-london-1", now - DAY_MS, "https://shop.example/", LONDON)
    published = build_now(load_handler, lambda_context)
    for visitor_id, offset in (("visitor-paris-1", 0), ("visitor-paris-2", 1), ("visitor-paris-1", 2)):
        hit(ingest, lambda_context, visitor_id, int(time.time() * 1000) + offset, "https://shop.example/blog", PARIS)
    evaluator = load_handler("evaluator")
    failing = FailingOnce(evaluator.stores.events, ["visitor-paris-1"])
    monkeypatch.setattr(evaluator, "stores", replace(evaluator.stores, events=failing))
    batch = stream_batch(aws.events_table)
    # WHEN the evaluator runs on the batch
    answer = evaluator.handler(batch, lambda_context)
    # THEN it answers the failed visitor's first record, for Lambda to retry the stream from there
    first = next(r for r in batch["Records"] if r["dynamodb"]["Keys"]["visitor_id"]["S"] == "visitor-paris-1")
    assert answer == {"batchItemFailures": [{"itemIdentifier": first["dynamodb"]["SequenceNumber"]}]}
    # AND the other visitor's membership is written, the failed one's not
    membership = MembershipStore(aws.membership_table)
    assert membership.get("visitor-paris-2", as_of=published) == ["all-visitors", "paris"]
    assert membership.get("visitor-paris-1", as_of=published) == []


# --- the local poller ---------------------------------------------------------------------------


def test_a_batch_that_raises_is_read_again_at_the_next_poll_then_passed(aws, hits):
    # GIVEN three hits on the stream, and an evaluator that fails the first batch it is given
    hits(3)
    handler = ScriptedHandler(TimeoutError("the catalog did not answer"))
    poller = StreamPoller(streams_client(), stream_arn(aws.events_table), handler, log=lambda _: None)
    # WHEN the poller polls, and again
    poller.poll()
    poller.poll()
    # THEN the same batch was given twice, and once it succeeded the stream moves on
    assert len(handler.batches[0]) == 3 and handler.batches[1] == handler.batches[0]
    hits(1)
    poller.poll()
    assert len(handler.batches) == 3 and handler.batches[2][0] > handler.batches[0][-1]


def test_a_partial_failure_is_retried_from_the_failed_record_only(aws, hits):
    # GIVEN four hits, the evaluator answering that the third record's visitor failed
    hits(4)
    handler = ScriptedHandler(failing_at(2))
    poller = StreamPoller(streams_client(), stream_arn(aws.events_table), handler, log=lambda _: None)
    poller.poll()
    # WHEN the poller polls again
    poller.poll()
    # THEN it reads the stream again from that record, not from the batch's start
    assert handler.batches[1] == handler.batches[0][2:]


def test_a_batch_failing_every_retry_is_given_up_with_a_log_line_and_the_stream_goes_on(aws, hits):
    # GIVEN an evaluator that fails the batch on its first try and on every retry
    hits(2)
    handler = ScriptedHandler(*[TimeoutError("down")] * (1 + RETRY_ATTEMPTS))
    logged: list[str] = []
    poller = StreamPoller(streams_client(), stream_arn(aws.events_table), handler, log=logged.append)
    # WHEN the poller has polled as often as Lambda would try
    for _ in range(1 + RETRY_ATTEMPTS):
        poller.poll()
    # THEN the batch was tried that often, then given up with a line saying so
    assert len(handler.batches) == 1 + RETRY_ATTEMPTS
    assert all(batch == handler.batches[0] for batch in handler.batches)
    gave_up = [line for line in logged if "gave up" in line]
    assert len(gave_up) == 1 and handler.batches[0][0] in gave_up[0] and f"{RETRY_ATTEMPTS} retries" in gave_up[0]
    # AND later records are evaluated, the given-up ones not again
    hits(1)
    poller.poll()
    assert len(handler.batches) == 2 + RETRY_ATTEMPTS and len(handler.batches[-1]) == 1


def test_a_visitor_whose_store_failed_once_gets_its_membership_at_the_next_poll(
    load_handler, aws, lambda_context, monkeypatch
):
    # GIVEN a published build, and a new visitor's hit whose records fail to read once
    push_definitions(aws.bucket)
    ingest = load_handler("ingest")
    hit(ingest, lambda_context, "visitor-london-1", int(time.time() * 1000) - DAY_MS, "https://shop.example/", LONDON)
    published = build_now(load_handler, lambda_context)
    evaluator = load_handler("evaluator")
    failing = FailingOnce(evaluator.stores.events, ["visitor-paris-1"])
    monkeypatch.setattr(evaluator, "stores", replace(evaluator.stores, events=failing))
    hit(ingest, lambda_context, "visitor-paris-1", int(time.time() * 1000), "https://shop.example/blog", PARIS)
    poller = StreamPoller(
        streams_client(), stream_arn(aws.events_table), lambda event: evaluator.handler(event, lambda_context)
    )
    membership = MembershipStore(aws.membership_table)
    # WHEN the poller polls: the evaluation fails
    poller.poll()
    assert not failing.failing and membership.get("visitor-paris-1", as_of=published) == []
    # THEN the next poll retries the visitor's records, and its membership is written
    poller.poll()
    assert membership.get("visitor-paris-1", as_of=published) == ["all-visitors", "paris"]
