"""The suppression table: visitors who opted out or were erased. Every path honours it:
ingest and imports store nothing for them, builds leave them out, publishes never write
their membership, lookups answer no segments (through the membership tombstone written
with it). An item outlives the retention, so nothing older can bring the visitor back.

An erased visitor's item also carries its removal notices, `export_notices: {partner:
"<partner_uid>\t<segment|segment>"}`: what a partner's newest export held of it when
erasure removed it from that export, until the partner's next export tells the partner
to remove it (see functions/builder/export.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from functions.core.storage.aws import TableAdapter, batch_get, error_code, n, s
from functions.core.tables import SUPPRESSION

VISITOR_KEY = SUPPRESSION.partition_key
EXPIRES_AT = SUPPRESSION.ttl_attribute or "expires_at"
NOTICES = "export_notices"


@dataclass(frozen=True)
class Suppression:
    visitor_id: str
    reason: str  # optout, erase, gpc, dnt, consent
    suppressed_at: int  # epoch seconds
    expires_at: int
    # When the visitor's stored data was erased; None while that is still to do (an
    # opt-out suppresses at once, and the next build erases what is stored).
    erased_at: int | None = None
    # Removal notices still to be exported: {partner: "<partner_uid>\t<segment|segment>"}.
    export_notices: dict[str, str] = field(default_factory=dict)


class SuppressionStore(TableAdapter):
    def suppress(self, visitor_ids: Iterable[str], *, reason: str, at_s: int, keep_seconds: int) -> None:
        """Suppress each visitor from `at_s` on; its data is still to be erased. One write
        each, an update rather than a put: suppressing a visitor again (another opt-out)
        must not drop removal notices its partners' exports have still to write."""
        for visitor_id in dict.fromkeys(visitor_ids):
            self.client.update_item(
                TableName=self.table_name,
                Key={VISITOR_KEY: s(visitor_id)},
                UpdateExpression="SET #r = :r, #t = :t, #x = :x REMOVE #e",
                ExpressionAttributeNames={"#r": "reason", "#t": "suppressed_at", "#x": EXPIRES_AT, "#e": "erased_at"},
                ExpressionAttributeValues={":r": s(reason), ":t": n(at_s), ":x": n(at_s + keep_seconds)},
            )

    def mark_erased(self, visitor_id: str, at_s: int) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            UpdateExpression="SET erased_at = :t",
            ConditionExpression="attribute_exists(#v)",
            ExpressionAttributeNames={"#v": VISITOR_KEY},
            ExpressionAttributeValues={":t": n(at_s)},
        )

    def add_export_notices(self, visitor_id: str, notices: Mapping[str, str]) -> None:
        """Keep removal notices on the visitor's item, one per partner (a newer one for the
        same partner replaces it). The item must exist: erasure suppresses first."""
        if not notices:
            return
        names = {"#v": VISITOR_KEY, "#n": NOTICES}
        self.client.update_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            UpdateExpression="SET #n = if_not_exists(#n, :empty)",
            ConditionExpression="attribute_exists(#v)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        partners = {f"#p{index}": partner for index, partner in enumerate(notices)}
        self.client.update_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            UpdateExpression="SET " + ", ".join(f"#n.{name} = :{name[1:]}" for name in partners),
            ConditionExpression="attribute_exists(#v)",
            ExpressionAttributeNames=names | partners,
            ExpressionAttributeValues={f":{name[1:]}": s(notices[partner]) for name, partner in partners.items()},
        )

    def export_notices(self) -> dict[str, dict[str, str]]:
        """Every removal notice still to be exported: {partner: {visitor_id: notice}}."""
        notices: dict[str, dict[str, str]] = {}
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            FilterExpression="attribute_exists(#n)",
            ProjectionExpression="#v, #n",
            ExpressionAttributeNames={"#v": VISITOR_KEY, "#n": NOTICES},
        )
        for page in pages:
            for item in page.get("Items", []):
                for partner, notice in item[NOTICES]["M"].items():
                    notices.setdefault(partner, {})[item[VISITOR_KEY]["S"]] = notice["S"]
        return notices

    def clear_export_notice(self, visitor_id: str, partner: str, notice: str) -> bool:
        """Drop a notice the partner's export has written; False (and kept) when it has
        changed since it was read (a later erasure's: the next export writes it)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={VISITOR_KEY: s(visitor_id)},
                UpdateExpression="REMOVE #n.#p",
                ConditionExpression="#n.#p = :notice",
                ExpressionAttributeNames={"#n": NOTICES, "#p": partner},
                ExpressionAttributeValues={":notice": s(notice)},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

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
        export_notices={partner: value["S"] for partner, value in item.get(NOTICES, {}).get("M", {}).items()},
    )
