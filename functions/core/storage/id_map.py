"""The ID sync map, the partner's side: `<partner>:<partner uid>` -> our visitor id.

A lookup by a partner's own id is one GetItem here (a batch, one BatchGetItem), then the
membership read it would have made by our id. Our side of a mapping (visitor -> the
partner's id) is an events-table item (`EventStore.put_mapping`), so builds and exports
meet it with the visitor's records and an erasure deletes it with them; the erasure
deletes this side too (`forget`), only where it still names the erased visitor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from functions.core.storage.aws import TableAdapter, batch_get, error_code, n, s
from functions.core.tables import ID_MAP

PARTNER_UID_KEY = ID_MAP.partition_key
EXPIRES_AT = ID_MAP.ttl_attribute or "expires_at"
VISITOR = "visitor_id"


def map_key(partner: str, partner_uid: str) -> str:
    """The item key of a partner's user id. A partner name holds no colon, so the first
    one separates the two whatever the partner's id holds."""
    return f"{partner}:{partner_uid}"


class IdMapStore(TableAdapter):
    def put(self, partner: str, partner_uid: str, visitor_id: str, *, at_s: int, expires_at: int) -> str | None:
        """Map the partner's id to `visitor_id` (the latest sync wins); returns the visitor
        it named before, if another."""
        response = self.client.put_item(
            TableName=self.table_name,
            Item={
                PARTNER_UID_KEY: s(map_key(partner, partner_uid)),
                VISITOR: s(visitor_id),
                "synced_at": n(at_s),
                EXPIRES_AT: n(expires_at),
            },
            ReturnValues="ALL_OLD",
        )
        before = response.get("Attributes", {}).get(VISITOR, {}).get("S")
        return before if before != visitor_id else None

    def resolve(self, partner: str, partner_uid: str, *, now_s: int) -> str | None:
        """Our visitor id for the partner's id, or None (unknown, or expired and not yet
        deleted by DynamoDB's TTL)."""
        item = self.client.get_item(
            TableName=self.table_name, Key={PARTNER_UID_KEY: s(map_key(partner, partner_uid))}
        ).get("Item")
        return _live_visitor(item, now_s) if item else None

    def resolve_many(self, partner: str, partner_uids: Iterable[str], *, now_s: int) -> dict[str, str]:
        """{partner uid: our visitor id} for those of `partner_uids` the partner synced:
        BatchGetItem per 100."""
        prefix = f"{partner}:"
        items = batch_get(
            self.client,
            self.table_name,
            PARTNER_UID_KEY,
            (map_key(partner, uid) for uid in partner_uids),
            names={"#k": PARTNER_UID_KEY, "#v": VISITOR, "#x": EXPIRES_AT},
        )
        found: dict[str, str] = {}
        for item in items:
            visitor_id = _live_visitor(item, now_s)
            if visitor_id is not None:
                found[item[PARTNER_UID_KEY]["S"][len(prefix) :]] = visitor_id
        return found

    def forget(self, mappings: Iterable[tuple[str, str]], visitor_id: str) -> int:
        """Delete the partner's side of each (partner, partner uid) that still names
        `visitor_id` (a later sync may have given the id to another visitor); returns how many."""
        deleted = 0
        for partner, partner_uid in mappings:
            try:
                self.client.delete_item(
                    TableName=self.table_name,
                    Key={PARTNER_UID_KEY: s(map_key(partner, partner_uid))},
                    ConditionExpression="#v = :v",
                    ExpressionAttributeNames={"#v": VISITOR},
                    ExpressionAttributeValues={":v": s(visitor_id)},
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                continue
            deleted += 1
        return deleted


def _live_visitor(item: Mapping[str, Any], now_s: int) -> str | None:
    expires = item.get(EXPIRES_AT)
    if expires is not None and int(expires["N"]) <= now_s:
        return None
    return str(item[VISITOR]["S"])
