"""A visitor the evaluator fails on (functions/evaluator/logic.py and stream.py, DESIGN.md
"Freshness"): the batch's other visitors are evaluated and written all the same, and
Lambda is answered the first stream record of a failed visitor (partial batch response),
from which it retries the stream. A batch that cannot start at all still raises."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.builder.plan import BuildPlan
from functions.core import layout
from functions.core.records import EventRecord, Record
from functions.core.segments import SegmentDefinition
from functions.core.storage.catalog import StoredCatalog
from functions.evaluator.logic import Catalog, EvaluatorStores, PublishedDefinitions, evaluate_visitors
from functions.evaluator.stream import batch_item_failures
from tests.fakes import MemoryBucket, MemoryDue, MemoryMembership, MemorySuppression

NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z
PUBLISHED = "20240601T000000Z"
RECENT = SegmentDefinition.model_validate(
    {"id": "recent", "name": "Recent", "rule": {"event": {"name": "page_view", "within_days": 1}}}
)
# With "recent", five changes to come, one a day: more than an item holds, so the sweep
# is filed where those it holds end.
LONGER = tuple(
    SegmentDefinition.model_validate(
        {"id": f"days-{days}", "name": f"{days} days", "rule": {"event": {"name": "page_view", "within_days": days}}}
    )
    for days in range(2, 6)
)


class RecordsFailingFor:
    """The events table, whose Query times out for some visitors."""

    def __init__(self, records: Iterable[tuple[str, Record]], failing: Iterable[str] = ()) -> None:
        self.records = list(records)
        self.failing = set(failing)

    def records_of(self, visitor_id: str) -> list[Record]:
        if visitor_id in self.failing:
            raise TimeoutError("the events table did not answer")
        return [record for v, record in self.records if v == visitor_id]


class PublishedCatalog:
    def get(self) -> StoredCatalog | None:
        return StoredCatalog(PUBLISHED, "", layout.manifest_key(PUBLISHED), None)


class UnreadableCatalog:
    def get(self) -> StoredCatalog | None:
        raise TimeoutError("the catalog table did not answer")


def stores_for(records: RecordsFailingFor, catalog: Catalog | None = None) -> EvaluatorStores:
    bucket = MemoryBucket()
    plan = BuildPlan(PUBLISHED, datetime.fromtimestamp(NOW / 1000, UTC), 1, (RECENT, *LONGER))
    bucket.put_json(layout.plan_key(PUBLISHED), plan.to_json())
    return EvaluatorStores(
        events=records,
        membership=MemoryMembership(),
        suppression=MemorySuppression(),
        catalog=catalog or PublishedCatalog(),
        due=MemoryDue(),
        definitions=PublishedDefinitions(bucket),
    )


def hit(visitor_id: str, at: int) -> tuple[str, Record]:
    return visitor_id, EventRecord(ts_ms=at, name="page_view", expires_at=at // 1000 + 90 * 86_400)


def stream_record(visitor_id: str, event_id: str, sequence_number: str) -> dict[str, Any]:
    return {
        "eventID": sequence_number[-6:],
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "Keys": {"visitor_id": {"S": visitor_id}, "event_id": {"S": event_id}},
            "SequenceNumber": sequence_number,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/events/stream/2024-06-01T00:00:00.000",
    }


# --- the evaluation --------------------------------------------------------------------------


def test_a_visitor_that_fails_is_reported_and_the_batchs_other_visitors_are_written():
    # GIVEN a batch of three visitors' hits, the second one's records unreadable
    records = RecordsFailingFor([hit(v, NOW - 60_000) for v in ("v1", "v2", "v3")], failing=["v2"])
    stores = stores_for(records)
    # WHEN the evaluator evaluates the batch
    evaluation = evaluate_visitors(["v1", "v2", "v3"], stores, NOW)
    # THEN the failed visitor is reported with its error, and nothing is stored or filed for it
    assert list(evaluation.failed) == ["v2"]
    assert isinstance(evaluation.failed["v2"], TimeoutError)
    membership, due = stores.membership, stores.due
    assert isinstance(membership, MemoryMembership) and isinstance(due, MemoryDue)
    assert "v2" not in membership.stored and "v2" not in due.entries
    # AND the others are in their segments and filed for the sweep, as without the failure
    assert evaluation.written == 2
    assert {v for v, stored in membership.stored.items() if stored.current is not None} == {"v1", "v3"}
    assert set(due.entries) == {"v1", "v3"}


def test_a_batch_without_failures_reports_none():
    stores = stores_for(RecordsFailingFor([hit("v1", NOW - 60_000)]))
    assert evaluate_visitors(["v1"], stores, NOW).failed == {}


def test_a_batch_that_cannot_be_started_raises_for_lambda_to_retry_it_whole():
    # GIVEN a catalog that cannot be read: no visitor can be evaluated
    stores = stores_for(RecordsFailingFor([hit("v1", NOW)]), catalog=UnreadableCatalog())
    # THEN the batch fails as a whole
    with pytest.raises(TimeoutError):
        evaluate_visitors(["v1"], stores, NOW)


# --- the partial batch response -------------------------------------------------------------

BATCH = {
    "Records": [
        stream_record("v1", "e1", "1100000000017454423009"),
        stream_record("v2", "e2", "1100000000017454423010"),
        stream_record("v3", "e3", "1100000000017454423011"),
        stream_record("v2", "e4", "1100000000017454423012"),
    ]
}


def test_a_batch_without_failures_answers_lambda_that_every_record_succeeded():
    assert batch_item_failures(BATCH, {}) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("failed", "retried_from"),
    [
        (["v2"], "1100000000017454423010"),  # the visitor's first record, not its last
        (["v3"], "1100000000017454423011"),
        (["v3", "v2"], "1100000000017454423010"),  # the first of any failed visitor's
    ],
)
def test_a_failed_visitor_has_lambda_retry_the_stream_from_its_first_record(failed, retried_from):
    failures = {visitor_id: TimeoutError() for visitor_id in failed}
    assert batch_item_failures(BATCH, failures) == {"batchItemFailures": [{"itemIdentifier": retried_from}]}
