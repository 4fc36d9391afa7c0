"""The bidding fast path: a well-formed `GET /v1/users/{uid}/segments` answered without
the validated API.

A bidder asks this once per auction, inside a 50-150 ms budget, and a cold container
would otherwise first build the API: pydantic and Powertools' validation layer, ~100 ms.
This path recognises only the request it can answer for certain (a valid visitor id,
the authorizer's partner, `format` absent or exactly `json` or `openrtb`) and leaves
everything else -- every error, every other route -- to the API, so its refusals and
their messages have one source. `tests/unit/test_lookup_fast_path.py` proves that for
any request both give byte-identical answers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.lookup import answers
from functions.lookup.routes import USER_SEGMENTS_PATH

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

    from functions.core.config import Settings
    from functions.lookup.api import Catalogs, VisitorSegments

_FORMATS = frozenset({"json", "openrtb"})


def answer(
    event: dict[str, Any], membership: VisitorSegments, catalogs: Catalogs, *, settings: Settings, metrics: Metrics
) -> dict[str, Any] | None:
    """The API Gateway answer to `event`, or None when the validated API must answer it."""
    if event.get("httpMethod") != "GET":
        return None
    path = event.get("path")
    match = USER_SEGMENTS_PATH.fullmatch(path) if isinstance(path, str) else None
    if match is None:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    partner = authorizer.get("partner") if isinstance(authorizer, dict) else None
    answer_format = _format(event)
    if not partner or answer_format is None:
        return None
    uid = match.group(1)
    catalog = catalogs.get()
    segment_ids = membership.get(uid)
    if answer_format == "openrtb":
        body, route = answers.openrtb_user(catalog, str(partner), segment_ids, settings), "user_openrtb"
    else:
        body, route = answers.user_segments(catalog, str(partner), uid, segment_ids), "user"
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


def _format(event: dict[str, Any]) -> str | None:
    """`json` or `openrtb` when the query names at most one of them, once; else None."""
    single = event.get("queryStringParameters")
    multi = event.get("multiValueQueryStringParameters")
    if not (single is None or isinstance(single, dict)) or not (multi is None or isinstance(multi, dict)):
        return None
    values = (multi or {}).get("format")
    value = (single or {}).get("format")
    if values is None and value is None:
        return "json"
    if values is not None:
        if not isinstance(values, list) or len(values) != 1 or (value is not None and value != values[0]):
            return None
        value = values[0]
    return value if value in _FORMATS else None
