"""Request and answer models of the lookup API; the OpenAPI document is generated from them.

Every model defers building its validator until first use, so a cold start builds only
the models of the route it answers (the OpenRTB models stay unbuilt until a partner asks
for `format=openrtb`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from functions.core.identity import PARTNER_UID_PATTERN, VISITOR_ID_PATTERN, is_visitor_id

AnswerFormat = Literal["json", "openrtb"]
# Whose ids a lookup names: ours (visitor ids), or the calling partner's own (ID sync).
IdType = Literal["dmp", "partner"]
# Checked against the looser of the two id patterns (every visitor id is also a
# well-formed partner id); with `id_type=dmp`, also against the visitor id's.
USER_ID_DESCRIPTION = (
    f"a visitor id (`{VISITOR_ID_PATTERN}`), or with `id_type=partner` the partner's own user id "
    f"(`{PARTNER_UID_PATTERN}`)"
)
UserId = Annotated[str, Field(pattern=PARTNER_UID_PATTERN, description=USER_ID_DESCRIPTION)]


def not_a_visitor_id(location: str) -> str:
    """The refusal of an id meant as a visitor id, worded as the validation of a pattern
    words it, so it reads the same whichever check caught it."""
    return f"{location}: String should match pattern '{VISITOR_ID_PATTERN}'"


class _Model(BaseModel):
    model_config = ConfigDict(defer_build=True)


class SegmentRef(_Model):
    id: str
    name: str


class UserSegments(_Model):
    uid: str
    segments: list[SegmentRef]
    build_id: str | None = Field(description="the build the answer comes from; null before the first build")
    evaluated_at: str | None = Field(description="evaluation time of that build (ISO 8601, UTC)")


class OpenRtbSegment(_Model):
    """OpenRTB 2.x `Segment`."""

    id: str
    name: str


class OpenRtbData(_Model):
    """OpenRTB 2.x `Data`."""

    id: str = Field(description="data provider id")
    name: str = Field(description="data provider name")
    segment: list[OpenRtbSegment]
    # OpenRTB leaves optional fields out rather than sending null.
    ext: dict[str, int] | SkipJsonSchema[None] = Field(
        default=None, exclude_if=lambda value: value is None, description="`segtax` when configured, else absent"
    )


class OpenRtbUser(_Model):
    data: list[OpenRtbData]


class OpenRtbAnswer(_Model):
    """OpenRTB 2.x `User` fragment with `Data`/`Segment` objects, plus freshness fields."""

    user: OpenRtbUser
    build_id: str | None = None
    evaluated_at: str | None = None


class LookupRequest(_Model):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    uids: Annotated[
        list[UserId],
        Field(min_length=1, max_length=100, description="1 to 100 visitor ids, or the partner's own ids"),
    ]
    id_type: IdType = Field(
        default="dmp",
        description="`dmp`: `uids` are our visitor ids; `partner`: the calling partner's own user ids (from ID "
        "sync), resolved only through that partner's own mappings",
    )

    @model_validator(mode="after")
    def _visitor_ids_when_ours(self) -> LookupRequest:
        if self.id_type == "dmp":
            problems = [not_a_visitor_id(f"uids.{i}") for i, uid in enumerate(self.uids) if not is_visitor_id(uid)]
            if problems:
                # Located in its message (a model's own check has no field of its own).
                raise PydanticCustomError("string_pattern_mismatch", "{problems}", {"problems": "; ".join(problems)})
        return self


class LookupResult(_Model):
    uid: str
    segments: list[SegmentRef]


class LookupAnswer(_Model):
    build_id: str | None
    evaluated_at: str | None
    results: list[LookupResult] = Field(description="one result per requested uid, in request order")


class CatalogEntry(_Model):
    id: str
    name: str
    description: str
    size: int = Field(description="members in the build")
    build_id: str
    updated_at: str


class CatalogAnswer(_Model):
    segments: list[CatalogEntry]


class ExportFile(_Model):
    url: str = Field(description="a pre-signed S3 GET URL of the gzip CSV file, valid for a few minutes")
    rows: int = Field(description="data rows in the file (its header not counted)")


class ExportAnswer(_Model):
    build_id: str = Field(description="the build the files come from")
    previous_build_id: str | None = Field(description="the build the delta is taken against; null for the first")
    full: ExportFile = Field(description="`uid,partner_uid,segments`: every member the partner may see")
    delta: ExportFile = Field(description="`uid,partner_uid,added,removed` against the previous export")


class ErrorDetail(_Model):
    code: str = Field(description="stable, machine-readable: invalid_request, unauthorized, forbidden, ...")
    message: str = Field(description="for people; may change")


class ErrorAnswer(_Model):
    """Every error of the API, whoever answers it: the lookup function or API Gateway."""

    error: ErrorDetail
