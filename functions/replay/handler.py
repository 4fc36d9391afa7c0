"""Replay: writes the hits the ingest function deferred to the fallback queue when
DynamoDB would not take them. Triggered by SQS; each message is one deferred request.

Every accepted hit ends up stored exactly once: each deferred item carries the key chosen
at ingest (`eid:<client event id>`, or a unique one), so a message delivered twice writes
the same item onto itself, and a repeat is counted as a duplicate. A hit of a visitor
suppressed since it was deferred (opt-out, erasure) is dropped. A message that fails is reported
back to SQS alone (partial batch response) and retried, then dead-lettered."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.core.storage.events import EventStore
from functions.core.storage.suppression import SuppressionStore
from functions.replay.logic import replay_message

settings = Settings.from_env(require=("events_table", "suppression_table"))
logger = Logger(service="replay")
metrics = Metrics(service="replay")
events = EventStore(settings.events_table)
suppression = SuppressionStore(settings.suppression_table, same_client_as=events)
processor = BatchProcessor(event_type=EventType.SQS)


def _record(record: SQSRecord) -> None:
    replayed = replay_message(record.body, events, suppression)
    metrics.add_metric(name="hits_replayed", unit=MetricUnit.Count, value=replayed.written)
    metrics.add_metric(name="hits_duplicate", unit=MetricUnit.Count, value=replayed.duplicates)
    metrics.add_metric(name="hits_suppressed", unit=MetricUnit.Count, value=replayed.suppressed)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
    return dict(response)  # {"batchItemFailures": [...]}, which SQS reads back
