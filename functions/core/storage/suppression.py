"""The suppression table: visitors who opted out or were erased. Every path honours it:
ingest and imports store nothing for them, builds leave them out, publishes never write
their membership, lookups answer no segments (through the membership tombstone written
with it). An item outlives the retention, so nothing older can bring the visitor back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from functions.core.storage.aws import TableAdapter, batch_get, batch_write, n, s
from functions.core.tables import SUPPRESSION

VISITOR_KEY = SUPPRESSION.partition_key
EXPIRES_AT = SUPPRESSION.ttl_attribute or "expires_at"


@dataclass(frozen=True)
class Suppression:
    visitor_id: str
    reason: str  # optout, erase, gpc, dnt, consent
    suppressed_at: int  # epoch seconds
    expires_at: int
    # When the visitor's stored data was erased; None while that is still to do (an
    # opt-out suppresses at once, and the next build erases what is stored).
    erased_at: int | None = None


class SuppressionStore(TableAdapter):
    def suppress(self, visitor_ids: Iterable[str], *, reason: str, at_s: int, keep_seconds: int) -> None:
        """Suppress each visitor from `at_s` on; its data is still to be erased."""
        items = [
            {
                VISITOR_KEY: s(visitor_id),
                "reason": s(reason),
                "suppressed_at": n(at_s),
                EXPIRES_AT: n(at_s + keep_seconds),
            }
            for visitor_id in dict.fromkeys(visitor_ids)
        ]
        if len(items) == 1:
            self.client.put_item(TableName=self.table_name, Item=items[0])
        else:
            batch_write(self.client, self.table_name, [{"PutRequest": {"Item": item}} for item in items])

    def mark_erased(self, visitor_id: str, at_s: int) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            UpdateExpression="SET erased_at = :t",
            ConditionExpression="attribute_exists(#v)",
            ExpressionAttributeNames={"#v": VISITOR_KEY},
            ExpressionAttributeValues={":t": n(at_s)},
        )

    def get(self, visitor_id: str) -> Suppression | None:
        item = self.client.get_item(TableName=self.table_name, Key={VISITOR_KEY: s(visitor_id)}).get("Item")
        return None if item is None else _suppression(item)

    def is_suppressed(self, visitor_id: str) -> bool:
        """One eventually consistent read of the key alone (half a read unit): the ingest
        path asks it of every returning visitor's hit."""
        item = self.client.get_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            ProjectionExpression="#v",
            ExpressionAttributeNames={"#v": VISITOR_KEY},
        ).get("Item")
        return item is not None

    def suppressed(self, visitor_ids: Iterable[str]) -> set[str]:
        """Which of `visitor_ids` are suppressed: BatchGetItem per 100 ids."""
        items = batch_get(self.client, self.table_name, VISITOR_KEY, visitor_ids, names={"#v": VISITOR_KEY})
        return {item[VISITOR_KEY]["S"] for item in items}

    def scan(self, *, pending_only: bool = False) -> Iterator[Suppression]:
        """Every suppression; with `pending_only`, those whose data is still to be erased."""
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        if pending_only:
            kwargs["FilterExpression"] = "attribute_not_exists(erased_at)"
        for page in self.client.get_paginator("scan").paginate(**kwargs):
            for item in page.get("Items", []):
                yield _suppression(item)

    def visitor_ids(self) -> frozenset[str]:
        return frozenset(suppression.visitor_id for suppression in self.scan())


def _suppression(item: Mapping[str, Any]) -> Suppression:
    erased = item.get("erased_at")
    return Suppression(
        visitor_id=item[VISITOR_KEY]["S"],
        reason=item["reason"]["S"],
        suppressed_at=int(item["suppressed_at"]["N"]),
        expires_at=int(item[EXPIRES_AT]["N"]),
        erased_at=int(erased["N"]) if erased else None,
    )
