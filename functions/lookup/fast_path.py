"""The bidding fast path: a well-formed `GET /v1/users/{uid}/segments` answered without
the validated API, by our visitor id or (`id_type=partner`) the partner's own id.

A bidder asks this once per auction, inside a 50-150 ms budget, and a cold container
would otherwise first build the API: pydantic and Powertools' validation layer, ~100 ms.
This path recognises only the request it can answer for certain (a valid visitor id, or
partner id with `id_type=partner`, the authorizer's partner, `format` absent or exactly
`json` or `openrtb`, `id_type` absent or exactly `dmp` or `partner`) and leaves
everything else -- every error, every other route -- to the API, so its refusals and
their messages have one source. `tests/unit/test_lookup_fast_path.py` proves that for
any request both give byte-identical answers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.lookup import answers
from functions.lookup.routes import PARTNER_USER_SEGMENTS_PATH, USER_SEGMENTS_PATH
from functions.lookup.visitors import DMP, PARTNER

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

    from functions.core.config import Settings
    from functions.lookup.api import Catalogs
    from functions.lookup.visitors import Visitors

_FORMATS = ("json", "openrtb")
_ID_TYPES = (DMP, PARTNER)
_PATHS = {DMP: USER_SEGMENTS_PATH, PARTNER: PARTNER_USER_SEGMENTS_PATH}


def answer(
    event: dict[str, Any], visitors: Visitors, catalogs: Catalogs, *, settings: Settings, metrics: Metrics
) -> dict[str, Any] | None:
    """The API Gateway answer to `event`, or None when the validated API must answer it."""
    if event.get("httpMethod") != "GET":
        return None
    path = event.get("path")
    id_type = _query_value(event, "id_type", _ID_TYPES)
    if not isinstance(path, str) or id_type is None:
        return None
    match = _PATHS[id_type].fullmatch(path)
    if match is None:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    partner = authorizer.get("partner") if isinstance(authorizer, dict) else None
    answer_format = _query_value(event, "format", _FORMATS)
    if not partner or answer_format is None:
        return None
    uid, name = match.group(1), str(partner)
    catalog = catalogs.get()
    segment_ids = visitors.segment_ids(uid, id_type=id_type, partner=name, as_of=catalog.build_id)
    if answer_format == "openrtb":
        body = answers.openrtb_user(catalog, name, segment_ids, settings)
    else:
        body = answers.user_segments(catalog, name, uid, segment_ids)
    route = answers.user_route(id_type, answer_format)
    metrics.add_metric(name=f"answers_{route}", unit=MetricUnit.Count, value=1)
    return {
        "statusCode": 200,
        # Powertools' serialiser: compact, ASCII-escaped.
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
        "multiValueHeaders": {
            "Cache-Control": [answers.cache_control(settings)],
            "Content-Type": ["application/json"],
        },
    }


def _query_value(event: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    """The query parameter `name` when the query gives it at most once and as one of
    `allowed` (absent: the first of them, its default); else None."""
    single = event.get("queryStringParameters")
    multi = event.get("multiValueQueryStringParameters")
    if not (single is None or isinstance(single, dict)) or not (multi is None or isinstance(multi, dict)):
        return None
    values = (multi or {}).get(name)
    value = (single or {}).get(name)
    if values is None and value is None:
        return allowed[0]
    if values is not None:
        if not isinstance(values, list) or len(values) != 1 or (value is not None and value != values[0]):
            return None
        value = values[0]
    return value if value in allowed else None
