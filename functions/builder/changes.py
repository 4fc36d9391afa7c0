"""Membership between builds: which visitors' stored membership must be written, and the
two line files a shard leaves for that (`members/`: every member of the build; `changes/`:
the visitors whose membership changed against the base build). One line per visitor,
`[visitor_id, [segment_id, ...], expires_at]`; a visitor who left every segment has `[]`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from functions.core.storage.bucket import LinesWriter
from functions.core.storage.membership import Membership
from functions.core.times import DAY_SECONDS

# A member's stored expiry is refreshed once the visitor's newer events push the real
# one this much further: so a returning visitor costs at most a write a day, and the
# served membership may end at most this much before the visitor's data does.
EXPIRY_REFRESH_SECONDS = DAY_SECONDS


def needs_write(stored: Membership, current: Membership) -> bool:
    if stored.segments != current.segments:
        return True
    if stored.expires_at is None or current.expires_at is None:
        return stored.expires_at != current.expires_at
    return current.expires_at - stored.expires_at > EXPIRY_REFRESH_SECONDS


def member_line(visitor_id: str, segment_ids: Iterable[str], expires_at: int | None) -> str:
    return json.dumps([visitor_id, sorted(segment_ids), expires_at])


def read_member_lines(lines: Iterable[str]) -> Iterator[tuple[str, Membership | None]]:
    """(visitor_id, membership) per line; None for a visitor who left every segment."""
    for line in lines:
        visitor_id, segment_ids, expires_at = json.loads(line)
        yield visitor_id, Membership(frozenset(segment_ids), expires_at) if segment_ids else None


class MembershipChanges:
    """A shard's membership changes against the base build, found while it scans."""

    def __init__(self, base: dict[str, Membership]) -> None:
        self._base = base
        self._writer = LinesWriter()

    @property
    def count(self) -> int:
        return self._writer.lines

    def visit(self, visitor_id: str, segment_ids: list[str], expires_at: int | None) -> None:
        stored = self._base.pop(visitor_id, None)
        if not segment_ids:
            if stored is not None:
                self._writer.write(member_line(visitor_id, (), None))  # left every segment
            return
        current = Membership(frozenset(segment_ids), expires_at)
        if stored is None or needs_write(stored, current):
            self._writer.write(member_line(visitor_id, segment_ids, expires_at))

    def finish(self) -> LinesWriter:
        for visitor_id in self._base:  # base members with no records left at all
            self._writer.write(member_line(visitor_id, (), None))
        return self._writer
