"""What the lookup answers, as plain JSON-ready dicts, for the validated API (api.py) and
the bidding fast path (fast_path.py) alike. Key order follows the pydantic models in
models.py, which validate and document these same shapes; no pydantic here, so the
fast path never imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.lookup.visitors import PARTNER

if TYPE_CHECKING:
    from functions.core.config import Settings
    from functions.lookup.catalog import Catalog


def cache_control(settings: Settings) -> str:
    """Answers may be reused until the catalog could next change (capped at 5 minutes)."""
    return f"private, max-age={min(settings.catalog_refresh_seconds, 300)}"


def user_route(id_type: str, answer_format: str) -> str:
    """The metric name of a user-segments answer: `answers_<route>`."""
    route = "user_openrtb" if answer_format == "openrtb" else "user"
    return f"partner_{route}" if id_type == PARTNER else route


def batch_route(id_type: str) -> str:
    return "partner_batch" if id_type == PARTNER else "batch"


def segment_refs(catalog: Catalog, partner: str, segment_ids: list[str]) -> list[dict[str, str]]:
    """The visitor's segments this partner may see (SegmentRef)."""
    return [{"id": s.id, "name": s.name} for s in catalog.visible(partner, segment_ids)]


def user_segments(catalog: Catalog, partner: str, uid: str, segment_ids: list[str]) -> dict[str, Any]:
    """UserSegments: `GET /v1/users/{uid}/segments`."""
    return {
        "uid": uid,
        "segments": segment_refs(catalog, partner, segment_ids),
        "build_id": catalog.build_id,
        "evaluated_at": catalog.evaluated_at,
    }


def batch(catalog: Catalog, partner: str, uids: list[str], found: dict[str, list[str]]) -> dict[str, Any]:
    """LookupAnswer: `POST /v1/lookup`, one result per uid in request order."""
    return {
        "build_id": catalog.build_id,
        "evaluated_at": catalog.evaluated_at,
        "results": [{"uid": uid, "segments": segment_refs(catalog, partner, found.get(uid, []))} for uid in uids],
    }


def openrtb_user(catalog: Catalog, partner: str, segment_ids: list[str], settings: Settings) -> dict[str, Any]:
    """OpenRtbAnswer: `GET /v1/users/{uid}/segments?format=openrtb`, one OpenRTB 2.x
    `Data` object from the configured provider (with `ext.segtax` only when configured)."""
    data: dict[str, Any] = {
        "id": settings.data_provider_id,
        "name": settings.data_provider_name,
        "segment": segment_refs(catalog, partner, segment_ids),
    }
    if settings.segtax is not None:
        data["ext"] = {"segtax": settings.segtax}
    return {"user": {"data": [data]}, "build_id": catalog.build_id, "evaluated_at": catalog.evaluated_at}
