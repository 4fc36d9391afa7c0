"""The partners table: one item per partner key, addressed by the key's SHA-256, so the
key itself is never stored; and one profile item per partner (`profile:<name>`, which no
SHA-256 hex digest can be), holding its ID sync registration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.core.storage.aws import TableAdapter, s
from functions.core.tables import PARTNERS

KEY_HASH = PARTNERS.partition_key
PROFILE_KEY_PREFIX = "profile:"


@dataclass(frozen=True)
class PartnerProfile:
    """A partner's registration. `sync` says it may sync ids with us at all (deny by
    default); `sync_url` is the `https://` template of its outbound sync, if any."""

    name: str
    sync: bool = False
    sync_url: str | None = None
    updated_at: str = ""


@dataclass(frozen=True)
class PartnerKey:
    key_hash: str
    name: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class PartnerStore(TableAdapter):
    def add(self, key_hash: str, name: str, created_at: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={KEY_HASH: s(key_hash), "name": s(name), "created_at": s(created_at)},
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": KEY_HASH},
        )

    def get(self, key_hash: str) -> PartnerKey | None:
        response = self.client.get_item(TableName=self.table_name, Key={KEY_HASH: s(key_hash)})
        item = response.get("Item")
        return None if item is None else _partner_key(item)

    def list(self) -> list[PartnerKey]:
        keys: list[PartnerKey] = []
        for page in self.client.get_paginator("scan").paginate(TableName=self.table_name):
            keys.extend(_partner_key(item) for item in page.get("Items", []) if not _is_profile(item))
        return sorted(keys, key=lambda p: (p.name, p.created_at))

    def put_profile(self, profile: PartnerProfile) -> None:
        item: dict[str, Any] = {
            KEY_HASH: s(PROFILE_KEY_PREFIX + profile.name),
            "name": s(profile.name),
            "sync": {"BOOL": profile.sync},
            "updated_at": s(profile.updated_at),
        }
        if profile.sync_url:
            item["sync_url"] = s(profile.sync_url)
        self.client.put_item(TableName=self.table_name, Item=item)

    def profile(self, name: str) -> PartnerProfile | None:
        """The partner's profile; None for a partner never registered (which may not sync)."""
        item = self.client.get_item(TableName=self.table_name, Key={KEY_HASH: s(PROFILE_KEY_PREFIX + name)}).get("Item")
        return None if item is None else _profile(item)

    def profiles(self) -> tuple[PartnerProfile, ...]:
        pages = self.client.get_paginator("scan").paginate(TableName=self.table_name)
        found = (_profile(item) for page in pages for item in page.get("Items", []) if _is_profile(item))
        return tuple(sorted(found, key=lambda p: p.name))

    def active_names(self) -> set[str]:
        """The partners with at least one active key."""
        return {p.name for p in self.list() if p.active}

    def revoke_keys(self, name: str, revoked_at: str) -> tuple[str, ...]:
        """Revoke every active key of `name`; returns the hashes of the keys revoked."""
        active = tuple(p.key_hash for p in self.list() if p.name == name and p.active)
        for hashed in active:
            self.client.update_item(
                TableName=self.table_name,
                Key={KEY_HASH: s(hashed)},
                UpdateExpression="SET revoked_at = :t",
                ExpressionAttributeValues={":t": s(revoked_at)},
            )
        return active


def _is_profile(item: Mapping[str, Any]) -> bool:
    return bool(item[KEY_HASH]["S"].startswith(PROFILE_KEY_PREFIX))


def _profile(item: Mapping[str, Any]) -> PartnerProfile:
    return PartnerProfile(
        name=item["name"]["S"],
        sync=bool(item.get("sync", {}).get("BOOL", False)),
        sync_url=item["sync_url"]["S"] if "sync_url" in item else None,
        updated_at=item.get("updated_at", {}).get("S", ""),
    )


def _partner_key(item: Mapping[str, Any]) -> PartnerKey:
    return PartnerKey(
        key_hash=item[KEY_HASH]["S"],
        name=item["name"]["S"],
        created_at=item["created_at"]["S"],
        revoked_at=item["revoked_at"]["S"] if "revoked_at" in item else None,
    )
