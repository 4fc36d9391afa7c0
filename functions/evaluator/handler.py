"""Evaluator: on each batch of the events table's stream (a hit, an import, an erasure),
re-evaluates just the visitors it touched against the published build's definitions and
writes what changed (see logic.py). A batch that fails raises: Lambda retries it, halves
it to find a bad record, then sends it to the dead-letter queue; the next build corrects
whatever was missed."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.evaluator.logic import evaluate_visitors, visitors_of
from functions.evaluator.stores import REQUIRED, connect

settings = Settings.from_env(require=REQUIRED)
logger = Logger(service="evaluator")
metrics = Metrics(service="evaluator")
stores, _ = connect(settings)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    evaluation = evaluate_visitors(visitors_of(event), stores, int(time.time() * 1000))
    metrics.add_metric(name="visitors_evaluated", unit=MetricUnit.Count, value=evaluation.visitors)
    metrics.add_metric(name="membership_writes", unit=MetricUnit.Count, value=evaluation.written)
    metrics.add_metric(name="membership_writes_refused", unit=MetricUnit.Count, value=evaluation.refused)
    return {"published": evaluation.published, "written": evaluation.written, "visitors": evaluation.visitors}
