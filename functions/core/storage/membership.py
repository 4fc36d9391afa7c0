"""The membership table: the segments each visitor is in, for one-read lookups. An item
expires with the visitor's data (its TTL is the latest expiry of the visitor's records).

A publish writes a visitor's new membership before it publishes the build, so each item
written by a build also keeps what the visitor was in as of the published build before it
(`previous_*`). A lookup passes the build its catalog names (`as_of`) and serves the
item's membership as of that build: an unpublished build's writes stay invisible until
the catalog names that build, so a publish that fails half-way changes no answer, and
lookups and the catalog's destinations always describe the same build.

A visitor who leaves every segment keeps an item with no segments (and the previous ones)
for a day, long enough for every lookup to see the new build; DynamoDB's TTL then deletes it.

A suppressed visitor's item is a tombstone (`suppressed`, no segments): lookups answer no
segments from the moment it is written, and no build writes over it, as every membership
write is conditional on its absence.

The evaluator (DESIGN.md, "Freshness") writes a visitor's membership between builds, on a
hit and at its due instant, as of the published build (`build_id` is that build's), and a
build writes it for the visitors whose membership changes before the next build is due.
Such an item has a schedule: `due_at` (epoch seconds, rounded down), when the membership
can next change with no new data, `next_segments` (absent: none), the membership from then
on, and `next_due_at`, when that can change in turn; the evaluator's also hold the changes
after that one, up to its `STEPS` (`later`: `[[at, [segment_id, ...]], ...]`, the first
at `next_due_at`) and when the last of them can change (`until`). Lookups serve
`segments` until `due_at`, then each step from its instant, then none once what the item
knows has ended until the sweep has re-evaluated the visitor: never a membership past the
instant it may have changed. So the item answers by itself up to then, and the sweep is
needed only then (`Schedule.sweep_at`): a visitor whose membership changes no more often
than that with no new data (most: they leave their segments) needs no sweep at all. An
item may hold no segments now and some from `due_at` on. The evaluator never replaces an
item of a build not published yet (a later `build_id`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from functions.core.storage.aws import WRITE_THREADS, TableAdapter, batch_get, batch_write, error_code, n, s
from functions.core.storage.item_size import WRITE_UNIT_BYTES, item_bytes
from functions.core.tables import MEMBERSHIP
from functions.core.times import DAY_SECONDS

VISITOR_KEY = MEMBERSHIP.partition_key
EXPIRES_AT = MEMBERSHIP.ttl_attribute or "expires_at"
SEGMENTS = "segments"
BUILD_ID = "build_id"
PREVIOUS_SEGMENTS = "previous_segments"
PREVIOUS_EXPIRES_AT = "previous_expires_at"
SUPPRESSED = "suppressed"
DUE_AT = "due_at"
NEXT_SEGMENTS = "next_segments"
NEXT_DUE_AT = "next_due_at"
LATER = "later"
UNTIL = "until"
_NOT_SUPPRESSED = f"attribute_not_exists({SUPPRESSED})"
# How long the item of a visitor who left every segment is kept for lookups that still
# serve the build before (a lookup's catalog is at most minutes old).
LEFT_KEPT_SECONDS = DAY_SECONDS
# What a lookup reads of an item.
_NAMES = {
    "#s": SEGMENTS,
    "#t": EXPIRES_AT,
    "#b": BUILD_ID,
    "#ps": PREVIOUS_SEGMENTS,
    "#pt": PREVIOUS_EXPIRES_AT,
    "#d": DUE_AT,
    "#ns": NEXT_SEGMENTS,
    "#nd": NEXT_DUE_AT,
    "#l": LATER,
    "#u": UNTIL,
}


@dataclass(frozen=True)
class Membership:
    """A visitor's segments, and when the data behind them expires (epoch seconds): the
    latest expiry of the visitor's records, after which it is in no segment."""

    segments: frozenset[str]
    expires_at: int | None = None


@dataclass(frozen=True)
class Schedule:
    """When a membership can next change with no new data (epoch seconds, rounded down),
    the segments from then on, and when those can change in turn (None: never, or not
    before the evaluation's horizon). An evaluation may know further steps (`later`: from
    each instant, the segments; the first from `next_due_at`), and then when the last of
    them can change (`until`)."""

    due_at: int
    next_segments: frozenset[str] = frozenset()
    next_due_at: int | None = None
    later: tuple[tuple[int, frozenset[str]], ...] = ()
    until: int | None = None

    @classmethod
    def of(
        cls,
        due_ms: int | None,
        next_segments: frozenset[str],
        next_due_ms: int | None,
        later: Sequence[tuple[int, frozenset[str]]] = (),
        until_ms: int | None = None,
    ) -> Schedule | None:
        """From an evaluation's instants in milliseconds (None: no change foreseen)."""
        if due_ms is None:
            return None
        return cls(
            due_ms // 1000,
            next_segments,
            next_due_ms // 1000 if next_due_ms is not None else None,
            tuple((at_ms // 1000, segments) for at_ms, segments in later),
            until_ms // 1000 if until_ms is not None else None,
        )

    @property
    def steps(self) -> tuple[tuple[int, frozenset[str]], ...]:
        """Each change it knows: from when, which segments."""
        return ((self.due_at, self.next_segments), *self.later)

    @property
    def end(self) -> int | None:
        """When what it knows ends: the last step can change then (None: never, or not
        before the evaluation's horizon)."""
        return self.until if self.later else self.next_due_at

    def segments_at(self, now_s: float) -> frozenset[str] | None:
        """The segments from its due instant on, at `now_s` (at or after `due_at`): None
        once past what it knows (the sweep is on its way)."""
        end = self.end
        if end is not None and end <= now_s:
            return None
        segments = self.next_segments
        for at, then in self.later:
            if at > now_s:
                break
            segments = then
        return segments

    def ahead(self, now_s: float) -> tuple[tuple[tuple[int, frozenset[str]], ...], int | None]:
        """The changes it knows after `now_s`, and when what it knows ends."""
        return tuple(step for step in self.steps if step[0] > now_s), self.end

    def sweep_at(self, expires_at: int | None, *, horizon_limited: bool) -> int | None:
        """When the sweep must re-evaluate a visitor with this schedule and data expiring at
        `expires_at` (epoch seconds): at the first instant its item does not answer for,
        `end`; never when nothing changes after its last step, or not before the data
        expires (lookups answer nothing from then on, and the TTL removes the item). An
        evaluation that stopped at a horizon (a build's) does not know what follows its
        step: the sweep then searches past the horizon from `due_at`."""
        end = self.end
        sweep_at = end if end is not None else self.due_at if horizon_limited else None
        return sweep_at if sweep_at is not None and (expires_at is None or sweep_at < expires_at) else None


def needs_item(segments: frozenset[str], schedule: Schedule | None) -> bool:
    """Whether a visitor in `segments` now, with this schedule, needs an item: not when it
    is in no segment now nor from any instant its schedule knows."""
    return bool(segments) or (schedule is not None and any(then for _, then in schedule.steps))


@dataclass(frozen=True)
class MembershipChange:
    """A visitor's membership as of a new build (None: in no segment) and as of the
    published build before it, which lookups serve until the new one is published; and
    the new membership's schedule, if it changes before the next build is due."""

    current: Membership | None
    previous: Membership | None
    schedule: Schedule | None = None


@dataclass(frozen=True)
class StoredMembership:
    """A visitor's item as a build reads it: the membership the build `build_id` wrote
    (None: the visitor left every segment; no segments with an expiry: none until its
    due instant, some from then on) and the one before it."""

    current: Membership | None
    build_id: str | None = None
    previous: Membership | None = None
    # When the current membership can next change, and what it is from then on.
    schedule: Schedule | None = None

    def live(self, now_s: int) -> Membership | None:
        """The membership a lookup at `now_s` serves from the current side: past `due_at`
        the step of its schedule at `now_s`; past its end, none (the sweep is on its way)."""
        schedule, current = self.schedule, self.current
        if schedule is None or now_s < schedule.due_at:
            return current
        segments = schedule.segments_at(now_s)
        if not segments:
            return None
        return Membership(segments, current.expires_at if current is not None else None)

    def as_of(self, published: str | None, now_s: int) -> Membership | None:
        """The membership lookups serve at `now_s` while `published` is the published build."""
        if self.build_id is None or (published is not None and self.build_id <= published):
            return self.live(now_s)
        return self.previous


def _stored(item: Mapping[str, Any]) -> StoredMembership:
    written_by = item.get(BUILD_ID)
    current, schedule = _membership(item, SEGMENTS, EXPIRES_AT), _schedule(item)
    if current is None and needs_item(frozenset(), schedule):  # in segments from a due instant on
        current = Membership(frozenset(), int(item[EXPIRES_AT]["N"]) if EXPIRES_AT in item else None)
    return StoredMembership(
        current=current,
        build_id=written_by["S"] if written_by else None,
        previous=_membership(item, PREVIOUS_SEGMENTS, PREVIOUS_EXPIRES_AT),
        schedule=schedule,
    )


def _schedule(item: Mapping[str, Any]) -> Schedule | None:
    due, then, next_due = item.get(DUE_AT), item.get(NEXT_SEGMENTS), item.get(NEXT_DUE_AT)
    if due is None:
        return None
    until = item.get(UNTIL)
    return Schedule(
        int(due["N"]),
        frozenset(then["SS"]) if then else frozenset(),
        int(next_due["N"]) if next_due else None,
        _later(item),
        int(until["N"]) if until else None,
    )


def _later(item: Mapping[str, Any]) -> tuple[tuple[int, frozenset[str]], ...]:
    """An item's steps after the first: `[[at, [segment_id, ...]], ...]`."""
    later = item.get(LATER)
    if later is None:
        return ()
    steps = (step["L"] for step in later["L"])
    return tuple((int(at["N"]), frozenset(name["S"] for name in then["L"])) for at, then in steps)


def _put_schedule(item: dict[str, Any], schedule: Schedule | None) -> None:
    if schedule is None:
        return
    item[DUE_AT] = n(schedule.due_at)
    if schedule.next_segments:
        item[NEXT_SEGMENTS] = {"SS": sorted(schedule.next_segments)}
    if schedule.next_due_at is not None:
        item[NEXT_DUE_AT] = n(schedule.next_due_at)
    if schedule.later:
        item[LATER] = {"L": [{"L": [n(at), {"L": [s(i) for i in sorted(then)]}]} for at, then in schedule.later]}
        if schedule.until is not None:
            item[UNTIL] = n(schedule.until)


def _membership(item: Mapping[str, Any], segments: str, expires: str) -> Membership | None:
    if segments not in item:
        return None
    expires_at = item.get(expires)
    return Membership(frozenset(item[segments]["SS"]), int(expires_at["N"]) if expires_at else None)


def _live_segments(item: Mapping[str, Any], now_s: float, as_of: str | None) -> list[str]:
    """The item's segments as of the published build `as_of`, none once expired."""
    segments_name, expires_name = SEGMENTS, EXPIRES_AT
    written_by = item.get(BUILD_ID)
    published = written_by is None or (as_of is not None and written_by["S"] <= as_of)
    if not published:
        segments_name, expires_name = PREVIOUS_SEGMENTS, PREVIOUS_EXPIRES_AT
    expires = item.get(expires_name)
    if expires is not None and int(expires["N"]) <= now_s:
        return []
    due = item.get(DUE_AT)
    schedule = _schedule(item) if published and due is not None and int(due["N"]) <= now_s else None
    if schedule is not None:  # changed since: the schedule's step at now_s (none past its end)
        return sorted(schedule.segments_at(now_s) or ())
    segments = item.get(segments_name)
    # None: a tombstone, a visitor who left every segment, or a new member
    return sorted(segments["SS"]) if segments is not None else []


class MembershipStore(TableAdapter):
    def get(self, visitor_id: str, *, as_of: str | None, now_s: float | None = None) -> list[str]:
        """The visitor's segments as of the published build `as_of`; none once the
        membership's TTL has passed, even if DynamoDB has not deleted the item yet (it
        may take days)."""
        response = self.client.get_item(
            TableName=self.table_name,
            Key={VISITOR_KEY: s(visitor_id)},
            ProjectionExpression=", ".join(_NAMES),
            ExpressionAttributeNames=_NAMES,
        )
        item = response.get("Item")
        return _live_segments(item, time.time() if now_s is None else now_s, as_of) if item else []

    def get_many(
        self, visitor_ids: Sequence[str], *, as_of: str | None, now_s: float | None = None
    ) -> dict[str, list[str]]:
        """Segments of each visitor as of `as_of` (absent and expired ones left out):
        BatchGetItem per 100 ids, unprocessed keys retried with backoff."""
        now_s = time.time() if now_s is None else now_s
        found: dict[str, list[str]] = {}
        names = {"#v": VISITOR_KEY, **_NAMES}
        for item in batch_get(self.client, self.table_name, VISITOR_KEY, visitor_ids, names=names):
            segments = _live_segments(item, now_s, as_of)
            if segments:
                found[item[VISITOR_KEY]["S"]] = segments
        return found

    def scan(self) -> Iterator[tuple[str, StoredMembership]]:
        """Every visitor's stored membership (tombstones left out: they are no membership)."""
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                if SUPPRESSED in item:
                    continue
                yield item[VISITOR_KEY]["S"], _stored(item)

    def stored_many(self, visitor_ids: Iterable[str]) -> dict[str, StoredMembership]:
        """The stored items of these visitors (absent ones and tombstones left out):
        BatchGetItem per 100 ids."""
        names = {"#v": VISITOR_KEY, "#x": SUPPRESSED, **_NAMES}
        return {
            item[VISITOR_KEY]["S"]: _stored(item)
            for item in batch_get(self.client, self.table_name, VISITOR_KEY, visitor_ids, names=names)
            if SUPPRESSED not in item
        }

    def put_evaluated(
        self,
        visitor_id: str,
        membership: Membership,
        *,
        schedule: Schedule | None,
        published: str,
    ) -> bool:
        """Store the visitor's membership and its schedule as the evaluator computed them
        with the definitions of the published build `published`. A visitor in no segment
        now and none from its due instant on has no item (it is deleted); `expires_at` is
        the data's expiry, the item's TTL.

        Conditional on no tombstone (suppression wins) and on the item not being a build's
        that is not published yet (a later build id): that build's publish brings its own
        answer, and lookups, catalog and destinations must keep naming one build. False
        when the condition refused the write."""
        condition = f"{_NOT_SUPPRESSED} AND (attribute_not_exists(#b) OR #b <= :b)"
        names = {"#b": BUILD_ID}
        values = {":b": s(published)}
        try:
            if not needs_item(membership.segments, schedule):
                self.client.delete_item(
                    TableName=self.table_name,
                    Key={VISITOR_KEY: s(visitor_id)},
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
                return True
            self.client.put_item(
                TableName=self.table_name,
                Item=_evaluated_item(visitor_id, membership, schedule, published),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def apply(self, changes: Mapping[str, MembershipChange], build_id: str, *, now_s: float | None = None) -> int:
        """Write each changed visitor's item for `build_id`, never over a suppressed
        visitor's tombstone: one PutItem per visitor, conditional on its absence (a write
        refused for a tombstone is dropped), on `WRITE_THREADS` threads. A conditional
        PutItem costs half a transactional write. Returns the number of requests."""
        from concurrent.futures import ThreadPoolExecutor  # the builder's alone: not on the pixel's cold start

        now_s = time.time() if now_s is None else now_s
        items = [_item(visitor_id, change, build_id, now_s) for visitor_id, change in changes.items()]
        if not items:
            return 0
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(items))) as pool:
            list(pool.map(self._put_unless_suppressed, items))
        return len(items)

    def _put_unless_suppressed(self, item: dict[str, Any]) -> None:
        try:
            self.client.put_item(TableName=self.table_name, Item=item, ConditionExpression=_NOT_SUPPRESSED)
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

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
            "segments": sorted(item[SEGMENTS]["SS"]) if SEGMENTS in item else [],
            "build_id": item["build_id"]["S"] if "build_id" in item else None,
            "expires_at": int(expires["N"]) if expires else None,
            "previous_segments": sorted(item[PREVIOUS_SEGMENTS]["SS"]) if PREVIOUS_SEGMENTS in item else [],
            # when the segments can next change with no new data, and what they are then
            "due_at": int(item[DUE_AT]["N"]) if DUE_AT in item else None,
            "next_segments": sorted(item[NEXT_SEGMENTS]["SS"]) if NEXT_SEGMENTS in item else [],
            # and the changes after that one, each from its instant
            "later": [{"at": at, "segments": sorted(then)} for at, then in _later(item)],
            "suppressed": SUPPRESSED in item,
        }


def _evaluated_item(
    visitor_id: str, membership: Membership, schedule: Schedule | None, published: str
) -> dict[str, Any]:
    """The item the evaluator writes (see MembershipStore.put_evaluated)."""
    item: dict[str, Any] = {VISITOR_KEY: s(visitor_id), BUILD_ID: s(published)}
    if membership.expires_at is not None:
        item[EXPIRES_AT] = n(membership.expires_at)
    if membership.segments:
        item[SEGMENTS] = {"SS": sorted(membership.segments)}
        # A lookup whose catalog still names the build before `published` (for at most its
        # refresh interval) reads the previous side: the fresh answer there too, not none;
        # its catalog still filters it by that build's destinations.
        item[PREVIOUS_SEGMENTS] = item[SEGMENTS]
        if membership.expires_at is not None:
            item[PREVIOUS_EXPIRES_AT] = item[EXPIRES_AT]
    _put_schedule(item, schedule)
    return item


def within_a_write_unit(
    visitor_id: str, membership: Membership, schedule: Schedule | None, published: str
) -> Schedule | None:
    """`schedule` less as many of its later steps, the last first, as keep the item the
    evaluator writes within one write unit (1 KB): a visitor in many segments then has
    fewer changes ahead on its item, what the item knows ends where the first step left
    out begins, and the sweep is filed there, rather than every write costing more."""
    while (
        schedule is not None
        and schedule.later
        and item_bytes(_evaluated_item(visitor_id, membership, schedule, published)) > WRITE_UNIT_BYTES
    ):
        *kept, (left_out_at, _) = schedule.later
        schedule = replace(schedule, later=tuple(kept), until=left_out_at if kept else None)
    return schedule


def _item(visitor_id: str, change: MembershipChange, build_id: str, now_s: float) -> dict[str, Any]:
    """The item of a visitor's membership written by `build_id`. One who left every segment
    keeps the previous segments for `LEFT_KEPT_SECONDS` (or until their data expires), or
    until its data expires if it is in segments again from its due instant on."""
    item: dict[str, Any] = {VISITOR_KEY: s(visitor_id), BUILD_ID: s(build_id)}
    current, previous, schedule = change.current, change.previous, change.schedule
    if current is not None and current.segments:
        item[SEGMENTS] = {"SS": sorted(current.segments)}
        expires_at = current.expires_at
    elif current is not None and schedule is not None and schedule.next_segments:
        expires_at = current.expires_at
    else:
        expires_at = int(now_s) + LEFT_KEPT_SECONDS
        if previous is not None and previous.expires_at is not None:
            expires_at = min(expires_at, previous.expires_at)
    if expires_at is not None:
        item[EXPIRES_AT] = n(expires_at)
    if previous is not None and previous.segments:
        item[PREVIOUS_SEGMENTS] = {"SS": sorted(previous.segments)}
        if previous.expires_at is not None:
            item[PREVIOUS_EXPIRES_AT] = n(previous.expires_at)
    _put_schedule(item, schedule)
    return item
