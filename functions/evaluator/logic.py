"""Real-time membership (DESIGN.md, "Freshness"): re-evaluate just the visitors a batch
of the events table's stream touched, with the published build's definitions, as a
build at this instant would, and file each one for the sweep where the steps its item
holds end (`Schedule.sweep_at`: the item itself switches at each of them; a visitor whose
membership changes no more than `STEPS` times with no new data is never swept).

Per batch: one GetItem of the catalog (the published build), one BatchGetItem of the
suppression list, one Query per visitor (its records), one BatchGetItem of the
membership table, a write per visitor whose segments, expiry or due instant changed, and
BatchWriteItem of the due index. No published build: nothing to evaluate against, so
nothing is done; the first build evaluates everyone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from functions.builder.plan import BuildPlan
from functions.core import layout
from functions.core.engine import CompiledSegment, compile_segments
from functions.core.freshness import evaluate_visitor
from functions.core.records import Record, VisitorHistory, group_by_visitor
from functions.core.storage.catalog import StoredCatalog
from functions.core.storage.events import EVENT_KEY, MAPPING_PREFIX, VISITOR_KEY
from functions.core.storage.membership import (
    Membership,
    Schedule,
    StoredMembership,
    needs_item,
    within_a_write_unit,
)

# Plans kept per warm container: the published build and the one before, around a publish.
PLANS_CACHED = 4
# The changes a visitor's item holds ahead (with no new data), each with its segments:
# lookups follow them by themselves, so the sweep is needed only for a visitor whose
# membership changes more often than this before its data expires. Most change once or
# twice (they leave their segments). Fewer are kept when more would take the item past
# 1 KB, one write unit (`within_a_write_unit`).
STEPS = 4
# A visitor whose item a build being published owns is evaluated again this much later,
# by the sweep, against that build once it is published.
RETRY_REFUSED_MS = 60_000


class VisitorRecords(Protocol):
    def records_of(self, visitor_id: str) -> list[Record]: ...


class MembershipItems(Protocol):
    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]: ...

    def put_evaluated(
        self, visitor_id: str, membership: Membership, *, schedule: Schedule | None, published: str
    ) -> bool: ...


class SuppressionList(Protocol):
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]: ...


class Catalog(Protocol):
    def get(self) -> StoredCatalog | None: ...


class DueIndex(Protocol):
    def put_due(self, due_ms: Mapping[str, int], *, now_ms: int | None = None) -> int: ...


class Documents(Protocol):
    def get_json(self, key: str) -> Any: ...


class PublishedDefinitions:
    """The compiled definitions of a build, from its plan (`builds/<id>/plan.json`), read
    once per build id by a warm container."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents
        self._compiled: dict[str, list[CompiledSegment]] = {}
        self.plans_read = 0

    def compiled(self, build_id: str) -> list[CompiledSegment]:
        compiled = self._compiled.get(build_id)
        if compiled is None:
            plan = BuildPlan.from_json(self._documents.get_json(layout.plan_key(build_id)))
            self.plans_read += 1
            compiled = compile_segments(plan.definitions)
            if len(self._compiled) >= PLANS_CACHED:
                del self._compiled[min(self._compiled)]
            self._compiled[build_id] = compiled
        return compiled


@dataclass(frozen=True)
class EvaluatorStores:
    events: VisitorRecords
    membership: MembershipItems
    suppression: SuppressionList
    catalog: Catalog
    due: DueIndex
    definitions: PublishedDefinitions


@dataclass(frozen=True)
class Evaluation:
    """What one batch did."""

    published: str | None
    visitors: int = 0
    suppressed: int = 0
    written: int = 0
    unchanged: int = 0
    # Writes refused: the item is a build's not yet published, or a tombstone since.
    refused: int = 0
    due: int = 0
    # Visitors whose evaluation or write failed, with the error: the others' are done, and
    # the handler has Lambda retry the stream from the first record of a failed one.
    failed: Mapping[str, Exception] = field(default_factory=dict)


# Lambda's DynamoDB Streams event, as much of it as the evaluator reads.
class StreamChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Keys: dict[str, dict[str, str]]


class StreamRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    eventName: Literal["INSERT", "MODIFY", "REMOVE"]
    dynamodb: StreamChange


class StreamEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Records: list[StreamRecord]


def visitors_of(event: Mapping[str, Any]) -> list[str]:
    """The distinct visitors whose records a batch of stream records changed, in order.
    Every item of the events table is a visitor's; an ID sync mapping (`sync#`) is one
    rules never read, so a batch of mappings alone re-evaluates nobody."""
    visitors: dict[str, None] = {}
    for record in StreamEvent.model_validate(event).Records:
        keys = record.dynamodb.Keys
        if keys.get(EVENT_KEY, {}).get("S", "").startswith(MAPPING_PREFIX):
            continue
        visitors[keys[VISITOR_KEY]["S"]] = None
    return list(visitors)


def history_of(visitor_id: str, records: Iterable[Record]) -> VisitorHistory:
    return next(group_by_visitor((visitor_id, record) for record in records), VisitorHistory(visitor_id))


def evaluate_visitors(visitor_ids: Sequence[str], stores: EvaluatorStores, now_ms: int) -> Evaluation:
    """Evaluate each visitor at `now_ms` with the published build's definitions and store
    what changed (suppressed visitors are left alone: their tombstone stays)."""
    if not visitor_ids:
        return Evaluation(published=None)
    catalog = stores.catalog.get()
    if catalog is None:
        return Evaluation(published=None)
    published = catalog.build_id
    segments = stores.definitions.compiled(published)
    suppressed = stores.suppression.suppressed(visitor_ids)
    live = [v for v in dict.fromkeys(visitor_ids) if v not in suppressed]
    stored = stores.membership.stored_many(live) if live else {}
    written = unchanged = refused = 0
    due_ms: dict[str, int] = {}
    failed: dict[str, Exception] = {}
    for visitor_id in live:
        try:
            history = history_of(visitor_id, stores.events.records_of(visitor_id))
            result = evaluate_visitor(history, segments, now_ms, steps=STEPS)
            membership = Membership(result.segments, result.expires_at)
            schedule = within_a_write_unit(
                visitor_id,
                membership,
                Schedule.of(result.due_ms, result.next_segments, result.next_due_ms, result.later, result.until_ms),
                published,
            )
            sweep_at = schedule.sweep_at(result.expires_at, horizon_limited=False) if schedule is not None else None
            if sweep_at is not None:
                due_ms[visitor_id] = sweep_at * 1000
            before = stored.get(visitor_id)
            if _same(before, membership, schedule):
                unchanged += 1
            elif before is not None and before.build_id is not None and before.build_id > published:
                refused += 1  # a build being published owns the item (the write would be refused)
                due_ms[visitor_id] = now_ms + RETRY_REFUSED_MS
            elif stores.membership.put_evaluated(visitor_id, membership, schedule=schedule, published=published):
                written += 1
            else:
                refused += 1
                due_ms[visitor_id] = now_ms + RETRY_REFUSED_MS
        except Exception as error:  # one visitor's failure must not fail the others'
            failed[visitor_id] = error
            due_ms.pop(visitor_id, None)
    if due_ms:
        stores.due.put_due(due_ms, now_ms=now_ms)
    return Evaluation(
        published=published,
        visitors=len(live) + len(suppressed),
        suppressed=len(suppressed),
        written=written,
        unchanged=unchanged,
        refused=refused,
        due=len(due_ms),
        failed=failed,
    )


def _same(stored: StoredMembership | None, membership: Membership, schedule: Schedule | None) -> bool:
    """Whether the stored item already says what the evaluation found."""
    if stored is None:
        # No item: nothing to write for a visitor in no segment now or from its due instant.
        return not needs_item(membership.segments, schedule)
    held = stored.current if stored.current is not None else Membership(frozenset())
    if not held.segments and not membership.segments:
        held = membership  # no segments: the expiry only matters with a next step, compared below
    return held == membership and stored.schedule == schedule
