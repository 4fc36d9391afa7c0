"""The due index on moto (functions/core/storage/due.py) under the sweep's logic: a due
instant filed after the sweep has passed its minute still reaches the sweep."""

from __future__ import annotations

from collections.abc import Sequence

from functions.core.storage.due import DueStore, minute_of
from functions.sweep.logic import sweep

NOW = 1_717_243_230_000  # 2024-06-01T12:00:30Z


def test_a_due_instant_filed_in_a_minute_already_swept_is_swept_in_the_next_run(aws):
    # GIVEN a sweep that has just swept every minute before NOW's
    due = DueStore(aws.due_table)
    due.put_swept_minute(minute_of(NOW) - 1)
    # WHEN an evaluation at NOW files a visitor due five minutes ago (it may lag its stream)
    due.put_due({"late": NOW - 5 * 60_000}, now_ms=NOW)
    # THEN the next minute's sweep re-evaluates it
    evaluated: list[str] = []

    def evaluate(visitor_ids: Sequence[str]) -> None:
        evaluated.extend(visitor_ids)

    result = sweep(due, evaluate, NOW + 60_000)
    assert evaluated == ["late"] and result.minutes == 1
