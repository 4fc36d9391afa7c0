"""A segment build in three stages, the same in AWS and in `dmp build`:

1. `plan`: load and validate every definition (an invalid set stops here, before
   anything is written) and fix the build's id and evaluation time.
2. `run_shard`: one parallel-scan segment of the events table; every visitor's records
   live in one segment (the visitor id is the partition key), so a shard owns its
   visitors and results do not depend on the shard count. Writes one part file per
   segment under the build's prefix.
3. `publish`: writes the manifest, brings the membership table to the new build by
   writing only the visitors whose segment set changed, then writes `latest.json` last,
   so no reader ever sees half a build.

The build id is derived from the evaluation time, so the same scheduled event delivered
twice produces the same build, not two.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.core.engine import compile_segments, evaluate
from functions.core.records import EventRecord, VisitorHistory
from functions.core.segments import SegmentDefinition, load_definitions
from functions.core.storage import EventStore, MembershipStore, SegmentsBucket, record_from_item
from functions.core.tables import BUILDS_PREFIX, LATEST_KEY, manifest_key, part_key


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


@dataclass(frozen=True)
class BuildPlan:
    build_id: str
    evaluated_at: datetime
    shards: int
    definitions: tuple[SegmentDefinition, ...]

    @property
    def now_ms(self) -> int:
        return int(self.evaluated_at.timestamp() * 1000)

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "evaluated_at": iso(self.evaluated_at),
            "shards": self.shards,
            "definitions": [d.model_dump(mode="json", by_alias=True, exclude_none=True) for d in self.definitions],
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BuildPlan:
        return cls(
            build_id=document["build_id"],
            evaluated_at=parse_time(document["evaluated_at"]),
            shards=int(document["shards"]),
            definitions=tuple(SegmentDefinition.model_validate(d) for d in document["definitions"]),
        )


@dataclass(frozen=True)
class ShardResult:
    shard: int
    sizes: dict[str, int]
    visitors_scanned: int
    items_scanned: int


class Builder:
    def __init__(self, events: EventStore, membership: MembershipStore, bucket: SegmentsBucket) -> None:
        self.events = events
        self.membership = membership
        self.bucket = bucket

    def plan(self, evaluated_at: datetime, shards: int) -> BuildPlan:
        """Validate the definitions and fix the build; raises DefinitionErrors."""
        if shards < 1:
            raise ValueError("a build needs at least one shard")
        definitions = load_definitions(self.bucket.definition_files())
        moment = evaluated_at.astimezone(UTC).replace(microsecond=0)
        return BuildPlan(build_id_for(moment), moment, shards, tuple(definitions))

    def run_shard(self, plan: BuildPlan, shard: int) -> ShardResult:
        histories: dict[str, VisitorHistory] = {}
        items = 0
        for item in self.events.scan(shard, plan.shards):
            items += 1
            visitor_id, record = record_from_item(item)
            history = histories.get(visitor_id)
            if history is None:
                history = histories[visitor_id] = VisitorHistory(visitor_id)
            if isinstance(record, EventRecord):
                history.events.append(record)
            else:
                history.traits.append(record)
        members: dict[str, list[str]] = defaultdict(list)
        segments = compile_segments(plan.definitions)
        for visitor_id, found in evaluate(histories.values(), segments, plan.now_ms):
            for segment_id in found:
                members[segment_id].append(visitor_id)
        for definition in plan.definitions:
            self.bucket.put_members(
                part_key(plan.build_id, definition.id, shard), sorted(members.get(definition.id, []))
            )
        return ShardResult(
            shard=shard,
            sizes={d.id: len(members.get(d.id, [])) for d in plan.definitions},
            visitors_scanned=len(histories),
            items_scanned=items,
        )

    def publish(self, plan: BuildPlan, results: list[ShardResult]) -> dict[str, Any]:
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
            manifest["published"] = False
            return manifest
        changed = self._update_membership(plan, manifest)
        self.bucket.put_json(LATEST_KEY, {"build_id": plan.build_id, "manifest": manifest_key(plan.build_id)})
        manifest["published"] = True
        manifest["membership_changes"] = changed
        return manifest

    def _update_membership(self, plan: BuildPlan, manifest: dict[str, Any]) -> int:
        """Write only visitors whose segment set changed; delete those who left all."""
        current: dict[str, set[str]] = defaultdict(set)
        for segment in manifest["segments"]:
            for key in segment["files"]:
                for visitor_id in self.bucket.read_members(key):
                    current[visitor_id].add(segment["id"])
        changes: dict[str, frozenset[str]] = {}
        for visitor_id, previous in self.membership.scan():
            now_in = frozenset(current.pop(visitor_id, set()))
            if now_in != previous:
                changes[visitor_id] = now_in
        changes.update((visitor_id, frozenset(ids)) for visitor_id, ids in current.items())
        self.membership.apply(changes, plan.build_id)
        return len(changes)

    def build(self, evaluated_at: datetime, shards: int = 1, *, parallel: int = 4) -> dict[str, Any]:
        """All three stages in this process; shards run on a thread pool."""
        plan = self.plan(evaluated_at, shards)
        latest = self.bucket.latest()
        if latest is not None and latest["build_id"] == plan.build_id:
            return {**self.bucket.get_json(manifest_key(plan.build_id)), "published": True, "repeated": True}
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, shards))) as pool:
            results = list(pool.map(lambda shard: self.run_shard(plan, shard), range(shards)))
        return self.publish(plan, results)


__all__ = ["BUILDS_PREFIX", "BuildPlan", "Builder", "ShardResult", "build_id_for", "iso", "parse_time"]
