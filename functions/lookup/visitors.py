"""Whose segments a lookup asks for: a visitor named by our id, or by the calling
partner's own user id (`id_type=partner`), resolved through that partner's mappings
only (ID sync). Another partner's id, an unknown one and an expired mapping all resolve
to no visitor, so to no segments.

At most two DynamoDB requests per lookup, or per batch of 100: the id map's, then the
membership's, and none of the membership when no id resolved. Segments are read as of the
build the caller's catalog names (`as_of`), so they are always that build's. Plain Python, for the
validated API (api.py) and the bidding fast path (fast_path.py) alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

DMP = "dmp"
PARTNER = "partner"


class VisitorSegments(Protocol):
    """The membership table as the lookup reads it (MembershipStore)."""

    def get(self, visitor_id: str, *, as_of: str | None) -> list[str]: ...

    def get_many(self, visitor_ids: Sequence[str], *, as_of: str | None) -> dict[str, list[str]]: ...


class PartnerIds(Protocol):
    """The partners' side of the ID sync map (IdMapStore)."""

    def resolve(self, partner: str, partner_uid: str, *, now_s: int) -> str | None: ...

    def resolve_many(self, partner: str, partner_uids: Iterable[str], *, now_s: int) -> dict[str, str]: ...


class Visitors:
    """The segment ids of the users a lookup names, by our id or the partner's."""

    def __init__(self, membership: VisitorSegments, id_map: PartnerIds, clock: Callable[[], float] = time.time) -> None:
        self._membership = membership
        self._id_map = id_map
        self._clock = clock

    def segment_ids(self, uid: str, *, id_type: str, partner: str, as_of: str | None) -> list[str]:
        """The segment ids of `uid` as of the published build `as_of`."""
        if id_type != PARTNER:
            return self._membership.get(uid, as_of=as_of)
        visitor_id = self._id_map.resolve(partner, uid, now_s=int(self._clock()))
        return self._membership.get(visitor_id, as_of=as_of) if visitor_id is not None else []

    def segment_ids_of_many(
        self, uids: Sequence[str], *, id_type: str, partner: str, as_of: str | None
    ) -> dict[str, list[str]]:
        """{uid: segment ids as of `as_of`} of those of `uids` in a segment, keyed by the
        ids as asked."""
        if id_type != PARTNER:
            return self._membership.get_many(uids, as_of=as_of)
        visitors = self._id_map.resolve_many(partner, uids, now_s=int(self._clock()))
        if not visitors:
            return {}
        found = self._membership.get_many(list(dict.fromkeys(visitors.values())), as_of=as_of)
        return {uid: found[visitor_id] for uid, visitor_id in visitors.items() if visitor_id in found}
