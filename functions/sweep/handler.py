"""Sweep: on a one-minute schedule, re-evaluates the visitors whose membership could
change with no new data since the last sweep (the due index), with the evaluator's logic
(see logic.py). A run that fails raises and the next one starts from the same checkpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.evaluator.logic import Evaluation, evaluate_visitors
from functions.evaluator.stores import REQUIRED, connect
from functions.sweep.logic import sweep

settings = Settings.from_env(require=REQUIRED)
logger = Logger(service="sweep")
metrics = Metrics(service="sweep")
stores, due = connect(settings)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)

    def evaluate(visitor_ids: Sequence[str]) -> Evaluation:
        evaluation = evaluate_visitors(visitor_ids, stores, now_ms)
        if evaluation.failed:  # the run fails and the next one starts from the same checkpoint
            first = next(iter(evaluation.failed.values()))
            raise RuntimeError(f"{len(evaluation.failed)} due visitor(s) failed to evaluate") from first
        return evaluation

    result = sweep(due, evaluate, now_ms)
    metrics.add_metric(name="visitors_swept", unit=MetricUnit.Count, value=result.visitors)
    return {"minutes": result.minutes, "visitors": result.visitors, "last_swept": result.last_swept}
