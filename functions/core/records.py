"""What the builder reads back from the events table: plain records, no validation
(they were validated when stored)."""

from __future__ import annotations

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
class VisitorHistory:
    visitor_id: str
    events: list[EventRecord] = field(default_factory=list)
    traits: list[TraitRecord] = field(default_factory=list)
