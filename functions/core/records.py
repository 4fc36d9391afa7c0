"""What the builder reads back from the events table: plain records, no validation
(they were validated when stored), grouped into one history per visitor."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class EventRecord:
    ts_ms: int
    name: str
    url: str | None = None
    ref: str | None = None
    props: dict[str, str] = field(default_factory=dict)
    country: str | None = None
    region: str | None = None
    city: str | None = None
    device: str | None = None
    expires_at: int | None = None  # epoch seconds, as DynamoDB TTL
    _folded_url: str | None = field(default=None, repr=False, compare=False)

    def folded_url(self) -> str:
        """The URL case-folded once, however many rules compare against it."""
        folded = self._folded_url
        if folded is None:
            folded = self._folded_url = (self.url or "").casefold()
        return folded


@dataclass(slots=True)
class TraitRecord:
    name: str
    value: object
    ts_ms: int
    expires_at: int | None = None


@dataclass(slots=True)
class MappingRecord:
    """Our side of an ID sync: the partner's own id for this visitor (latest sync wins)."""

    partner: str
    partner_uid: str
    ts_ms: int
    expires_at: int | None = None


Record = EventRecord | TraitRecord | MappingRecord


@dataclass(slots=True)
class VisitorHistory:
    visitor_id: str
    events: list[EventRecord] = field(default_factory=list)
    traits: list[TraitRecord] = field(default_factory=list)
    # The partners' own ids for the visitor, from ID sync: {partner: partner uid}. Not
    # something rules read; exports write them beside our id.
    partner_ids: dict[str, str] = field(default_factory=dict)


def group_by_visitor(records: Iterable[tuple[str, Record]]) -> Iterator[VisitorHistory]:
    """Histories from (visitor_id, record) pairs in scan order, holding one visitor at a
    time. DynamoDB keeps the items of a partition key together (an item collection) and a
    scan returns them one after the other, so a visitor is complete when the next starts."""
    current: VisitorHistory | None = None
    for visitor_id, record in records:
        if current is None or current.visitor_id != visitor_id:
            if current is not None:
                yield current
            current = VisitorHistory(visitor_id)
        if isinstance(record, EventRecord):
            current.events.append(record)
        elif isinstance(record, TraitRecord):
            current.traits.append(record)
        else:
            current.partner_ids[record.partner] = record.partner_uid
    if current is not None:
        yield current
