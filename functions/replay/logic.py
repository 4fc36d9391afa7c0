"""Writing one deferred message: shared by the replay function and `dmp replay`."""

from __future__ import annotations

from typing import Any, Protocol

from functions.core.storage.fallback import deferred_items


class HitStore(Protocol):
    """The events table as replay writes it (EventStore)."""

    def put_item(self, item: dict[str, Any]) -> bool: ...


def replay_message(body: str, store: HitStore) -> tuple[int, int]:
    """(written, already stored) for one fallback message."""
    written = duplicates = 0
    for item in deferred_items(body):
        if store.put_item(item):
            written += 1
        else:
            duplicates += 1
    return written, duplicates
