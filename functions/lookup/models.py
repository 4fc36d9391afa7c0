"""Request and answer models of the lookup API; the OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

VisitorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="visitor id (cookie dmp_uid or uid)")]


class SegmentRef(BaseModel):
    id: str
    name: str


class UserSegments(BaseModel):
    uid: str
    segments: list[SegmentRef]
    build_id: str | None = Field(description="the build the answer comes from; null before the first build")
    evaluated_at: str | None = Field(description="evaluation time of that build (ISO 8601, UTC)")


class _WithoutNulls(BaseModel):
    """OpenRTB leaves optional fields out rather than sending null."""

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class OpenRtbSegment(_WithoutNulls):
    id: str
    name: str | None = None


class OpenRtbData(_WithoutNulls):
    id: str = Field(description="data provider id")
    name: str = Field(description="data provider name")
    segment: list[OpenRtbSegment]
    ext: dict[str, int] | None = Field(default=None, description="`segtax` when configured")


class OpenRtbUser(BaseModel):
    data: list[OpenRtbData]


class OpenRtbAnswer(BaseModel):
    """OpenRTB 2.x `User` fragment with `Data`/`Segment` objects, plus freshness fields."""

    user: OpenRtbUser
    build_id: str | None = None
    evaluated_at: str | None = None


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uids: Annotated[list[VisitorId], Field(min_length=1, max_length=100)]


class LookupResult(BaseModel):
    uid: str
    segments: list[SegmentRef]


class LookupAnswer(BaseModel):
    build_id: str | None
    evaluated_at: str | None
    results: list[LookupResult]


class CatalogEntry(BaseModel):
    id: str
    name: str
    description: str
    size: int
    build_id: str
    updated_at: str


class CatalogAnswer(BaseModel):
    segments: list[CatalogEntry]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorDetail
