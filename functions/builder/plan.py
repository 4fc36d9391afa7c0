"""Stage 1, plan: load and validate every definition (an invalid set, or a segment the
data-use control refuses, stops here, before anything is written), fix the build's id and evaluation time, note whether the published
build can serve as the base of per-shard membership changes, and save the plan under the
build's prefix for the other stages.

The build id is derived from the evaluation time, so the same scheduled event delivered
twice produces the same build, not two."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.builder.stores import BuildBucket
from functions.core import layout
from functions.core.documents import MembershipState
from functions.core.segments import SegmentDefinition, load_definitions
from functions.core.sources import SourceDefinition, load_sources
from functions.core.times import iso, parse_time

BUILD_ID_FORMAT = "%Y%m%dT%H%M%SZ"
# How far ahead a build looks for membership changes with no new data (DESIGN.md,
# "Freshness"): past the next scheduled build, which looks further, with room for one that
# fails. The stack sets it from the build schedule (twice its interval).
DEFAULT_DUE_HORIZON_SECONDS = 2 * 3600


def build_id_for(evaluated_at: datetime) -> str:
    return evaluated_at.astimezone(UTC).strftime(BUILD_ID_FORMAT)


def build_time(build_id: str) -> datetime:
    """A build's evaluation time, from its id."""
    return datetime.strptime(build_id, BUILD_ID_FORMAT).replace(tzinfo=UTC)


def build_time_now() -> datetime:
    """Now, as a build's evaluation time: whole seconds, rounded up, so the hits already
    received in the current second are part of the build (events after `now` are not)."""
    return (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)


def evaluation_moment(evaluated_at: datetime) -> datetime:
    return evaluated_at.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class BuildPlan:
    """`builds/<build_id>/plan.json`: what every stage of one build works from."""

    build_id: str
    evaluated_at: datetime
    shards: int
    definitions: tuple[SegmentDefinition, ...]
    # The build published when this one was planned, if it can serve as the base of
    # per-shard membership changes (same shard count, membership table in step with it).
    base_build_id: str | None = None
    # Changes of membership with no new data are looked for up to this far after `now`.
    due_horizon_seconds: int = DEFAULT_DUE_HORIZON_SECONDS

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
            "due_horizon_seconds": self.due_horizon_seconds,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BuildPlan:
        return cls(
            build_id=document["build_id"],
            evaluated_at=parse_time(document["evaluated_at"]),
            shards=int(document["shards"]),
            definitions=tuple(SegmentDefinition.model_validate(d) for d in document["definitions"]),
            base_build_id=document.get("base_build_id"),
            due_horizon_seconds=int(document.get("due_horizon_seconds", DEFAULT_DUE_HORIZON_SECONDS)),
        )


def plan_build(
    bucket: BuildBucket,
    evaluated_at: datetime,
    shards: int,
    *,
    due_horizon_seconds: int = DEFAULT_DUE_HORIZON_SECONDS,
) -> BuildPlan:
    """Validate the definitions and fix the build; raises DefinitionErrors."""
    if shards < 1:
        raise ValueError("a build needs at least one shard")
    definitions = load_definitions(bucket.definition_files(), sources=known_sources(bucket))
    moment = evaluation_moment(evaluated_at)
    plan = BuildPlan(
        build_id_for(moment),
        moment,
        shards,
        tuple(definitions),
        _change_base(bucket, shards),
        due_horizon_seconds=due_horizon_seconds,
    )
    bucket.put_json(layout.plan_key(plan.build_id), plan.to_json())
    return plan


def known_sources(bucket: BuildBucket) -> dict[str, SourceDefinition] | None:
    """The stack's data sources, for the data-use control; None when it has none (no
    source, no imported trait: nothing to control). Invalid source files refuse the build."""
    sources = load_sources(bucket.source_files())
    return {source.id: source for source in sources} or None


def load_plan(bucket: BuildBucket, build_id: str) -> BuildPlan:
    return BuildPlan.from_json(bucket.get_json(layout.plan_key(build_id)))


def is_published(bucket: BuildBucket, build_id: str) -> bool:
    latest = bucket.latest()
    return latest is not None and latest.build_id == build_id


def _change_base(bucket: BuildBucket, shards: int) -> str | None:
    """The published build, when shards can diff against it: it had the same shard
    count and the membership table holds exactly it (no update was cut short)."""
    latest = bucket.latest()
    if latest is None or bucket.membership_state() != MembershipState(latest.build_id, complete=True):
        return None
    if bucket.manifest(latest.build_id).shards != shards:
        return None
    return latest.build_id
