"""The due-time sweep (DESIGN.md, "Freshness"): every minute, re-evaluate exactly the
visitors filed in the due index under the minutes that have passed since the last sweep,
with the evaluator's own logic. Never a scan of the events.

Only whole minutes in the past are swept, each once: the checkpoint moves past them, so
their entries are never read again and are left to the table's TTL (free; a delete would
cost a write unit per visitor). A re-evaluation files the visitor where the steps
its item now holds end, which lies after now and so in a later minute than any swept. A sweep that
fails part-way is run again from the same checkpoint: re-evaluating a visitor twice
writes nothing new."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    def swept_minute(self) -> int | None: ...

    def put_swept_minute(self, minute: int) -> None: ...


@dataclass(frozen=True)
class SweepResult:
    minutes: int
    visitors: int  # distinct visitors re-evaluated
    last_swept: int | None


def minutes_to_sweep(checkpoint: int | None, now_ms: int) -> range:
    """The whole minutes before now not swept yet, oldest first, at most a run's worth."""
    last_past = minute_of(now_ms) - 1
    oldest_kept = last_past - ENTRY_KEPT_SECONDS // 60
    start = checkpoint + 1 if checkpoint is not None else last_past - FIRST_LOOKBACK_MINUTES + 1
    start = max(start, oldest_kept)
    return range(start, min(last_past, start + MAX_MINUTES_PER_RUN - 1) + 1)


def sweep(due: DueEntries, evaluate: Callable[[Sequence[str]], object], now_ms: int) -> SweepResult:
    """Re-evaluate the visitors due in the minutes to sweep, each once, in batches of up to
    `EVALUATE_BATCH` gathered across buckets and minutes (a batch's fixed reads, such as
    the catalog's, are then paid once per batch, not once per bucket); `evaluate` is the
    evaluator's (at the sweep's now)."""
    minutes = minutes_to_sweep(due.swept_minute(), now_ms)
    seen: set[str] = set()
    pending: list[str] = []
    for minute in minutes:
        for bucket in range(DUE_BUCKETS):
            for visitor_id in due.visitors_due(minute, bucket):
                if visitor_id not in seen:
                    seen.add(visitor_id)
                    pending.append(visitor_id)
            while len(pending) >= EVALUATE_BATCH:
                evaluate(pending[:EVALUATE_BATCH])
                del pending[:EVALUATE_BATCH]
    if pending:
        evaluate(pending)
    if len(minutes):
        due.put_swept_minute(minutes[-1])
    return SweepResult(minutes=len(minutes), visitors=len(seen), last_swept=minutes[-1] if len(minutes) else None)
