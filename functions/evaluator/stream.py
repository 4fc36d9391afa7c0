"""The events table's stream as the evaluator receives it: how Lambda's event source
mapping batches and retries it (infra/evaluator.py configures it; `dmp serve`'s poller,
dmp/local.py, does the same on the emulator), and the partial batch response that names
the records to retry.

A batch's visitors are evaluated one by one (logic.py), each once for all of its records
in the batch. When some fail, the response names the first record, in stream order, of
any failed visitor: Lambda checkpoints just before the lowest sequence number named and
retries from there, so every record of every failed visitor is read again (with those
after it of visitors that succeeded, which evaluating again leaves as they are).
Powertools' BatchProcessor is not used: it calls its handler once per record, and one
visitor's records would then be evaluated once each and fail or succeed apart."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from functions.core.storage.events import VISITOR_KEY

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

# Records per invocation: a visitor's hits of a second or so together, and BatchGetItem's
# 100 keys for the batch's membership items.
BATCH_SIZE = 100
# Retries of a batch (or of its failed part) before it is given up on: in AWS its
# description then goes to the dead-letter queue; the next hit, due instant or build
# corrects the visitors it held.
RETRY_ATTEMPTS = 3


def batch_item_failures(event: Mapping[str, Any], failed: Collection[str]) -> PartialItemFailureResponse:
    """Lambda's partial batch response for `event` when the visitors `failed` failed:
    none, or the first record of any of them."""
    if not failed:
        return {"batchItemFailures": []}
    # Only now: the package imports every event's data class (~0.1 s), for a rare answer.
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent

    changes = [record.dynamodb for record in DynamoDBStreamEvent(dict(event)).records if record.dynamodb is not None]
    first = next((change for change in changes if change.keys.get(VISITOR_KEY) in failed), changes[0])
    # A record always has a sequence number; an empty identifier would fail the whole batch.
    return {"batchItemFailures": [{"itemIdentifier": first.sequence_number or ""}]}
