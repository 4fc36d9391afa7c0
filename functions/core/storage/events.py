"""The events table: one item per stored hit (and per imported trait), keyed by visitor
and event id, and the records a build reads back from it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from functions.core.hits import TrackedEvent
from functions.core.records import EventRecord, MappingRecord, Record, TraitRecord
from functions.core.storage.aws import TableAdapter, WriteIncomplete, batch_write, error_code, n, s
from functions.core.tables import EVENTS

# The table's key and TTL names, narrowed for the type checker.
assert EVENTS.sort_key is not None and EVENTS.ttl_attribute is not None
VISITOR_KEY: str = EVENTS.partition_key
EVENT_KEY: str = EVENTS.sort_key
EXPIRES_AT: str = EVENTS.ttl_attribute
# The sort key of a trait item: `trait#<source>.<trait>`.
TRAIT_PREFIX = "trait#"
# The sort key of our side of an ID sync mapping: `sync#<partner>`, one per partner.
MAPPING_PREFIX = "sync#"


class EventStore(TableAdapter):
    @staticmethod
    def to_item(event: TrackedEvent, retention_seconds: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            VISITOR_KEY: s(event.visitor_id),
            EVENT_KEY: s(event.event_id),
            "ts": n(event.ts_ms),
            "name": s(event.name),
            EXPIRES_AT: n(event.ts_ms // 1000 + retention_seconds),
        }
        for attr in ("url", "ref", "device"):
            value = getattr(event, attr)
            if value:
                item[attr] = s(value)
        for attr in ("country", "region", "city"):
            value = getattr(event.geo, attr)
            if value:
                item[attr] = s(value)
        if event.props:
            item["props"] = {"M": {k: s(v) for k, v in event.props.items()}}
        if event.client_ts_ms is not None:
            item["client_ts"] = n(event.client_ts_ms)
        return item

    @staticmethod
    def trait_item(
        visitor_id: str, name: str, value: str | float | bool, *, ts_ms: int, expires_at: int
    ) -> dict[str, Any]:
        """An imported trait: sort key `trait#<source>.<trait>`, so importing the same
        trait again (a re-delivered file, the source's next file) replaces it."""
        if isinstance(value, bool):
            stored: dict[str, Any] = {"BOOL": value}
        elif isinstance(value, (int, float)):
            stored = n(value)
        else:
            stored = s(value)
        return {
            VISITOR_KEY: s(visitor_id),
            EVENT_KEY: s(TRAIT_PREFIX + name),
            "value": stored,
            "ts": n(ts_ms),
            EXPIRES_AT: n(expires_at),
        }

    def put_traits(self, items: Sequence[dict[str, Any]]) -> int:
        """Store trait items with BatchWriteItem (25 a request); returns the requests made.
        Raises WriteIncomplete: the caller has checkpointed nothing past these items."""
        return batch_write(self.client, self.table_name, [{"PutRequest": {"Item": item}} for item in items])

    def put_item(self, item: dict[str, Any]) -> bool:
        """Store one stored-form item; False when it replaced one with the same key.

        Keys are deterministic (`eid:<client event id>`, or the id a deferred hit already
        carries), so a retried or replayed hit lands on its own key and is stored once.
        The write is unconditional, as `/collect`'s BatchWriteItem has to be: the latest
        copy of a retried hit wins, and `ALL_OLD` (free in write capacity) still tells a
        repeat apart for the duplicate metric."""
        response = self.client.put_item(TableName=self.table_name, Item=item, ReturnValues="ALL_OLD")
        return "Attributes" not in response

    def put_mapping(
        self, visitor_id: str, partner: str, partner_uid: str, *, ts_ms: int, expires_at: int
    ) -> str | None:
        """Our side of an ID sync: the partner's id for the visitor (latest sync wins).
        Returns the partner's id it replaced, if another (`ALL_OLD` costs no capacity)."""
        response = self.client.put_item(
            TableName=self.table_name,
            Item={
                VISITOR_KEY: s(visitor_id),
                EVENT_KEY: s(MAPPING_PREFIX + partner),
                "partner_uid": s(partner_uid),
                "ts": n(ts_ms),
                EXPIRES_AT: n(expires_at),
            },
            ReturnValues="ALL_OLD",
        )
        before = response.get("Attributes", {}).get("partner_uid", {}).get("S")
        return before if before != partner_uid else None

    def delete_mapping(self, visitor_id: str, partner: str, partner_uid: str) -> bool:
        """Delete the visitor's mapping to the partner if it still names `partner_uid` (a
        later sync of the visitor may have replaced it); whether it was deleted."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={VISITOR_KEY: s(visitor_id), EVENT_KEY: s(MAPPING_PREFIX + partner)},
                ConditionExpression="#p = :p",
                ExpressionAttributeNames={"#p": "partner_uid"},
                ExpressionAttributeValues={":p": s(partner_uid)},
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def mappings_of(self, visitor_id: str) -> list[MappingRecord]:
        """The visitor's ID sync mappings alone (one Query on the `sync#` sort keys)."""
        mappings: list[MappingRecord] = []
        for page in self.client.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#v = :v AND begins_with(#e, :p)",
            ExpressionAttributeNames={"#v": VISITOR_KEY, "#e": EVENT_KEY},
            ExpressionAttributeValues={":v": s(visitor_id), ":p": s(MAPPING_PREFIX)},
        ):
            for item in page.get("Items", []):
                record = record_from_item(item)[1]
                if isinstance(record, MappingRecord):
                    mappings.append(record)
        return mappings

    def put_many(self, events: Sequence[TrackedEvent], retention_seconds: int) -> tuple[int, list[dict[str, Any]]]:
        """Store events with BatchWriteItem (repeated keys in one call are stored once).
        Returns how many were written and the items that could not be, for the fallback queue."""
        unique: dict[tuple[str, str], TrackedEvent] = {}
        for event in events:
            unique.setdefault((event.visitor_id, event.event_id), event)
        requests = [{"PutRequest": {"Item": self.to_item(e, retention_seconds)}} for e in unique.values()]
        try:
            batch_write(self.client, self.table_name, requests)
        except WriteIncomplete as incomplete:
            unwritten = [request["PutRequest"]["Item"] for request in incomplete.remaining]
            return len(requests) - len(unwritten), unwritten
        return len(requests), []

    def delete_visitors(self, visitor_ids: Iterable[str]) -> int:
        """Delete every item (events and traits) of each visitor; returns how many."""
        keys: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for visitor_id in visitor_ids:
            pages = paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression="#v = :v",
                ExpressionAttributeNames={"#v": VISITOR_KEY, "#e": EVENT_KEY},
                ExpressionAttributeValues={":v": s(visitor_id)},
                ProjectionExpression="#v, #e",
            )
            for page in pages:
                keys.extend(page.get("Items", []))
        batch_write(self.client, self.table_name, [{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def records_of(self, visitor_id: str) -> list[Record]:
        """Every stored record of one visitor (a subject access request)."""
        records: list[Record] = []
        for page in self.client.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#v = :v",
            ExpressionAttributeNames={"#v": VISITOR_KEY},
            ExpressionAttributeValues={":v": s(visitor_id)},
        ):
            records.extend(record_from_item(item)[1] for item in page.get("Items", []))
        return records

    def scan(self, segment: int = 0, total_segments: int = 1) -> Iterator[dict[str, Any]]:
        """Every item of one parallel-scan segment, page by page."""
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        if total_segments > 1:
            kwargs.update(Segment=segment, TotalSegments=total_segments)
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(**kwargs):
            yield from page.get("Items", [])

    def scan_records(self, segment: int = 0, total_segments: int = 1) -> Iterator[tuple[str, Record]]:
        """(visitor_id, record) of every item of one parallel-scan segment, in scan order:
        DynamoDB returns a partition key's items together, so a visitor's records are
        contiguous (see `records.group_by_visitor`)."""
        return map(record_from_item, self.scan(segment, total_segments))


def is_mapping(item: Mapping[str, Any]) -> bool:
    """Whether an events-table item is our side of an ID sync mapping, not a hit."""
    return bool(item[EVENT_KEY]["S"].startswith(MAPPING_PREFIX))


def record_from_item(item: Mapping[str, Any]) -> tuple[str, Record]:
    """(visitor_id, record) of a stored events-table item."""
    visitor_id = item[VISITOR_KEY]["S"]
    expires = item.get(EXPIRES_AT)
    expires_at = int(expires["N"]) if expires else None
    ts_ms = int(item["ts"]["N"])
    sort_key = item[EVENT_KEY]["S"]
    if sort_key.startswith(TRAIT_PREFIX):
        raw = item["value"]
        value: object = raw.get("S", raw.get("BOOL"))
        if "N" in raw:
            value = float(raw["N"])
        return visitor_id, TraitRecord(sort_key[len(TRAIT_PREFIX) :], value, ts_ms, expires_at)
    if sort_key.startswith(MAPPING_PREFIX):
        return visitor_id, MappingRecord(sort_key[len(MAPPING_PREFIX) :], item["partner_uid"]["S"], ts_ms, expires_at)

    def text(name: str) -> str | None:
        attr = item.get(name)
        return attr["S"] if attr else None

    props = item.get("props")
    return visitor_id, EventRecord(
        ts_ms=ts_ms,
        name=item["name"]["S"],
        url=text("url"),
        ref=text("ref"),
        props={k: v["S"] for k, v in props["M"].items()} if props else {},
        country=text("country"),
        region=text("region"),
        city=text("city"),
        device=text("device"),
        expires_at=expires_at,
    )
