"""The membership table: the segments each visitor is in, for one-read lookups. An item
expires with the visitor's data (its TTL is the latest expiry of the visitor's records).

A suppressed visitor's item is a tombstone (`suppressed`, no segments): lookups answer no
segments from the moment it is written, and no build writes over it, as every membership
write is conditional on its absence."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from functions.core.storage.aws import TableAdapter, backoff, batch_get, batch_write, error_code, n, s
from functions.core.tables import MEMBERSHIP

VISITOR_KEY = MEMBERSHIP.partition_key
EXPIRES_AT = MEMBERSHIP.ttl_attribute or "expires_at"
SUPPRESSED = "suppressed"
_NOT_SUPPRESSED = f"attribute_not_exists({SUPPRESSED})"
TRANSACTION_LIMIT = 100


@dataclass(frozen=True)
class Membership:
    """A visitor's segments, and when the data behind them expires (epoch seconds): the
    latest expiry of the visitor's records, after which it is in no segment."""

    segments: frozenset[str]
    expires_at: int | None = None


def _live_segments(item: Mapping[str, Any], now_s: float) -> list[str]:
    segments = item.get("segments")
    if segments is None:  # a suppressed visitor's tombstone
        return []
    expires = item.get(EXPIRES_AT)
    if expires is not None and int(expires["N"]) <= now_s:
        return []
    return sorted(segments["SS"])


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

    def get_many(self, visitor_ids: Sequence[str], now_s: float | None = None) -> dict[str, list[str]]:
        """Segments of each visitor (absent and expired ones left out): BatchGetItem per
        100 ids, unprocessed keys retried with backoff."""
        now_s = time.time() if now_s is None else now_s
        found: dict[str, list[str]] = {}
        names = {"#v": VISITOR_KEY, "#s": "segments", "#t": EXPIRES_AT}
        for item in batch_get(self.client, self.table_name, VISITOR_KEY, visitor_ids, names=names):
            segments = _live_segments(item, now_s)
            if segments:
                found[item[VISITOR_KEY]["S"]] = segments
        return found

    def scan(self) -> Iterator[tuple[str, Membership]]:
        """Every visitor's membership (tombstones left out: they are no membership)."""
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                if "segments" not in item:
                    continue
                expires = item.get(EXPIRES_AT)
                yield (
                    item[VISITOR_KEY]["S"],
                    Membership(frozenset(item["segments"]["SS"]), int(expires["N"]) if expires else None),
                )

    def apply(self, changes: Mapping[str, Membership | None], build_id: str, max_attempts: int = 8) -> int:
        """Write the new membership of each changed visitor (None or no segments deletes
        the visitor), never over a suppressed visitor's tombstone: every write is
        conditional on its absence, in transactions of 100, and a write refused for a
        tombstone is dropped. Returns the number of TransactWriteItems calls."""
        requests: list[dict[str, Any]] = []
        for visitor_id, membership in sorted(changes.items()):
            key = {VISITOR_KEY: s(visitor_id)}
            if membership is not None and membership.segments:
                item = {**key, "segments": {"SS": sorted(membership.segments)}, "build_id": s(build_id)}
                if membership.expires_at is not None:
                    item[EXPIRES_AT] = n(membership.expires_at)
                requests.append(
                    {"Put": {"TableName": self.table_name, "Item": item, "ConditionExpression": _NOT_SUPPRESSED}}
                )
            else:
                requests.append(
                    {"Delete": {"TableName": self.table_name, "Key": key, "ConditionExpression": _NOT_SUPPRESSED}}
                )
        calls = 0
        for start in range(0, len(requests), TRANSACTION_LIMIT):
            pending = requests[start : start + TRANSACTION_LIMIT]
            attempt = 0
            while pending:
                calls += 1
                try:
                    self.client.transact_write_items(TransactItems=pending)  # type: ignore[arg-type]
                    break
                except ClientError as error:
                    if error_code(error) != "TransactionCanceledException":
                        raise
                    reasons = error.response.get("CancellationReasons", [])  # type: ignore[typeddict-item]
                    tombstoned = {
                        i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"
                    }
                    if not tombstoned:  # a conflict with a concurrent write: try again
                        attempt += 1
                        if attempt >= max_attempts:
                            raise
                        backoff(attempt)
                    pending = [request for i, request in enumerate(pending) if i not in tombstoned]
        return calls

    def suppress(self, visitor_ids: Iterable[str], expires_at: int) -> None:
        """Replace each visitor's membership with a tombstone, kept until `expires_at`."""
        items: list[dict[str, Any]] = [
            {VISITOR_KEY: s(visitor_id), SUPPRESSED: {"BOOL": True}, EXPIRES_AT: n(expires_at)}
            for visitor_id in dict.fromkeys(visitor_ids)
        ]
        if len(items) == 1:
            self.client.put_item(TableName=self.table_name, Item=items[0])
        else:
            batch_write(self.client, self.table_name, [{"PutRequest": {"Item": item}} for item in items])

    def describe(self, visitor_id: str) -> dict[str, Any] | None:
        """The visitor's stored item as plain values (for a subject access request)."""
        item = self.client.get_item(TableName=self.table_name, Key={VISITOR_KEY: s(visitor_id)}).get("Item")
        if item is None:
            return None
        expires = item.get(EXPIRES_AT)
        return {
            "segments": sorted(item["segments"]["SS"]) if "segments" in item else [],
            "build_id": item["build_id"]["S"] if "build_id" in item else None,
            "expires_at": int(expires["N"]) if expires else None,
            "suppressed": SUPPRESSED in item,
        }
