"""Names and keys of the stored resources, shared by the storage adapters, the CDK
stack and the local stack, so the three cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableDefinition:
    """A DynamoDB table as the code uses it: its keys and its TTL attribute."""

    logical_id: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    # The table's stream (DynamoDB Streams view type), if something reads its changes.
    stream_view: str | None = None

    def key_schema(self) -> list[dict[str, str]]:
        schema = [{"AttributeName": self.partition_key, "KeyType": "HASH"}]
        if self.sort_key:
            schema.append({"AttributeName": self.sort_key, "KeyType": "RANGE"})
        return schema

    def attribute_definitions(self) -> list[dict[str, str]]:
        return [{"AttributeName": key["AttributeName"], "AttributeType": "S"} for key in self.key_schema()]


# One item per stored hit (or imported trait); the visitor id as partition key keeps
# all of a visitor's records in one parallel-scan segment, so a build shard owns them.
# Its stream (new images) feeds the evaluator, which re-evaluates the visitors it touches.
EVENTS = TableDefinition(
    "EventsTable", partition_key="visitor_id", sort_key="event_id", ttl_attribute="expires_at", stream_view="NEW_IMAGE"
)
# One item per visitor who is in at least one segment: a lookup is one GetItem. It
# expires with the visitor's data (the TTL is the latest expiry of its events). A
# suppressed visitor's item is a tombstone (`suppressed`, no segments), which no build
# overwrites: the lookup answers nothing from the moment of the opt-out, in its one read.
MEMBERSHIP = TableDefinition("MembershipTable", partition_key="visitor_id", ttl_attribute="expires_at")
# One item per partner key, addressed by the key's SHA-256 so the key itself is never
# stored, and one profile per partner (`profile:<name>`: its ID sync registration).
PARTNERS = TableDefinition("PartnersTable", partition_key="key_hash")
# One item, `name = "latest"`: the catalog of the newest published build as the lookup
# serves it (build id, evaluation time, each segment's name, description, size and
# destinations), a copy of what `latest.json` and its manifest say. The lookup reads it
# with the DynamoDB client it already has, so its cold start never creates an S3 client.
CATALOG = TableDefinition("CatalogTable", partition_key="name")
CATALOG_ITEM_NAME = "latest"
# One item per visitor who opted out or was erased, kept at least as long as the
# retention, so nothing replayed, built or imported later brings the visitor back.
SUPPRESSION = TableDefinition("SuppressionTable", partition_key="visitor_id", ttl_attribute="expires_at")

# ID sync, the partner's side: one item per (partner, partner user id), keyed
# `<partner>:<partner uid>` (a partner name holds no colon), naming our visitor id: a
# lookup by the partner's own id is one read here. Latest sync wins; it expires with the
# retention. Our side (visitor -> the partner's id) is an item in the events table
# (`sync#<partner>`), so builds and exports read it with the visitor's records and an
# erasure deletes it with them.
ID_MAP = TableDefinition("IdMapTable", partition_key="partner_uid", ttl_attribute="expires_at")

# The due index: one item per visitor whose membership can next change with no new data
# (a window sliding past its events), under the minute of that instant: `due_minute` =
# `<YYYYmmddHHMM>#<k>`, k = crc32(visitor id) % DUE_BUCKETS, so a busy minute's writes
# spread over several partitions. The sweep queries each past minute's buckets and
# re-evaluates exactly those visitors; its checkpoint is an item of the same table.
DUE = TableDefinition("DueTable", partition_key="due_minute", sort_key="visitor_id", ttl_attribute="expires_at")
DUE_BUCKETS = 10

ALL_TABLES = (EVENTS, MEMBERSHIP, PARTNERS, CATALOG, SUPPRESSION, ID_MAP, DUE)
