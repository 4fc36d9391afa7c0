"""A segment build in three stages, the same in AWS (a Step Functions state machine:
plan -> Map over shards -> publish) and in `dmp build` (one process):

1. `plan`: load and validate every definition (an invalid set stops here, before
   anything is written), fix the build's id and evaluation time, note which build is
   published now, and save the plan under the build's prefix for the other stages.
2. `run_shard`: one parallel-scan segment of the events table, streamed: a visitor's
   records share a partition key, so they arrive together and in one segment only; each
   visitor is evaluated as soon as its records are complete and then forgotten. A shard
   owns its visitors, so results do not depend on the shard count. It writes one part
   file per segment, the membership changes of its visitors against the published build
   (when that build had the same shards), and its result.
3. `publish`: writes the manifest, brings the membership table to the new build by
   writing only the visitors whose segment set changed, then writes `latest.json` last
   of the build's S3 objects, so no reader ever sees half a build; then copies the
   build's catalog into the catalog table, where the lookup reads it.

The build id is derived from the evaluation time, so the same scheduled event delivered
twice produces the same build, not two. Every write of a stage is idempotent: a stage
that fails is simply run again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.core.engine import VisitorView, compile_segments, segments_of
from functions.core.records import EventRecord, VisitorHistory
from functions.core.segments import SegmentDefinition, load_definitions
from functions.core.storage import (
    CatalogStore,
    EventStore,
    LinesWriter,
    Membership,
    MembershipStore,
    SegmentsBucket,
    record_from_item,
)
from functions.core.tables import BUILDS_PREFIX, LATEST_KEY, manifest_key, part_key

# Published builds kept in the bucket (the newest included), for partners who download
# part files and for looking back; older ones are deleted when a build is published.
KEEP_BUILDS = 24
# The membership table's state: which build it holds, and whether an update is under way.
MEMBERSHIP_STATE_KEY = "membership-state.json"


def build_id_for(evaluated_at: datetime) -> str:
    return evaluated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (a naive one is UTC), truncated to whole seconds."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def build_time_now() -> datetime:
    """Now, as a build's evaluation time: whole seconds, rounded up, so the hits already
    received in the current second are part of the build (events after `now` are not)."""
    return (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)


def plan_key(build_id: str) -> str:
    return f"{BUILDS_PREFIX}{build_id}/plan.json"


def shard_result_key(build_id: str, shard: int) -> str:
    return f"{BUILDS_PREFIX}{build_id}/shards/part-{shard:05d}.json"


def changes_key(build_id: str, shard: int) -> str:
    return f"{BUILDS_PREFIX}{build_id}/changes/part-{shard:05d}.jsonl.gz"


def members_key(build_id: str, shard: int) -> str:
    return f"{BUILDS_PREFIX}{build_id}/members/part-{shard:05d}.jsonl.gz"


# A member's stored expiry is refreshed once the visitor's newer events push the real
# one this much further: so a returning visitor costs at most a write a day, and the
# served membership may end at most this much before the visitor's data does.
EXPIRY_REFRESH_SECONDS = 86_400


def _expiry(history: VisitorHistory) -> int | None:
    """When the last of the visitor's records expires: after that it is in no segment."""
    expiries = [r.expires_at for r in history.events if r.expires_at is not None]
    expiries.extend(r.expires_at for r in history.traits if r.expires_at is not None)
    return max(expiries) if expiries else None


def needs_write(stored: Membership, current: Membership) -> bool:
    if stored.segments != current.segments:
        return True
    if stored.expires_at is None or current.expires_at is None:
        return stored.expires_at != current.expires_at
    return current.expires_at - stored.expires_at > EXPIRY_REFRESH_SECONDS


class _Changes:
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
                self._writer.write(json.dumps([visitor_id, [], None]))  # left every segment
            return
        current = Membership(frozenset(segment_ids), expires_at)
        if stored is None or needs_write(stored, current):
            self._writer.write(json.dumps([visitor_id, sorted(segment_ids), expires_at]))

    def finish(self) -> LinesWriter:
        for visitor_id in self._base:  # base members with no records left at all
            self._writer.write(json.dumps([visitor_id, [], None]))
        return self._writer


@dataclass(frozen=True)
class BuildPlan:
    build_id: str
    evaluated_at: datetime
    shards: int
    definitions: tuple[SegmentDefinition, ...]
    # The build published when this one was planned, if it can serve as the base of
    # per-shard membership changes (same shard count, membership table in step with it).
    base_build_id: str | None = None

    @property
    def now_ms(self) -> int:
        return int(self.evaluated_at.timestamp() * 1000)

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "evaluated_at": iso(self.evaluated_at),
            "shards": self.shards,
            "definitions": [d.model_dump(mode="json", by_alias=True, exclude_none=True) for d in self.definitions],
            "base_build_id": self.base_build_id,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BuildPlan:
        return cls(
            build_id=document["build_id"],
            evaluated_at=parse_time(document["evaluated_at"]),
            shards=int(document["shards"]),
            definitions=tuple(SegmentDefinition.model_validate(d) for d in document["definitions"]),
            base_build_id=document.get("base_build_id"),
        )


@dataclass(frozen=True)
class ShardResult:
    shard: int
    sizes: dict[str, int]
    visitors_scanned: int
    items_scanned: int
    changes_base: str | None  # the build its membership changes are relative to, or None
    changes: int

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ShardResult:
        return cls(**document)


def visitor_histories(items: Iterable[dict[str, Any]]) -> Iterator[VisitorHistory]:
    """Group a scan's items into visitors, holding one visitor at a time. DynamoDB keeps
    the items of a partition key together (an item collection) and a scan returns them
    one after the other, so a visitor is complete when the next one starts."""
    current: VisitorHistory | None = None
    for item in items:
        visitor_id, record = record_from_item(item)
        if current is None or current.visitor_id != visitor_id:
            if current is not None:
                yield current
            current = VisitorHistory(visitor_id)
        if isinstance(record, EventRecord):
            current.events.append(record)
        else:
            current.traits.append(record)
    if current is not None:
        yield current


class Builder:
    def __init__(
        self,
        events: EventStore,
        membership: MembershipStore,
        bucket: SegmentsBucket,
        catalog: CatalogStore | None,
    ) -> None:
        self.events = events
        self.membership = membership
        self.bucket = bucket
        # None only for a stack deployed before the catalog table existed: its lookup
        # finds no catalog item and reads `latest.json` instead.
        self.catalog = catalog

    # -- plan -----------------------------------------------------------------------
    def plan(self, evaluated_at: datetime, shards: int) -> BuildPlan:
        """Validate the definitions and fix the build; raises DefinitionErrors."""
        if shards < 1:
            raise ValueError("a build needs at least one shard")
        definitions = load_definitions(self.bucket.definition_files())
        moment = evaluated_at.astimezone(UTC).replace(microsecond=0)
        plan = BuildPlan(build_id_for(moment), moment, shards, tuple(definitions), self._change_base(shards))
        self.bucket.put_json(plan_key(plan.build_id), plan.to_json())
        return plan

    def _change_base(self, shards: int) -> str | None:
        """The published build, when shards can diff against it: it had the same shard
        count and the membership table holds exactly it (no update was cut short)."""
        latest = self.bucket.latest()
        state = self.bucket.get_json_if_exists(MEMBERSHIP_STATE_KEY)
        if latest is None or state != {"build_id": latest["build_id"], "complete": True}:
            return None
        manifest = self.bucket.get_json(latest["manifest"])
        if int(manifest.get("shards", 0)) != shards:
            return None
        return str(latest["build_id"])

    def load_plan(self, build_id: str) -> BuildPlan:
        return BuildPlan.from_json(self.bucket.get_json(plan_key(build_id)))

    def is_published(self, build_id: str) -> bool:
        latest = self.bucket.latest()
        return latest is not None and latest["build_id"] == build_id

    # -- shard ----------------------------------------------------------------------
    def run_shard(self, plan: BuildPlan, shard: int) -> ShardResult:
        segments = compile_segments(plan.definitions)
        parts = {d.id: LinesWriter(header="uid") for d in plan.definitions}
        # Every member with its segments and expiry, for the next build to diff against.
        members = LinesWriter()
        changes = _Changes(self._base_members(plan, shard)) if plan.base_build_id is not None else None
        counter = _Counting(self.events.scan(shard, plan.shards))
        visitors = 0
        for history in visitor_histories(counter):
            visitors += 1
            found = segments_of(VisitorView(history, plan.now_ms), segments)
            expires_at = _expiry(history) if found or changes is not None else None
            if changes is not None:
                changes.visit(history.visitor_id, found, expires_at)
            if found:
                members.write(json.dumps([history.visitor_id, found, expires_at]))
                for segment_id in found:
                    parts[segment_id].write(history.visitor_id)
        for segment_id, writer in parts.items():
            self.bucket.upload_lines(part_key(plan.build_id, segment_id, shard), writer, content_type="text/csv")
        self.bucket.upload_lines(members_key(plan.build_id, shard), members, content_type="application/x-ndjson")
        if changes is not None:
            self.bucket.upload_lines(
                changes_key(plan.build_id, shard), changes.finish(), content_type="application/x-ndjson"
            )
        result = ShardResult(
            shard=shard,
            sizes={segment_id: writer.lines for segment_id, writer in parts.items()},
            visitors_scanned=visitors,
            items_scanned=counter.count,
            changes_base=plan.base_build_id,
            changes=changes.count if changes is not None else 0,
        )
        self.bucket.put_json(shard_result_key(plan.build_id, shard), result.to_json())
        return result

    def _base_members(self, plan: BuildPlan, shard: int) -> dict[str, Membership]:
        """The members of this shard in the base build (the visitor ids of one shard)."""
        assert plan.base_build_id is not None
        return dict(self.iter_members(members_key(plan.base_build_id, shard)))

    def iter_members(self, key: str) -> Iterator[tuple[str, Membership]]:
        for line in self.bucket.iter_lines(key):
            visitor_id, segment_ids, expires_at = json.loads(line)
            yield visitor_id, Membership(frozenset(segment_ids), expires_at)

    # -- publish --------------------------------------------------------------------
    def publish(self, plan: BuildPlan, results: list[ShardResult] | None = None) -> dict[str, Any]:
        if results is None:
            results = self._shard_results(plan)
        if sorted(r.shard for r in results) != list(range(plan.shards)):
            raise RuntimeError(f"build {plan.build_id} is missing shard results; nothing published")
        manifest = {
            "build_id": plan.build_id,
            "evaluated_at": iso(plan.evaluated_at),
            "shards": plan.shards,
            "segments": [
                {
                    "id": d.id,
                    "name": d.name,
                    "description": d.description,
                    "destinations": list(d.destinations),
                    "size": sum(r.sizes[d.id] for r in results),
                    "files": [part_key(plan.build_id, d.id, shard) for shard in range(plan.shards)],
                }
                for d in plan.definitions
            ],
            "visitors_scanned": sum(r.visitors_scanned for r in results),
        }
        self.bucket.put_json(manifest_key(plan.build_id), manifest)
        latest = self.bucket.latest()
        if latest is not None and latest["build_id"] > plan.build_id:
            # An older evaluation time must not roll the served build back.
            return {**manifest, "published": False}
        # Mark the table as changing first: a crash in between leaves it marked, and the
        # next build then compares against the table itself instead of trusting diffs.
        self.bucket.put_json(MEMBERSHIP_STATE_KEY, {"build_id": plan.build_id, "complete": False})
        if plan.base_build_id is not None and latest is not None and latest["build_id"] == plan.base_build_id:
            changed = self._apply_shard_changes(plan)
        else:
            changed = self._update_membership_from_table(plan)
        self.bucket.put_json(MEMBERSHIP_STATE_KEY, {"build_id": plan.build_id, "complete": True})
        self.bucket.put_json(LATEST_KEY, {"build_id": plan.build_id, "manifest": manifest_key(plan.build_id)})
        # After latest.json, which stays the source of truth: a publish that fails in
        # between is run again, finds its build latest, and so writes the item then.
        catalog_written = self.publish_catalog(plan.build_id, manifest)
        removed = self._remove_old_builds(keep_from=plan.build_id)
        return {
            **manifest,
            "published": True,
            "membership_changes": changed,
            "builds_removed": removed,
            "catalog_written": catalog_written,
        }

    def publish_catalog(self, build_id: str, manifest: dict[str, Any] | None = None) -> bool:
        """Copy the catalog of the published build `build_id` (its manifest read when not
        given) into the catalog table. False when the table already holds a newer build,
        or there is no catalog table. A build found already published calls this too, so
        an item its publish failed to write is healed by the same event run again."""
        if self.catalog is None:
            return False
        if manifest is None:
            manifest = self.bucket.get_json(manifest_key(build_id))
        return self.catalog.put({"build_id": build_id, "manifest": manifest_key(build_id)}, manifest)

    def _remove_old_builds(self, keep_from: str) -> int:
        """Delete the builds older than the last KEEP_BUILDS up to `keep_from` (the one
        just published): old part files would keep erased and expired visitors forever.
        Builds newer than it (another build in progress) are left alone."""
        older = sorted(b for b in self.bucket.build_ids() if b < keep_from)
        stale = older[: max(0, len(older) - (KEEP_BUILDS - 1))]
        for build_id in stale:
            self.bucket.delete_prefix(f"{BUILDS_PREFIX}{build_id}/")
        return len(stale)

    def _shard_results(self, plan: BuildPlan) -> list[ShardResult]:
        results = []
        for shard in range(plan.shards):
            document = self.bucket.get_json_if_exists(shard_result_key(plan.build_id, shard))
            if document is None:
                raise RuntimeError(f"shard {shard} of build {plan.build_id} has no result; nothing published")
            results.append(ShardResult.from_json(document))
        return results

    def _apply_shard_changes(self, plan: BuildPlan) -> int:
        changed = 0
        for shard in range(plan.shards):
            batch: dict[str, Membership | None] = {}
            for line in self.bucket.iter_lines(changes_key(plan.build_id, shard)):
                visitor_id, segment_ids, expires_at = json.loads(line)
                batch[visitor_id] = Membership(frozenset(segment_ids), expires_at) if segment_ids else None
                if len(batch) >= 1000:
                    self.membership.apply(batch, plan.build_id)
                    changed, batch = changed + len(batch), {}
            if batch:
                self.membership.apply(batch, plan.build_id)
                changed += len(batch)
        return changed

    def _update_membership_from_table(self, plan: BuildPlan) -> int:
        """Without a usable base build (the first build, a new shard count, or an update
        cut short): compare the whole new membership with the table itself."""
        current: dict[str, Membership] = {}
        for shard in range(plan.shards):
            current.update(self.iter_members(members_key(plan.build_id, shard)))
        changes: dict[str, Membership | None] = {}
        for visitor_id, stored in self.membership.scan():
            now_in = current.pop(visitor_id, None)
            if now_in is None:
                changes[visitor_id] = None
            elif needs_write(stored, now_in):
                changes[visitor_id] = now_in
        changes.update(current)
        self.membership.apply(changes, plan.build_id)
        return len(changes)

    # -- all stages in one process --------------------------------------------------
    def build(self, evaluated_at: datetime, shards: int = 1, *, parallel: int = 4) -> dict[str, Any]:
        """Plan, shards on a thread pool, publish: what `dmp build` runs."""
        moment = evaluated_at.astimezone(UTC).replace(microsecond=0)
        build_id = build_id_for(moment)
        if self.is_published(build_id):
            manifest = self.bucket.get_json(manifest_key(build_id))
            self.publish_catalog(build_id, manifest)
            return {**manifest, "published": True, "repeated": True}
        plan = self.plan(moment, shards)
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, shards))) as pool:
            results = list(pool.map(lambda shard: self.run_shard(plan, shard), range(shards)))
        return self.publish(plan, results)


class _Counting:
    """Passes items through and counts them."""

    def __init__(self, items: Iterable[dict[str, Any]]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self._items:
            self.count += 1
            yield item
