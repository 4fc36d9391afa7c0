"""Request and answer models of the lookup API; the OpenAPI document is generated from them.

Every model defers building its validator until first use, so a cold start builds only
the models of the route it answers (the OpenRTB models stay unbuilt until a partner asks
for `format=openrtb`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from functions.core.identity import VISITOR_ID_PATTERN

VisitorId = Annotated[str, Field(pattern=VISITOR_ID_PATTERN, description="visitor id (cookie dmp_uid or uid)")]
AnswerFormat = Literal["json", "openrtb"]


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

    uids: Annotated[list[VisitorId], Field(min_length=1, max_length=100, description="1 to 100 visitor ids")]


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


class ErrorDetail(_Model):
    code: str = Field(description="stable, machine-readable: invalid_request, unauthorized, forbidden, ...")
    message: str = Field(description="for people; may change")


class ErrorAnswer(_Model):
    """Every error of the API, whoever answers it: the lookup function or API Gateway."""

    error: ErrorDetail
