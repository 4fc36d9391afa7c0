"""Membership between builds: which visitors' stored membership must be written, and the
two line files a shard leaves for that. One line per visitor.

- `members/`: every member of the build, `[visitor_id, [segment_id, ...], expires_at]`,
  and for a member synced with partners a fourth element, its partners' own ids for it,
  `{partner: partner_uid}` (only when there are any): the exports write them.
- `changes/`: the visitors whose membership changed against the base build,
  `[visitor_id, [segment_id, ...], expires_at, [previous segment_id, ...], previous
  expires_at]` (`[]` for a visitor who left every segment, or was in none before): the
  previous membership is what lookups serve until this build is published. A visitor
  whose membership changes before the build's horizon (DESIGN.md, "Freshness") is listed
  too, changed or not, with its schedule as three more elements, `due_at, [next
  segment_id, ...], next_due_at`; and so is one with records since the base build, which
  the evaluator may have stored (publish then compares with the table, and corrects any
  drift). With no base build, the file lists the visitors with a schedule alone."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from functions.core.storage.bucket import LinesWriter
from functions.core.storage.membership import Membership, MembershipChange, Schedule
from functions.core.times import DAY_SECONDS

if TYPE_CHECKING:
    from functions.builder.report import SegmentMoves

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


def member_line(
    visitor_id: str, segment_ids: Iterable[str], expires_at: int | None, partner_ids: Mapping[str, str] | None = None
) -> str:
    if partner_ids:
        return json.dumps([visitor_id, sorted(segment_ids), expires_at, dict(sorted(partner_ids.items()))])
    return json.dumps([visitor_id, sorted(segment_ids), expires_at])


@dataclass(frozen=True, slots=True)
class MemberLine:
    """One line of a members or changes file."""

    visitor_id: str
    segment_ids: tuple[str, ...]
    expires_at: int | None
    partner_ids: Mapping[str, str]

    @classmethod
    def parse(cls, line: str) -> MemberLine:
        """Either shape: with or without the partner ids (older builds have none)."""
        fields = json.loads(line)
        return cls(fields[0], tuple(fields[1]), fields[2], fields[3] if len(fields) > 3 else {})


def read_member_lines(lines: Iterable[str]) -> Iterator[tuple[str, Membership | None]]:
    """(visitor_id, membership) per line; None for a visitor who left every segment."""
    for line in lines:
        member = MemberLine.parse(line)
        segments = frozenset(member.segment_ids)
        yield member.visitor_id, Membership(segments, member.expires_at) if segments else None


def change_line(
    visitor_id: str, current: Membership | None, previous: Membership | None, schedule: Schedule | None = None
) -> str:
    now_in, before = current or _NONE, previous or _NONE
    fields: list[object] = [
        visitor_id,
        sorted(now_in.segments),
        now_in.expires_at,
        sorted(before.segments),
        before.expires_at,
    ]
    if schedule is not None:
        fields += [schedule.due_at, sorted(schedule.next_segments), schedule.next_due_at]
    return json.dumps(fields)


def read_change_lines(lines: Iterable[str]) -> Iterator[tuple[str, MembershipChange]]:
    """Either shape: with or without a schedule (builds before schedules have none). A
    visitor in no segment now but in some from its due instant on keeps its expiry."""
    for line in lines:
        fields = json.loads(line)
        visitor_id, segment_ids, expires_at, previous_ids, previous_expires_at = fields[:5]
        schedule = Schedule(fields[5], frozenset(fields[6]), fields[7]) if len(fields) > 5 else None
        keeps_expiry = segment_ids or (schedule is not None and schedule.next_segments)
        yield (
            visitor_id,
            MembershipChange(
                current=Membership(frozenset(segment_ids), expires_at) if keeps_expiry else None,
                previous=Membership(frozenset(previous_ids), previous_expires_at) if previous_ids else None,
                schedule=schedule,
            ),
        )


_NONE = Membership(frozenset())
_NO_SEGMENTS: frozenset[str] = frozenset()


class MembershipChanges:
    """A shard's membership changes against the base build (None: no base build, so
    only the visitors with a schedule are listed), found while it scans."""

    def __init__(self, base: dict[str, Membership] | None, *, moves: SegmentMoves | None = None) -> None:
        self._base = base
        self._writer = LinesWriter()
        # The report's added and removed members per segment, counted from the same diff.
        self._moves = moves

    @property
    def count(self) -> int:
        return self._writer.lines

    def visit(
        self,
        visitor_id: str,
        segment_ids: list[str],
        expires_at: int | None,
        schedule: Schedule | None = None,
        *,
        recent: bool = False,
    ) -> None:
        """One visitor's membership (`expires_at`: its data's expiry, kept when it is in no
        segment now but has a schedule); `recent`: it has records since the base build."""
        current = Membership(frozenset(segment_ids), expires_at) if segment_ids or schedule else None
        if self._base is None:
            if schedule is not None:
                self._writer.write(change_line(visitor_id, current, None, schedule))
            return
        stored = self._base.pop(visitor_id, None)
        if self._moves is not None:
            self._moves.moved(stored.segments if stored is not None else _NO_SEGMENTS, segment_ids)
        if not segment_ids:
            if stored is not None or schedule is not None or recent:
                self._writer.write(change_line(visitor_id, current, stored, schedule))  # left every segment
            return
        assert current is not None
        if stored is None or needs_write(stored, current) or schedule is not None or recent:
            self._writer.write(change_line(visitor_id, current, stored, schedule))

    def finish(self) -> LinesWriter:
        for visitor_id, stored in (self._base or {}).items():  # base members with no records left at all
            self._writer.write(change_line(visitor_id, None, stored))
            if self._moves is not None:
                self._moves.moved(stored.segments, ())
        return self._writer
