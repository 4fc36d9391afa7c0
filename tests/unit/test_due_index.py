"""The due index's writes (functions/core/storage/due.py): under which minute a visitor is
filed, and how long its entry is kept, seen through the requests it makes."""

from __future__ import annotations

from typing import Any

from functions.core.storage.due import (
    DUE_AT,
    ENTRY_KEPT_SECONDS,
    EXPIRES_AT,
    MINUTE_KEY,
    VISITOR_KEY,
    DueStore,
    bucket_of,
    due_key,
    minute_of,
)

NOW = 1_717_243_230_000  # 2024-06-01T12:00:30Z
MINUTE = 60_000


class RecordingClient:
    """A DynamoDB client that accepts every BatchWriteItem and keeps its items."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        for requests in RequestItems.values():
            self.items.extend(request["PutRequest"]["Item"] for request in requests)
        return {}


def filed(due_ms: dict[str, int], **now: int) -> dict[str, dict[str, Any]]:
    client = RecordingClient()
    DueStore("due", client=client).put_due(due_ms, **now)  # type: ignore[arg-type]
    return {item[VISITOR_KEY]["S"]: item for item in client.items}


def test_a_due_instant_in_a_past_minute_is_filed_under_the_current_minute():
    # GIVEN a due instant five minutes ago, which a sweep may have passed already
    due = NOW - 5 * MINUTE
    # WHEN it is filed at NOW
    item = filed({"v1": due}, now_ms=NOW)["v1"]
    # THEN it is filed under NOW's minute, which no sweep has passed, and keeps its instant
    assert item[MINUTE_KEY]["S"] == due_key(minute_of(NOW), bucket_of("v1"))
    assert item[DUE_AT]["N"] == str(due // 1000)
    # AND it is kept as long after that minute as an entry is after its own
    assert int(item[EXPIRES_AT]["N"]) == minute_of(NOW) * 60 + ENTRY_KEPT_SECONDS


def test_due_instants_in_the_current_minute_or_later_keep_their_own_minute():
    # GIVEN one instant earlier in the current minute and one in an hour
    earlier_this_minute, in_an_hour = NOW - 20_000, NOW + 60 * MINUTE
    # WHEN they are filed at NOW
    items = filed({"v1": earlier_this_minute, "v2": in_an_hour}, now_ms=NOW)
    # THEN each is under the minute of its instant, kept for ENTRY_KEPT_SECONDS after it
    assert items["v1"][MINUTE_KEY]["S"] == due_key(minute_of(earlier_this_minute), bucket_of("v1"))
    assert items["v2"][MINUTE_KEY]["S"] == due_key(minute_of(in_an_hour), bucket_of("v2"))
    assert int(items["v2"][EXPIRES_AT]["N"]) == in_an_hour // 1000 + ENTRY_KEPT_SECONDS


def test_without_now_a_due_instant_is_filed_under_its_own_minute_even_in_the_past():
    # GIVEN a caller that gives no current instant (no floor)
    due = NOW - 5 * MINUTE
    # WHEN it files a past instant
    item = filed({"v1": due})["v1"]
    # THEN the entry is under that instant's minute, as before the floor existed
    assert item[MINUTE_KEY]["S"] == due_key(minute_of(due), bucket_of("v1"))
    assert int(item[EXPIRES_AT]["N"]) == due // 1000 + ENTRY_KEPT_SECONDS
