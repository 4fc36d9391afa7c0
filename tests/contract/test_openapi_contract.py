"""The lookup API holds to its own OpenAPI document under fuzzing.

`dmp serve` runs in a fresh directory with a partner, a segment, visitors and a
published build; the schema is read from the running server's /v1/openapi.json, and
schemathesis sends generated requests (valid and invalid) with the partner's key. Every
answer must be no 5xx, a documented status, the documented content type and match the
documented schema."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow  # starts the local stack

PARTNER = "contract-dsp"
# Known to the build, so the fuzzed routes also produce answers with segments in them.
VISITORS = [f"contract-visitor-{i:02d}" for i in range(5)]
SEGMENT = """\
id: contract-recent-visitors
name: Seen this month
description: Every visitor with an event in the last 30 days
destinations: [contract-dsp]
rule:
  last_seen: {within_days: 30}
"""
MAX_EXAMPLES = 100  # per operation and mode: the file runs in well under a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def dmp(cwd: Path, *args: str) -> str:
    return run_dmp(cwd, *args).stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`dmp serve --port 0` with data in it; yields (gateway URL, the partner's key)."""
    cwd = tmp_path_factory.mktemp("contract")
    with dmp_serve(cwd) as state:
        (cwd / "segment.yaml").write_text(SEGMENT)
        dmp(cwd, "segments", "push", "segment.yaml", "--local")
        now_ms = int(time.time() * 1000)
        events = [
            {"uid": uid, "ts": now_ms - 86_400_000, "e": "page_view", "url": "https://shop.example/"}
            for uid in VISITORS
        ]
        (cwd / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
        dmp(cwd, "ingest", "events.jsonl", "--local")
        dmp(cwd, "build", "--local")
        key = dmp(cwd, "partners", "add", PARTNER, "--local").strip().splitlines()[-1]
        yield state["gateway_url"], key


@pytest.fixture(scope="module")
def lookup_schema(served: tuple[str, str]) -> Any:
    url, _ = served
    return schemathesis.openapi.from_url(f"{url}/v1/openapi.json")


@pytest.fixture(scope="module")
def partner_headers(served: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {served[1]}"}


# Every operation of the document, with whether it takes input that can be made invalid.
OPERATIONS = [
    ("GET", "/v1/users/{uid}/segments", True),
    ("POST", "/v1/lookup", True),
    ("GET", "/v1/segments", False),
    ("GET", "/v1/exports/latest", False),
    ("GET", "/v1/openapi.json", False),
]
FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path, has_input in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if has_input or mode is GenerationMode.POSITIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), FUZZ_CASES)
def test_generated_requests_get_documented_answers(
    lookup_schema: Any, partner_headers: dict[str, str], method: str, path: str, mode: GenerationMode
) -> None:
    # schemathesis' own pytest plugin loads schemas at collection time (or through a
    # fixture loader that pytest 9 breaks); a Hypothesis test per operation does the same.
    operation = lookup_schema[path][method]

    @given(case=operation.as_strategy(mode, headers=partner_headers))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def every_answer_matches_the_document(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    every_answer_matches_the_document()


def test_every_operation_of_the_document_is_fuzzed(lookup_schema: Any) -> None:
    documented = {(method.upper(), path) for path, item in lookup_schema.raw_schema["paths"].items() for method in item}
    assert documented == {(method, path) for method, path, _ in OPERATIONS}


def test_the_document_describes_the_contract(lookup_schema: Any) -> None:
    document = lookup_schema.raw_schema
    assert document["info"]["title"] == "DMP lookup API"
    assert document["servers"] == [{"url": "/"}]
    assert document["components"]["securitySchemes"]["PartnerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["PartnerKey"]["description"],
    }
    paths = document["paths"]
    partner_routes = {
        ("/v1/users/{uid}/segments", "get"),
        ("/v1/lookup", "post"),
        ("/v1/segments", "get"),
        ("/v1/exports/latest", "get"),
    }
    for path, method in partner_routes:
        operation = paths[path][method]
        assert operation["security"] == [{"PartnerKey": []}], path
        assert {"401", "403", "429", "500"} <= set(operation["responses"]), path
        assert "422" not in operation["responses"], path
        for status, response in operation["responses"].items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorAnswer"
                }, (path, status)
    assert "security" not in paths["/v1/openapi.json"]["get"]
    (uid, fmt, id_type) = paths["/v1/users/{uid}/segments"]["get"]["parameters"]
    # Either kind of id: a visitor id (`^[A-Za-z0-9_-]{8,64}$`) or, with id_type=partner, the partner's own.
    assert uid["schema"]["pattern"] == "^[A-Za-z0-9._~:-]{1,128}$"
    assert fmt["schema"]["enum"] == ["json", "openrtb"]
    assert id_type["schema"]["enum"] == ["dmp", "partner"]
    assert "404" in paths["/v1/exports/latest"]["get"]["responses"]
    assert "400" in paths["/v1/users/{uid}/segments"]["get"]["responses"]
    uids = document["components"]["schemas"]["LookupRequest"]["properties"]["uids"]
    assert (uids["minItems"], uids["maxItems"]) == (1, 100)
    assert document["components"]["schemas"]["LookupRequest"]["properties"]["id_type"]["enum"] == ["dmp", "partner"]
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(
        document["components"]["schemas"]
    )


@pytest.mark.parametrize("fmt", ["json", "openrtb"])
def test_a_known_visitor_gets_segments_in_the_documented_shape(
    lookup_schema: Any, partner_headers: dict[str, str], fmt: str
) -> None:
    operation = lookup_schema["/v1/users/{uid}/segments"]["GET"]
    case = operation.Case(path_parameters={"uid": VISITORS[0]}, query={"format": fmt})
    body = case.call_and_validate(headers=partner_headers, checks=CHECKS).json()
    segments = body["segments"] if fmt == "json" else body["user"]["data"][0]["segment"]
    assert [s["id"] for s in segments] == ["contract-recent-visitors"]


def test_a_batch_of_known_and_unknown_visitors_matches_the_document(
    lookup_schema: Any, partner_headers: dict[str, str]
) -> None:
    case = lookup_schema["/v1/lookup"]["POST"].Case(body={"uids": [*VISITORS, "never-seen-visitor"]})
    body = case.call_and_validate(headers=partner_headers, checks=CHECKS).json()
    assert [bool(r["segments"]) for r in body["results"]] == [True] * len(VISITORS) + [False]


def test_the_catalog_lists_the_partners_segment(lookup_schema: Any, partner_headers: dict[str, str]) -> None:
    case = lookup_schema["/v1/segments"]["GET"].Case()
    body = case.call_and_validate(headers=partner_headers, checks=CHECKS).json()
    assert [(s["id"], s["size"]) for s in body["segments"]] == [("contract-recent-visitors", len(VISITORS))]


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [(None, 401, "unauthorized"), ("Bearer dmp_not-a-partner-key", 403, "forbidden")],
)
def test_refusals_are_documented_answers(lookup_schema: Any, authorization: str | None, status: int, code: str) -> None:
    case = lookup_schema["/v1/segments"]["GET"].Case()
    headers = {"Authorization": authorization} if authorization else {}
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_the_document_is_public(served: tuple[str, str]) -> None:
    with urllib.request.urlopen(f"{served[0]}/v1/openapi.json", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
