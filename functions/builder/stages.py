"""The events the build state machine sends the builder function, one per stage, and
what each stage answers (Step Functions passes the answers on: `Shards` maps over the
plan's `shards`, `Published?` reads its `skip`, `Export` the publish's `build_id`). An event without a `stage` (a scheduled
event sent straight to the function, or a manual `{"at": ...}`) runs the whole build."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# A build id is its evaluation time, `20261128T100000Z`; it names S3 keys, so nothing else.
BUILD_ID_PATTERN = r"^\d{8}T\d{6}Z$"
BuildId = Annotated[str, Field(pattern=BUILD_ID_PATTERN)]


class _Stage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlanStage(_Stage):
    stage: Literal["plan"]
    time: str = Field(description="the schedule's time: the build's evaluation time")
    shards: int | None = Field(default=None, ge=1, description="default: BUILD_SHARDS")


class ShardStage(_Stage):
    stage: Literal["shard"]
    build_id: BuildId
    shard: int = Field(ge=0)


class PublishStage(_Stage):
    stage: Literal["publish"]
    build_id: BuildId


class ExportStage(_Stage):
    stage: Literal["export"]
    build_id: BuildId


StageEvent = TypeAdapter(Annotated[PlanStage | ShardStage | PublishStage | ExportStage, Field(discriminator="stage")])


class PlanAnswer(_Stage):
    build_id: str
    skip: bool = Field(description="the build was published before: nothing to do")
    shards: list[int]


class ShardAnswer(_Stage):
    build_id: str
    shard: int
    visitors: int


class BuildAnswer(_Stage):
    build_id: str
    evaluated_at: str
    sizes: dict[str, int]
    # A whole build's (no stage): each partner's export rows, {partner: {"full", "delta"}}.
    exports: dict[str, dict[str, int]] = Field(default_factory=dict)


class ExportAnswer(_Stage):
    build_id: str
    exports: dict[str, dict[str, int]] = Field(description='{partner: {"full": rows, "delta": rows}}')
