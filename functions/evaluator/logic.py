"""Real-time membership (DESIGN.md, "Freshness"): re-evaluate just the visitors a batch
of the events table's stream touched, with the published build's definitions, as a
build at this instant would, and file each one under its due instant for the sweep.

Per batch: one GetItem of the catalog (the published build), one BatchGetItem of the
suppression list, one Query per visitor (its records), one BatchGetItem of the
membership table, a write per visitor whose segments, expiry or due instant changed, and
BatchWriteItem of the due index. No published build: nothing to evaluate against, so
nothing is done; the first build evaluates everyone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from functions.builder.plan import BuildPlan
from functions.core import layout
from functions.core.engine import CompiledSegment, compile_segments
from functions.core.freshness import evaluate_visitor
from functions.core.records import Record, VisitorHistory, group_by_visitor
from functions.core.storage.catalog import StoredCatalog
from functions.core.storage.events import EVENT_KEY, MAPPING_PREFIX, VISITOR_KEY
from functions.core.storage.membership import Membership, StoredMembership

# Plans kept per warm container: the published build and the one before, around a publish.
PLANS_CACHED = 4


class VisitorRecords(Protocol):
    def records_of(self, visitor_id: str) -> list[Record]: ...


class MembershipItems(Protocol):
    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]: ...

    def put_evaluated(
        self, visitor_id: str, membership: Membership | None, *, due_at: int | None, published: str
    ) -> bool: ...


class SuppressionList(Protocol):
    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]: ...


class Catalog(Protocol):
    def get(self) -> StoredCatalog | None: ...


class DueIndex(Protocol):
    def put_due(self, due_ms: Mapping[str, int]) -> int: ...


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
    for visitor_id in live:
        result = evaluate_visitor(history_of(visitor_id, stores.events.records_of(visitor_id)), segments, now_ms)
        membership = Membership(result.segments, result.expires_at) if result.segments else None
        due_at = result.due_ms // 1000 if result.due_ms is not None else None
        if result.due_ms is not None:
            due_ms[visitor_id] = result.due_ms
        before = stored.get(visitor_id)
        if _same(before, membership, due_at):
            unchanged += 1
        elif before is not None and before.build_id is not None and before.build_id > published:
            refused += 1  # a build being published owns the item (the write would be refused)
        elif stores.membership.put_evaluated(visitor_id, membership, due_at=due_at, published=published):
            written += 1
        else:
            refused += 1
    if due_ms:
        stores.due.put_due(due_ms)
    return Evaluation(
        published=published,
        visitors=len(live) + len(suppressed),
        suppressed=len(suppressed),
        written=written,
        unchanged=unchanged,
        refused=refused,
        due=len(due_ms),
    )


def _same(stored: StoredMembership | None, membership: Membership | None, due_at: int | None) -> bool:
    """Whether the stored item already says what the evaluation found."""
    if stored is None or stored.current is None or not stored.current.segments:
        # No item, or one with no segments: nothing to write for a visitor in no segment.
        return membership is None
    return stored.current == membership and stored.due_at == due_at
