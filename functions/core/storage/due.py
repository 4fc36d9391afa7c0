"""The due index (DESIGN.md, "Freshness"): the visitors whose membership can next change
with no new data, filed under the minute of that instant, for the sweep to re-evaluate.

An entry is `{due_minute: "<YYYYmmddHHMM>#<k>", visitor_id, due_at}`; k spreads a minute's
entries over `DUE_BUCKETS` partitions. The sweep's checkpoint (the last minute it swept
completely) is one item of the same table, under a key no minute has."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from functions.core.storage.aws import TableAdapter, batch_write, n, s
from functions.core.tables import DUE, DUE_BUCKETS
from functions.core.times import DAY_SECONDS

assert DUE.sort_key is not None and DUE.ttl_attribute is not None
MINUTE_KEY: str = DUE.partition_key
VISITOR_KEY: str = DUE.sort_key
EXPIRES_AT: str = DUE.ttl_attribute
DUE_AT = "due_at"
CHECKPOINT_KEY = "checkpoint"
SWEPT_MINUTE = "swept_minute"
MINUTE_MS = 60_000
# An entry the sweep never reached (it was down longer than it looks back) goes away.
ENTRY_KEPT_SECONDS = 2 * DAY_SECONDS


def minute_of(instant_ms: int) -> int:
    """The minute an instant lies in, as minutes since the epoch."""
    return instant_ms // MINUTE_MS


def minute_label(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y%m%d%H%M")


def bucket_of(visitor_id: str) -> int:
    return zlib.crc32(visitor_id.encode()) % DUE_BUCKETS


def due_key(minute: int, bucket: int) -> str:
    return f"{minute_label(minute)}#{bucket}"


class DueStore(TableAdapter):
    def put_due(self, due_ms: Mapping[str, int]) -> int:
        """File each visitor under the minute of its due instant (BatchWriteItem, 25 a
        request); returns the requests made. An earlier entry at another minute stays:
        the sweep then re-evaluates the visitor once for nothing, never too late."""
        requests: list[dict[str, Any]] = [
            {
                "PutRequest": {
                    "Item": {
                        MINUTE_KEY: s(due_key(minute_of(due), bucket_of(visitor_id))),
                        VISITOR_KEY: s(visitor_id),
                        DUE_AT: n(due // 1000),
                        EXPIRES_AT: n(due // 1000 + ENTRY_KEPT_SECONDS),
                    }
                }
            }
            for visitor_id, due in due_ms.items()
        ]
        return batch_write(self.client, self.table_name, requests) if requests else 0

    def visitors_due(self, minute: int, bucket: int) -> list[str]:
        """The visitors filed under one (minute, bucket): one Query, paginated."""
        visitors: list[str] = []
        for page in self.client.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#m = :m",
            ExpressionAttributeNames={"#m": MINUTE_KEY, "#v": VISITOR_KEY},
            ExpressionAttributeValues={":m": s(due_key(minute, bucket))},
            ProjectionExpression="#v",
        ):
            visitors.extend(item[VISITOR_KEY]["S"] for item in page.get("Items", []))
        return visitors

    def delete_due(self, minute: int, bucket: int, visitor_ids: Iterable[str]) -> int:
        """Delete swept entries (BatchWriteItem); returns the requests made."""
        key = s(due_key(minute, bucket))
        requests: list[dict[str, Any]] = [
            {"DeleteRequest": {"Key": {MINUTE_KEY: key, VISITOR_KEY: s(v)}}} for v in dict.fromkeys(visitor_ids)
        ]
        return batch_write(self.client, self.table_name, requests) if requests else 0

    def swept_minute(self) -> int | None:
        """The last minute the sweep finished (minutes since the epoch), if any."""
        item = self.client.get_item(
            TableName=self.table_name,
            Key={MINUTE_KEY: s(CHECKPOINT_KEY), VISITOR_KEY: s(CHECKPOINT_KEY)},
            ConsistentRead=True,
        ).get("Item")
        return int(item[SWEPT_MINUTE]["N"]) if item else None

    def put_swept_minute(self, minute: int) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={MINUTE_KEY: s(CHECKPOINT_KEY), VISITOR_KEY: s(CHECKPOINT_KEY), SWEPT_MINUTE: n(minute)},
        )
