"""The due index (DESIGN.md, "Freshness"): the visitors whose item stops answering for
their membership with no new data, filed under the minute of that instant (where the
steps their item holds end: `Schedule.sweep_at`), for the sweep to re-evaluate.

An entry is `{due_minute: "<YYYYmmddHHMM>#<k>", visitor_id, due_at}`; k spreads a minute's
entries over `DUE_BUCKETS` partitions. The sweep's checkpoint (the last minute it swept
completely) is one item of the same table, under a key no minute has.

Nothing deletes an entry: the sweep never reads a minute at or before its checkpoint
again, and DynamoDB's TTL removes each entry `ENTRY_KEPT_SECONDS` after its minute, for
free, where a delete would cost a write unit per swept visitor."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
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
    def put_due(self, due_ms: Mapping[str, int], *, now_ms: int | None = None) -> int:
        """File each visitor under the minute of its due instant (BatchWriteItem, 25 a
        request); returns the requests made. A due instant in a minute before the minute
        of `now_ms` is filed under the minute of `now_ms` instead: the sweep sweeps whole
        minutes before its own now, so it may have passed that earlier minute already,
        never the current one (None: no such floor). An earlier entry at another minute
        stays: the sweep then re-evaluates the visitor once for nothing, never too late."""
        floor = minute_of(now_ms) if now_ms is not None else None
        requests: list[dict[str, Any]] = []
        for visitor_id, due in due_ms.items():
            minute = minute_of(due) if floor is None else max(minute_of(due), floor)
            requests.append(
                {
                    "PutRequest": {
                        "Item": {
                            MINUTE_KEY: s(due_key(minute, bucket_of(visitor_id))),
                            VISITOR_KEY: s(visitor_id),
                            DUE_AT: n(due // 1000),
                            # kept as long after the minute it is filed under as after its due instant
                            EXPIRES_AT: n(max(due // 1000, minute * 60) + ENTRY_KEPT_SECONDS),
                        }
                    }
                }
            )
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
