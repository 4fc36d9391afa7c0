"""Writing one deferred message: shared by the replay function and `dmp replay`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from functions.core.storage.events import VISITOR_KEY
from functions.core.storage.fallback import deferred_items


class HitStore(Protocol):
    """The events table as replay writes it (EventStore)."""

    def put_item(self, item: dict[str, Any]) -> bool: ...


class SuppressedVisitors(Protocol):
    """The suppression list (SuppressionStore)."""

    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]: ...


@dataclass(frozen=True)
class Replayed:
    written: int = 0
    duplicates: int = 0  # already stored (a message delivered twice)
    suppressed: int = 0  # of visitors who opted out or were erased since: dropped


def replay_message(body: str, store: HitStore, suppression: SuppressedVisitors | None = None) -> Replayed:
    """Write one fallback message's hits, but none of a visitor suppressed meanwhile: a
    hit deferred before an opt-out or erasure must not bring the visitor back."""
    items = deferred_items(body)
    suppressed = suppression.suppressed({item[VISITOR_KEY]["S"] for item in items}) if suppression else set()
    written = duplicates = dropped = 0
    for item in items:
        if item[VISITOR_KEY]["S"] in suppressed:
            dropped += 1
        elif store.put_item(item):
            written += 1
        else:
            duplicates += 1
    return Replayed(written, duplicates, dropped)
