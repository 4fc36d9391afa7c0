"""Writing one deferred message: shared by the replay function and `dmp replay`."""

from __future__ import annotations

from functions.core.storage import EventStore, deferred_items


def replay_message(body: str, store: EventStore) -> tuple[int, int]:
    """(written, already stored) for one fallback message."""
    written = duplicates = 0
    for item in deferred_items(body):
        if store.put_item(item):
            written += 1
        else:
            duplicates += 1
    return written, duplicates
