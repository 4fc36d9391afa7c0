"""The due-time sweep (DESIGN.md, "Freshness"): every minute, re-evaluate exactly the
visitors filed in the due index under the minutes that have passed since the last sweep,
with the evaluator's own logic, then delete their entries. Never a scan of the events.

Only whole minutes in the past are swept: a re-evaluation files the visitor under its
next due instant, which lies after now and so in a later minute than any swept, and the
entries deleted afterwards are never the new ones. A sweep that fails part-way is run
again from the same checkpoint: re-evaluating a visitor twice writes nothing new."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from functions.core.storage.due import ENTRY_KEPT_SECONDS, minute_of
from functions.core.tables import DUE_BUCKETS

# With no checkpoint (the first sweep), how far back to look.
FIRST_LOOKBACK_MINUTES = 60
# At most this many minutes per run; a sweep that was down catches up over a few runs.
MAX_MINUTES_PER_RUN = 120
# Visitors re-evaluated together (the evaluator's batch: BatchGetItem takes 100 keys).
EVALUATE_BATCH = 100


class DueEntries(Protocol):
    def visitors_due(self, minute: int, bucket: int) -> list[str]: ...

    def delete_due(self, minute: int, bucket: int, visitor_ids: Iterable[str]) -> int: ...

    def swept_minute(self) -> int | None: ...

    def put_swept_minute(self, minute: int) -> None: ...


@dataclass(frozen=True)
class SweepResult:
    minutes: int
    visitors: int
    last_swept: int | None


def minutes_to_sweep(checkpoint: int | None, now_ms: int) -> range:
    """The whole minutes before now not swept yet, oldest first, at most a run's worth."""
    last_past = minute_of(now_ms) - 1
    oldest_kept = last_past - ENTRY_KEPT_SECONDS // 60
    start = checkpoint + 1 if checkpoint is not None else last_past - FIRST_LOOKBACK_MINUTES + 1
    start = max(start, oldest_kept)
    return range(start, min(last_past, start + MAX_MINUTES_PER_RUN - 1) + 1)


def sweep(due: DueEntries, evaluate: Callable[[Sequence[str]], object], now_ms: int) -> SweepResult:
    """Re-evaluate the visitors due in the minutes to sweep; `evaluate` is the
    evaluator's (at the sweep's now)."""
    minutes = minutes_to_sweep(due.swept_minute(), now_ms)
    visitors = 0
    for minute in minutes:
        for bucket in range(DUE_BUCKETS):
            visitor_ids = due.visitors_due(minute, bucket)
            for start in range(0, len(visitor_ids), EVALUATE_BATCH):
                evaluate(visitor_ids[start : start + EVALUATE_BATCH])
            if visitor_ids:
                due.delete_due(minute, bucket, visitor_ids)
                visitors += len(visitor_ids)
    if len(minutes):
        due.put_swept_minute(minutes[-1])
    return SweepResult(minutes=len(minutes), visitors=visitors, last_swept=minutes[-1] if len(minutes) else None)
