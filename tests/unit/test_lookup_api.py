"""The lookup API on in-memory stores: answers, refusals in the one error shape, the
OpenAPI document, and what importing the handler costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics

from functions.core.config import Settings
from functions.lookup import errors
from functions.lookup.api import create_api, openapi_document
from functions.lookup.catalog import Catalog, CatalogSegment
from tests.conftest import ROOT, FakeContext, load_event

VISITOR = "visitor-london-1"
CATALOG = Catalog(
    build_id="20261128T100000Z",
    evaluated_at="2026-11-28T10:00:00Z",
    segments={
        "london": CatalogSegment("london", "Londoners", "", 3, frozenset({"demo-dsp"})),
        "paris": CatalogSegment("paris", "Parisians", "", 1, frozenset({"other-ssp"})),
    },
)
PARTNER_ROUTES = {("/v1/users/{uid}/segments", "get"), ("/v1/lookup", "post"), ("/v1/segments", "get")}


class FakeMembership:
    def __init__(self, segments: dict[str, list[str]]) -> None:
        self.segments = segments
        self.reads = 0

    def get(self, visitor_id: str) -> list[str]:
        self.reads += 1
        return self.segments.get(visitor_id, [])

    def get_many(self, visitor_ids: Sequence[str]) -> dict[str, list[str]]:
        self.reads += 1
        return {v: self.segments[v] for v in visitor_ids if v in self.segments}


class FakeCatalogs:
    def get(self) -> Catalog:
        return CATALOG


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    metrics = Metrics(service="lookup", namespace="DMP")
    yield metrics
    metrics.clear_metrics()


def make_api(metrics: Metrics, **settings: Any) -> Any:
    return create_api(
        FakeMembership({VISITOR: ["london", "paris"]}),
        FakeCatalogs(),
        settings=Settings(membership_table="m", bucket="b", **settings),
        logger=Logger(service="lookup"),
        metrics=metrics,
    )


def user_event(uid: str = VISITOR, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("lookup_user_get")
    event["path"] = f"/v1/users/{uid}/segments"
    event["requestContext"]["path"] = f"/prod/v1/users/{uid}/segments"
    event["pathParameters"] = {"uid": uid}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def batch_event(body: str, content_type: str = "application/json") -> dict[str, Any]:
    event = load_event("lookup_batch_post")
    event["body"] = body
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def call(api: Any, event: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
    response = api.resolve(event, FakeContext())
    headers = {k: v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], json.loads(response["body"]), headers


def test_a_partner_gets_the_visitors_segments_it_may_see_with_a_short_cache(metrics):
    status, body, headers = call(make_api(metrics), user_event())
    assert status == 200
    assert body == {
        "uid": VISITOR,
        "segments": [{"id": "london", "name": "Londoners"}],
        "build_id": "20261128T100000Z",
        "evaluated_at": "2026-11-28T10:00:00Z",
    }
    assert headers["Cache-Control"] == "private, max-age=30"
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("segtax", "ext"), [(None, None), (4, {"segtax": 4})])
def test_openrtb_data_leaves_out_ext_unless_segtax_is_configured(metrics, segtax, ext):
    status, body, _ = call(make_api(metrics, segtax=segtax), user_event(query={"format": "openrtb"}))
    assert status == 200
    (data,) = body["user"]["data"]
    assert data.get("ext") == ext
    assert "ext" in data if ext else "ext" not in data
    assert data["segment"] == [{"id": "london", "name": "Londoners"}]


def test_batch_answers_in_request_order_with_one_read(metrics):
    membership = FakeMembership({VISITOR: ["london"]})
    api = create_api(
        membership,
        FakeCatalogs(),
        settings=Settings(membership_table="m", bucket="b"),
        logger=Logger(service="lookup"),
        metrics=metrics,
    )
    status, body, _ = call(api, batch_event(json.dumps({"uids": ["unknown-visitor", VISITOR]})))
    assert status == 200
    assert [(r["uid"], len(r["segments"])) for r in body["results"]] == [("unknown-visitor", 0), (VISITOR, 1)]
    assert membership.reads == 1


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        (user_event("bad!id"), 400, "invalid_request"),
        (user_event("short"), 400, "invalid_request"),
        (user_event(query={"format": "xml"}), 400, "invalid_request"),
        (batch_event("not json"), 400, "invalid_request"),
        (batch_event('{"uids": ' + "[" * 100_000 + "]" * 100_000 + "}"), 400, "invalid_request"),
        (batch_event(json.dumps({"uids": []})), 400, "invalid_request"),
        (batch_event(json.dumps({"uids": [VISITOR], "extra": 1})), 400, "invalid_request"),
        (batch_event("uid\nvisitor-1\n", content_type="text/csv"), 415, "unsupported_media_type"),
    ],
    ids=["uid-chars", "uid-length", "format", "json", "json-nested-too-deep", "empty-batch", "extra-field", "csv"],
)
def test_bad_requests_are_refused_in_the_api_error_shape(metrics, event, status, code):
    answer_status, body, headers = call(make_api(metrics), event)
    assert (answer_status, headers["Content-Type"]) == (status, "application/json")
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code


def test_an_unknown_route_is_a_404_in_the_api_error_shape(metrics):
    event = user_event()
    event["path"] = "/v1/nothing-here"
    status, body, _ = call(make_api(metrics), event)
    assert (status, body) == (404, errors.NOT_FOUND.body())


def test_a_request_without_the_authorizers_partner_is_a_401_as_api_gateway_answers_it(metrics):
    event = user_event()
    event["requestContext"]["authorizer"] = None
    status, body, _ = call(make_api(metrics), event)
    assert (status, body) == (401, errors.UNAUTHORIZED.body())


def openapi_event(domain: str | None, stage_path: str) -> dict[str, Any]:
    event = user_event()
    event.update(path="/v1/openapi.json", resource="/v1/openapi.json", pathParameters=None)
    event["requestContext"].update(path=stage_path, resourcePath="/v1/openapi.json")
    event["requestContext"].pop("authorizer")
    if domain is None:
        event["requestContext"].pop("domainName")
    else:
        event["requestContext"]["domainName"] = domain
    return event


@pytest.mark.parametrize(
    ("domain", "path", "server"),
    [
        (
            "k9l8m7n6o5.execute-api.eu-west-1.amazonaws.com",
            "/prod/v1/openapi.json",
            "https://k9l8m7n6o5.execute-api.eu-west-1.amazonaws.com/prod",
        ),
        ("lookup.dmp.example", "/v1/openapi.json", "https://lookup.dmp.example"),
        (None, "/local/v1/openapi.json", "/"),
    ],
    ids=["stage", "custom-domain", "local"],
)
def test_the_document_names_the_server_the_request_reached(metrics, domain, path, server):
    status, body, headers = call(make_api(metrics), openapi_event(domain, path))
    assert status == 200
    assert body["servers"] == [{"url": server}]
    assert headers["Cache-Control"].startswith("public")


def test_the_document_is_powertools_output_with_this_apis_errors(metrics):
    document = openapi_document(make_api(metrics))
    assert (document["info"]["title"], document["info"]["version"]) == ("DMP lookup API", "1.0.0")
    assert document["components"]["securitySchemes"]["PartnerKey"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses
            for status in set(responses) - {"200"}:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}, (path, status)
            if (path, method) in PARTNER_ROUTES:
                assert operation["security"] == [{"PartnerKey": []}]
                assert {"401", "403", "429", "500"} <= set(responses)
            else:
                assert "security" not in operation and "401" not in responses
    assert "400" not in document["paths"]["/v1/segments"]["get"]["responses"]  # it takes no input
    assert "415" in document["paths"]["/v1/lookup"]["post"]["responses"]
    body = document["components"]["schemas"]["LookupRequest"]
    assert body["additionalProperties"] is False
    assert (body["properties"]["uids"]["minItems"], body["properties"]["uids"]["maxItems"]) == (1, 100)
    assert body["properties"]["uids"]["items"]["pattern"] == "^[A-Za-z0-9_-]{8,64}$"
    # Only schemas something refers to: none of Powertools' validation-error models.
    assert set(document["components"]["schemas"]) >= {"ErrorAnswer", "ErrorDetail", "OpenRtbData"}
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(
        document["components"]["schemas"]
    )


def test_importing_the_handler_leaves_pydantic_and_the_api_for_the_first_request():
    # GIVEN a fresh interpreter with the function's environment
    env = {
        **os.environ,
        "MEMBERSHIP_TABLE": "m",
        "CATALOG_TABLE": "c",
        "SEGMENTS_BUCKET": "b",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    env.pop("AWS_LAMBDA_INITIALIZATION_TYPE", None)
    program = (
        "import sys, functions.lookup.handler\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m.startswith(('aws_lambda_powertools.event_handler', 'functions.lookup.api'))))"
    )
    # WHEN it imports the lookup handler
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True)
    # THEN neither pydantic nor the API's modules are loaded yet
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_served_document_stays_byte_for_byte_what_it_was(metrics):
    # GIVEN the document as served before the request path stopped building it
    expected = (ROOT / "tests" / "unit" / "lookup_openapi.json").read_text()
    # WHEN a client asks for it through the stage URL
    event = openapi_event("k9l8m7n6o5.execute-api.eu-west-1.amazonaws.com", "/prod/v1/openapi.json")
    response = make_api(metrics).resolve(event, FakeContext())
    # THEN the body is the saved one, byte for byte
    assert response["body"] == expected
