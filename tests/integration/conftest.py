"""A small shop's traffic for the build and lookup tests: three visitors, three segments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from functions.core.storage import aws as aws_plumbing
from functions.core.storage.bucket import SegmentsBucket
from functions.core.times import DAY_MS
from tests.conftest import load_event

BUILD_TIME = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # the time of events/scheduled_build.json

LONDON = {"cloudfront-viewer-city": "London", "cloudfront-viewer-country": "GB"}
PARIS = {"cloudfront-viewer-city": "Paris", "cloudfront-viewer-country": "FR"}

DEFINITIONS = {
    "london-pricing": {
        "id": "london-pricing",
        "name": "Returning London visitors who viewed pricing",
        "destinations": ["demo-dsp"],
        "rule": {
            "all": [
                {"geo": {"city": "London"}},
                {"visits": {"min": 2, "within_days": 30}},
                {"event": {"name": "page_view", "url_contains": "/pricing", "within_days": 30}},
            ]
        },
    },
    "all-visitors": {
        "id": "all-visitors",
        "name": "Everyone seen this month",
        "destinations": ["demo-dsp", "other-ssp"],
        "rule": {"last_seen": {"within_days": 30}},
    },
    "paris": {"id": "paris", "name": "Paris", "destinations": ["other-ssp"], "rule": {"geo": {"city": "paris"}}},
}


def push_definitions(bucket: str, definitions: dict[str, Any] = DEFINITIONS) -> None:
    store = SegmentsBucket(bucket)
    for segment_id, document in definitions.items():
        store.put_json(f"segments/{segment_id}.json", document)


def hit(ingest: Any, context: Any, visitor_id: str, at_ms: int, url: str, headers: dict[str, str]) -> None:
    event = load_event("pixel_get")
    event["cookies"] = [f"dmp_uid={visitor_id}"]
    event["headers"].update(headers)
    event["rawQueryString"] = f"e=page_view&url={url}"
    event["requestContext"]["timeEpoch"] = at_ms
    assert ingest.handler(event, context)["statusCode"] == 200


@pytest.fixture
def traffic(load_handler: Any, aws: Any, lambda_context: Any) -> dict[str, str]:
    """Three visitors: a returning Londoner who saw pricing, a one-visit Londoner who
    saw pricing, and a Parisian."""
    ingest = load_handler("ingest")
    now = int(BUILD_TIME.timestamp() * 1000)
    visitors = {"returning": "visitor-london-1", "once": "visitor-london-2", "paris": "visitor-paris-1"}
    hit(ingest, lambda_context, visitors["returning"], now - 10 * DAY_MS, "https://shop.example/", LONDON)
    hit(ingest, lambda_context, visitors["returning"], now - 2 * DAY_MS, "https://shop.example/pricing", LONDON)
    hit(ingest, lambda_context, visitors["once"], now - DAY_MS, "https://shop.example/", LONDON)
    hit(ingest, lambda_context, visitors["once"], now - DAY_MS + 60_000, "https://shop.example/pricing", LONDON)
    hit(ingest, lambda_context, visitors["paris"], now - 3 * DAY_MS, "https://shop.example/blog", PARIS)
    push_definitions(aws.bucket)
    return visitors


@pytest.fixture
def s3_clients_created(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every S3 client the storage adapters create from now on."""
    created: list[Any] = []
    make = aws_plumbing.create_client

    def counting(service: str, *args: Any, **kwargs: Any) -> Any:
        client = make(service, *args, **kwargs)
        if service == "s3":
            created.append(client)
        return client

    monkeypatch.setattr(aws_plumbing, "create_client", counting)
    return created
