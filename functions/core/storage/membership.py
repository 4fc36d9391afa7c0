"""The membership table: the segments each visitor is in, for one-read lookups. An item
expires with the visitor's data (its TTL is the latest expiry of the visitor's records)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.core.storage.aws import BATCH_GET_LIMIT, TableAdapter, backoff, batch_write, n, s
from functions.core.tables import MEMBERSHIP

VISITOR_KEY = MEMBERSHIP.partition_key
EXPIRES_AT = MEMBERSHIP.ttl_attribute or "expires_at"


@dataclass(frozen=True)
class Membership:
    """A visitor's segments, and when the data behind them expires (epoch seconds): the
    latest expiry of the visitor's records, after which it is in no segment."""

    segments: frozenset[str]
    expires_at: int | None = None


def _live_segments(item: Mapping[str, Any], now_s: float) -> list[str]:
    expires = item.get(EXPIRES_AT)
    if expires is not None and int(expires["N"]) <= now_s:
        return []
    return sorted(item["segments"]["SS"])


class MembershipStore(TableAdapter):
    def get(self, visitor_id: str, now_s: float | None = None) -> list[str]:
        """The visitor's segments; none once the membership's TTL has passed, even if
        DynamoDB has not deleted the item yet (it may take days)."""
        response = self.client.get_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            ProjectionExpression="#s, #t",
            ExpressionAttributeNames={"#s": "segments", "#t": EXPIRES_AT},
        )
        item = response.get("Item")
        return _live_segments(item, time.time() if now_s is None else now_s) if item else []

    def get_many(
        self, visitor_ids: Sequence[str], max_attempts: int = 8, now_s: float | None = None
    ) -> dict[str, list[str]]:
        """Segments of each visitor (absent and expired ones left out): BatchGetItem per
        100 ids, unprocessed keys retried with backoff."""
        now_s = time.time() if now_s is None else now_s
        found: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(visitor_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{VISITOR_KEY: s(v)} for v in unique[start : start + BATCH_GET_LIMIT]],
                    "ProjectionExpression": "#v, #s, #t",
                    "ExpressionAttributeNames": {"#v": VISITOR_KEY, "#s": "segments", "#t": EXPIRES_AT},
                }
            }
            attempt = 0
            while keys:
                response = self.client.batch_get_item(RequestItems=keys)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    segments = _live_segments(item, now_s)
                    if segments:
                        found[item[VISITOR_KEY]["S"]] = segments
                keys = response.get("UnprocessedKeys") or {}
                if keys:
                    attempt += 1
                    if attempt >= max_attempts:
                        raise RuntimeError("membership lookup keys still unprocessed")
                    backoff(attempt)
        return found

    def scan(self) -> Iterator[tuple[str, Membership]]:
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                expires = item.get(EXPIRES_AT)
                yield (
                    item[VISITOR_KEY]["S"],
                    Membership(frozenset(item["segments"]["SS"]), int(expires["N"]) if expires else None),
                )

    def apply(self, changes: Mapping[str, Membership | None], build_id: str) -> int:
        """Write the new membership of each changed visitor (None or no segments deletes
        the visitor). Returns the number of BatchWriteItem calls."""
        requests: list[dict[str, Any]] = []
        for visitor_id, membership in sorted(changes.items()):
            key = {VISITOR_KEY: s(visitor_id)}
            if membership is not None and membership.segments:
                item = {**key, "segments": {"SS": sorted(membership.segments)}, "build_id": s(build_id)}
                if membership.expires_at is not None:
                    item[EXPIRES_AT] = n(membership.expires_at)
                requests.append({"PutRequest": {"Item": item}})
            else:
                requests.append({"DeleteRequest": {"Key": key}})
        return batch_write(self.client, self.table_name, requests)
