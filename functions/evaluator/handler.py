"""Evaluator: on each batch of the events table's stream (a hit, an import, an erasure),
re-evaluates just the visitors it touched against the published build's definitions and
writes what changed (see logic.py). A visitor that fails is reported back to Lambda
(partial batch response, stream.py): the stream is retried from its first record, the
other visitors' work stands. A batch that fails as a whole (the catalog or the definitions
unreadable) raises: Lambda retries it and halves it. Either way, after the retries the
batch's description goes to the dead-letter queue and the next build corrects whatever
was missed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.evaluator.logic import evaluate_visitors, visitors_of
from functions.evaluator.stores import REQUIRED, connect
from functions.evaluator.stream import batch_item_failures

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

settings = Settings.from_env(require=REQUIRED)
logger = Logger(service="evaluator")
metrics = Metrics(service="evaluator")
stores, _ = connect(settings)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    evaluation = evaluate_visitors(visitors_of(event), stores, int(time.time() * 1000))
    for error in evaluation.failed.values():
        # No visitor id in the log, as in every function's log.
        logger.error("a visitor's evaluation failed; its records are retried", exc_info=error)
    metrics.add_metric(name="visitors_evaluated", unit=MetricUnit.Count, value=evaluation.visitors)
    metrics.add_metric(name="visitors_failed", unit=MetricUnit.Count, value=len(evaluation.failed))
    metrics.add_metric(name="membership_writes", unit=MetricUnit.Count, value=evaluation.written)
    metrics.add_metric(name="membership_writes_refused", unit=MetricUnit.Count, value=evaluation.refused)
    return batch_item_failures(event, evaluation.failed)
