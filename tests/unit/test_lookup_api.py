"""The lookup API on in-memory stores: answers, refusals in the one error shape, the
OpenAPI document, and what importing the handler costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics

from functions.core.config import Settings
from functions.core.documents import DocumentError, ExportFileRef, ExportPointer
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
PARTNER_ROUTES = {
    ("/v1/users/{uid}/segments", "get"),
    ("/v1/lookup", "post"),
    ("/v1/segments", "get"),
    ("/v1/exports/latest", "get"),
}
# demo-dsp's own ids (ID sync), and one of other-ssp's for the same visitor.
DEMO_ID = "dsp:8f3a.b~c_1"
OTHER_ID = "ssp-42"
MAPPINGS = {("demo-dsp", DEMO_ID): VISITOR, ("other-ssp", OTHER_ID): VISITOR, ("demo-dsp", "gone-visitor"): "x" * 8}
EXPORT = ExportPointer(
    "20261128T100000Z",
    "20261128T090000Z",
    ExportFileRef("exports/demo-dsp/20261128T100000Z/full.csv.gz", 3),
    ExportFileRef("exports/demo-dsp/20261128T100000Z/delta.csv.gz", 1),
)


class FakeMembership:
    def __init__(self, segments: dict[str, list[str]]) -> None:
        self.segments = segments
        self.reads = 0
        self.as_of: list[str | None] = []  # the build each read asked for

    def get(self, visitor_id: str, *, as_of: str | None) -> list[str]:
        self.reads += 1
        self.as_of.append(as_of)
        return self.segments.get(visitor_id, [])

    def get_many(self, visitor_ids: Sequence[str], *, as_of: str | None) -> dict[str, list[str]]:
        self.reads += 1
        self.as_of.append(as_of)
        return {v: self.segments[v] for v in visitor_ids if v in self.segments}


class FakeCatalogs:
    def get(self) -> Catalog:
        return CATALOG


class FakeIdMap:
    def __init__(self, mappings: dict[tuple[str, str], str] = MAPPINGS) -> None:
        self.mappings = mappings
        self.reads = 0

    def resolve(self, partner: str, partner_uid: str, *, now_s: int) -> str | None:
        self.reads += 1
        return self.mappings.get((partner, partner_uid))

    def resolve_many(self, partner: str, partner_uids: Iterable[str], *, now_s: int) -> dict[str, str]:
        self.reads += 1
        return {uid: self.mappings[partner, uid] for uid in partner_uids if (partner, uid) in self.mappings}


class FakeExports:
    """One export, demo-dsp's; URLs name the key and how long they last."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.asked: list[str] = []

    def latest(self, partner: str) -> ExportPointer | None:
        self.asked.append(partner)
        if self.broken:
            raise DocumentError("exports/demo-dsp/latest.json: no 'build_id'")
        return EXPORT if partner == "demo-dsp" else None

    def download_url(self, key: str, *, expires_in: int) -> str:
        return f"https://signed.example/{key}?expires={expires_in}"


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    metrics = Metrics(service="lookup", namespace="DMP")
    yield metrics
    metrics.clear_metrics()


def make_api(
    metrics: Metrics,
    membership: FakeMembership | None = None,
    id_map: FakeIdMap | None = None,
    exports: FakeExports | None = None,
    **settings: Any,
) -> Any:
    return create_api(
        membership or FakeMembership({VISITOR: ["london", "paris"]}),
        FakeCatalogs(),
        id_map=id_map or FakeIdMap(),
        exports=exports or FakeExports(),
        settings=Settings(membership_table="m", bucket="b", **settings),
        logger=Logger(service="lookup"),
        metrics=metrics,
    )


def user_event(uid: str = VISITOR, query: dict[str, str] | None = None, partner: str = "demo-dsp") -> dict[str, Any]:
    event = load_event("lookup_user_get")
    event["path"] = f"/v1/users/{uid}/segments"
    event["requestContext"]["path"] = f"/prod/v1/users/{uid}/segments"
    event["requestContext"]["authorizer"] = {"principalId": partner, "partner": partner}
    event["pathParameters"] = {"uid": uid}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def exports_event(partner: str = "demo-dsp") -> dict[str, Any]:
    event = load_event("lookup_segments_get")
    event.update(path="/v1/exports/latest", resource="/v1/exports/latest")
    event["requestContext"].update(path="/prod/v1/exports/latest", resourcePath="/v1/exports/latest")
    event["requestContext"]["authorizer"] = {"principalId": partner, "partner": partner}
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
    membership, id_map = FakeMembership({VISITOR: ["london"]}), FakeIdMap()
    api = make_api(metrics, membership, id_map)
    status, body, _ = call(api, batch_event(json.dumps({"uids": ["unknown-visitor", VISITOR]})))
    assert status == 200
    assert [(r["uid"], len(r["segments"])) for r in body["results"]] == [("unknown-visitor", 0), (VISITOR, 1)]
    assert (membership.reads, id_map.reads) == (1, 0)


def test_every_lookup_reads_membership_as_of_the_build_its_catalog_names(metrics):
    # GIVEN an API whose catalog names a published build
    membership = FakeMembership({VISITOR: ["london"]})
    api = make_api(metrics, membership)
    # WHEN a partner looks a visitor up by every route that reads membership
    call(api, user_event(VISITOR))
    call(api, user_event(VISITOR, {"format": "openrtb"}))
    call(api, user_event(DEMO_ID, {"id_type": "partner"}))
    call(api, batch_event(json.dumps({"uids": [VISITOR]})))
    call(api, batch_event(json.dumps({"uids": [DEMO_ID], "id_type": "partner"})))
    # THEN each read asked for that build's membership, not whatever a publish wrote last
    assert membership.as_of == [CATALOG.build_id] * 5


# -- by the partner's own id ------------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"format": "openrtb"}], ids=["json", "openrtb"])
def test_a_lookup_by_the_partners_own_id_answers_as_by_ours_but_echoes_its_id(metrics, query):
    # GIVEN demo-dsp's own id synced to a visitor in a segment it may see
    api = make_api(metrics)
    # WHEN demo-dsp looks the visitor up by its own id, and by ours
    by_partner = api.resolve(user_event(DEMO_ID, {**query, "id_type": "partner"}), FakeContext())
    by_ours = api.resolve(user_event(VISITOR, query), FakeContext())
    # THEN the answers are the same bytes but for the echoed id
    assert by_partner["statusCode"] == 200
    assert by_partner["body"] == by_ours["body"].replace(json.dumps(VISITOR), json.dumps(DEMO_ID))
    assert by_partner["multiValueHeaders"] == by_ours["multiValueHeaders"]
    assert "london" in by_partner["body"]


@pytest.mark.parametrize(
    ("uid", "partner"),
    [(OTHER_ID, "demo-dsp"), (DEMO_ID, "other-ssp"), ("never-synced", "demo-dsp"), ("gone-visitor", "demo-dsp")],
    ids=["another-partners-id", "asked-by-another-partner", "unknown", "mapped-visitor-without-segments"],
)
def test_a_partner_id_resolves_only_through_that_partners_own_mappings(metrics, uid, partner):
    status, body, _ = call(make_api(metrics), user_event(uid, {"id_type": "partner"}, partner))
    assert status == 200
    assert (body["uid"], body["segments"]) == (uid, [])


def test_a_partner_id_lookup_makes_two_reads_and_an_unmapped_one_only_one(metrics):
    membership, id_map = FakeMembership({VISITOR: ["london"]}), FakeIdMap()
    api = make_api(metrics, membership, id_map)
    call(api, user_event(DEMO_ID, {"id_type": "partner"}))
    assert (id_map.reads, membership.reads) == (1, 1)
    call(api, user_event("never-synced", {"id_type": "partner"}))
    assert (id_map.reads, membership.reads) == (2, 1)


def test_a_batch_of_partner_ids_answers_in_request_order_with_two_reads(metrics):
    # GIVEN demo-dsp's ids: one synced, one unknown, one other-ssp's, one synced again
    membership, id_map = FakeMembership({VISITOR: ["london"]}), FakeIdMap()
    uids = [DEMO_ID, "never-synced", OTHER_ID, DEMO_ID]
    # WHEN it asks for them as its own ids
    event = batch_event(json.dumps({"uids": uids, "id_type": "partner"}))
    status, body, _ = call(make_api(metrics, membership, id_map), event)
    # THEN each is echoed in order, only its own synced id has segments, in one read of each table
    assert status == 200
    assert [(r["uid"], [s["id"] for s in r["segments"]]) for r in body["results"]] == [
        (DEMO_ID, ["london"]),
        ("never-synced", []),
        (OTHER_ID, []),
        (DEMO_ID, ["london"]),
    ]
    assert (id_map.reads, membership.reads) == (1, 1)


def test_a_batch_of_partner_ids_none_synced_never_reads_membership(metrics):
    membership, id_map = FakeMembership({VISITOR: ["london"]}), FakeIdMap()
    event = batch_event(json.dumps({"uids": ["never-synced"], "id_type": "partner"}))
    status, body, _ = call(make_api(metrics, membership, id_map), event)
    assert (status, body["results"]) == (200, [{"uid": "never-synced", "segments": []}])
    assert (id_map.reads, membership.reads) == (1, 0)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (user_event("short"), "uid: String should match pattern '^[A-Za-z0-9_-]{8,64}$'"),
        (user_event("dsp:8f3a.b~c"), "uid: String should match pattern '^[A-Za-z0-9_-]{8,64}$'"),
        (user_event("short", {"id_type": "dmp"}), "uid: String should match pattern '^[A-Za-z0-9_-]{8,64}$'"),
        (
            batch_event(json.dumps({"uids": [VISITOR, "short", "a.b"]})),
            "uids.1: String should match pattern '^[A-Za-z0-9_-]{8,64}$'; "
            "uids.2: String should match pattern '^[A-Za-z0-9_-]{8,64}$'",
        ),
    ],
    ids=["short", "partner-chars", "explicit-dmp", "batch"],
)
def test_our_ids_are_held_to_the_visitor_id_pattern_whatever_the_partner_pattern_allows(metrics, event, message):
    status, body, _ = call(make_api(metrics), event)
    assert (status, body) == (400, errors.INVALID_REQUEST.body(message))


@pytest.mark.parametrize(
    "event",
    [
        user_event(VISITOR, {"id_type": "tdid"}),
        user_event(VISITOR, {"id_type": "PARTNER"}),
        user_event(VISITOR, {"id_type": ""}),
        user_event("bad!id", {"id_type": "partner"}),
        user_event("a" * 129, {"id_type": "partner"}),
        user_event("dsp%3Aid", {"id_type": "partner"}),
        batch_event(json.dumps({"uids": [VISITOR], "id_type": "tdid"})),
        batch_event(json.dumps({"uids": [VISITOR], "id_type": None})),
        batch_event(json.dumps({"uids": ["ok", "bad id"], "id_type": "partner"})),
        batch_event(json.dumps({"uids": ["a" * 129], "id_type": "partner"})),
        batch_event(json.dumps({"uids": [f"p{i}" for i in range(101)], "id_type": "partner"})),
    ],
    ids=[
        "unknown-id-type",
        "id-type-case",
        "empty-id-type",
        "partner-id-chars",
        "partner-id-length",
        "partner-id-encoded",
        "batch-unknown-id-type",
        "batch-null-id-type",
        "batch-partner-id-chars",
        "batch-partner-id-length",
        "batch-too-many",
    ],
)
def test_unknown_id_types_and_malformed_partner_ids_are_400s(metrics, event):
    status, body, headers = call(make_api(metrics), event)
    assert (status, headers["Content-Type"], body["error"]["code"]) == (400, "application/json", "invalid_request")


# -- exports ----------------------------------------------------------------------


def test_the_latest_export_answers_short_lived_urls_of_the_partners_files(metrics):
    # GIVEN demo-dsp has an export
    exports = FakeExports()
    # WHEN demo-dsp asks for its latest export
    status, body, headers = call(make_api(metrics, exports=exports), exports_event("demo-dsp"))
    # THEN it gets the build, its predecessor, and URLs of its two files valid for 300 s, never cached
    assert status == 200
    assert body == {
        "build_id": "20261128T100000Z",
        "previous_build_id": "20261128T090000Z",
        "full": {"url": "https://signed.example/exports/demo-dsp/20261128T100000Z/full.csv.gz?expires=300", "rows": 3},
        "delta": {
            "url": "https://signed.example/exports/demo-dsp/20261128T100000Z/delta.csv.gz?expires=300",
            "rows": 1,
        },
    }
    assert headers["Cache-Control"] == "private, no-store"
    assert exports.asked == ["demo-dsp"]


def test_a_partner_without_an_export_gets_a_404_and_only_its_own_export_is_read(metrics):
    exports = FakeExports()
    status, body, _ = call(make_api(metrics, exports=exports), exports_event("other-ssp"))
    assert (status, body) == (404, errors.NO_EXPORT.body())
    assert exports.asked == ["other-ssp"]


def test_an_unreadable_export_pointer_is_our_500_not_a_url(metrics):
    status, body, _ = call(make_api(metrics, exports=FakeExports(broken=True)), exports_event())
    assert (status, body) == (500, errors.INTERNAL_ERROR.body())


def test_the_exports_route_needs_the_authorizers_partner(metrics):
    event = exports_event()
    event["requestContext"]["authorizer"] = None
    exports = FakeExports()
    status, body, _ = call(make_api(metrics, exports=exports), event)
    assert (status, body, exports.asked) == (401, errors.UNAUTHORIZED.body(), [])


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
    assert document["paths"]["/v1/exports/latest"]["get"]["responses"]["404"]["content"]["application/json"][
        "examples"
    ] == {"no_export": {"value": errors.NO_EXPORT.body()}}
    body = document["components"]["schemas"]["LookupRequest"]
    assert body["additionalProperties"] is False
    assert (body["properties"]["uids"]["minItems"], body["properties"]["uids"]["maxItems"]) == (1, 100)
    assert body["properties"]["uids"]["items"]["pattern"] == "^[A-Za-z0-9._~:-]{1,128}$"
    assert body["properties"]["id_type"]["enum"] == ["dmp", "partner"]
    assert body["properties"]["id_type"]["default"] == "dmp"
    parameters = {p["name"]: p for p in document["paths"]["/v1/users/{uid}/segments"]["get"]["parameters"]}
    assert parameters["uid"]["schema"]["pattern"] == "^[A-Za-z0-9._~:-]{1,128}$"
    assert "^[A-Za-z0-9_-]{8,64}$" in parameters["uid"]["description"]
    assert (parameters["id_type"]["in"], parameters["id_type"]["schema"]["enum"]) == ("query", ["dmp", "partner"])
    assert set(document["components"]["schemas"]["ExportAnswer"]["required"]) == {
        "build_id",
        "previous_build_id",
        "full",
        "delta",
    }
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
        "ID_MAP_TABLE": "i",
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
