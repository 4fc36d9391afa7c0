"""The due-time sweep's logic (functions/sweep/logic.py) over an in-memory due index: which
visitors it re-evaluates, in which batches, and what it leaves behind."""

from __future__ import annotations

from collections.abc import Sequence

from functions.core.storage.due import minute_of
from functions.core.tables import DUE_BUCKETS
from functions.sweep.logic import (
    EVALUATE_BATCH,
    FIRST_LOOKBACK_MINUTES,
    MAX_MINUTES_PER_RUN,
    minutes_to_sweep,
    sweep,
)

NOW = 1_717_243_230_000  # 2024-06-01T12:00:30Z
NOW_EVEN = 1_717_243_200_000  # 2024-06-01T12:00:00Z, a minute's start


class MemoryDueEntries:
    """The due index's entries by (minute, bucket), read-only as the sweep uses it."""

    def __init__(self, entries: dict[tuple[int, int], list[str]], checkpoint: int | None) -> None:
        self.entries = entries
        self.checkpoint = checkpoint
        self.queried: list[tuple[int, int]] = []

    def visitors_due(self, minute: int, bucket: int) -> list[str]:
        self.queried.append((minute, bucket))
        return list(self.entries.get((minute, bucket), []))

    def swept_minute(self) -> int | None:
        return self.checkpoint

    def put_swept_minute(self, minute: int) -> None:
        self.checkpoint = minute


class Evaluations:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, visitor_ids: Sequence[str]) -> None:
        self.batches.append(list(visitor_ids))


def test_the_due_visitors_of_every_bucket_and_minute_are_evaluated_together_in_full_batches():
    # GIVEN 150 visitors due in two past minutes, spread over every bucket
    last = minute_of(NOW) - 1
    entries: dict[tuple[int, int], list[str]] = {}
    for number in range(150):
        entries.setdefault((last - number % 2, number % DUE_BUCKETS), []).append(f"v{number}")
    due = MemoryDueEntries(entries, checkpoint=last - 2)
    evaluate = Evaluations()
    # WHEN the sweep runs
    result = sweep(due, evaluate, NOW)
    # THEN they are evaluated in two batches, a full one and the rest, not one per bucket
    assert [len(batch) for batch in evaluate.batches] == [EVALUATE_BATCH, 150 - EVALUATE_BATCH]
    assert sorted(v for batch in evaluate.batches for v in batch) == sorted(f"v{n}" for n in range(150))
    assert result.visitors == 150 and result.minutes == 2


def test_a_visitor_filed_under_two_minutes_of_a_run_is_evaluated_once():
    # GIVEN a visitor whose earlier entry stayed when it was filed again a minute later
    last = minute_of(NOW) - 1
    due = MemoryDueEntries({(last - 1, 4): ["v1"], (last, 4): ["v1", "v2"]}, checkpoint=last - 2)
    evaluate = Evaluations()
    # WHEN one run sweeps both minutes
    result = sweep(due, evaluate, NOW)
    # THEN the visitor is evaluated once, at the sweep's now
    assert evaluate.batches == [["v1", "v2"]]
    assert result.visitors == 2


def test_swept_entries_are_left_to_the_ttl_and_never_read_again():
    # GIVEN two visitors due in the last minute
    last = minute_of(NOW) - 1
    entries = {(last, 3): ["v1", "v2"]}
    due = MemoryDueEntries(dict(entries), checkpoint=last - 1)
    evaluate = Evaluations()
    # WHEN the sweep runs, then runs again a minute later
    sweep(due, evaluate, NOW)
    again = sweep(due, evaluate, NOW + 60_000)
    # THEN their entries are still there (nothing deleted: the TTL does that, for free)
    assert due.entries == entries
    # AND the second run queried only the new minute, and evaluated no one
    assert evaluate.batches == [["v1", "v2"]]
    assert again.visitors == 0 and due.checkpoint == last + 1
    assert due.queried[-DUE_BUCKETS:] == [(last + 1, bucket) for bucket in range(DUE_BUCKETS)]


def test_the_sweep_visits_whole_past_minutes_since_its_checkpoint():
    now_minute = minute_of(NOW_EVEN + 30_000)
    assert list(minutes_to_sweep(now_minute - 4, NOW_EVEN + 30_000)) == [now_minute - 3, now_minute - 2, now_minute - 1]
    assert len(minutes_to_sweep(None, NOW_EVEN)) == FIRST_LOOKBACK_MINUTES
    assert len(minutes_to_sweep(now_minute - 10_000, NOW_EVEN)) == MAX_MINUTES_PER_RUN


def test_the_sweep_re_evaluates_the_due_visitors_and_moves_its_checkpoint_past_their_minute():
    minute = minute_of(NOW_EVEN) - 1
    due = MemoryDueEntries({(minute, 3): ["v1", "v2"], (minute + 5, 0): ["later"]}, checkpoint=minute - 1)
    evaluated: list[list[str]] = []
    result = sweep(due, lambda ids: evaluated.append(list(ids)), NOW_EVEN)
    assert evaluated == [["v1", "v2"]]
    assert due.checkpoint == minute and result.visitors == 2
    assert len(due.queried) == 10  # one Query per bucket of the one minute
