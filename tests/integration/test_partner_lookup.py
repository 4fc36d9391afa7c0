"""Lookups by a partner's own ids and `GET /v1/exports/latest`, on the local stack (moto):
ingest -> ID sync mappings -> build (and its exports) -> the lookup handler, as a partner
calls it."""

from __future__ import annotations

import gzip
import importlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests

from functions.core.storage import aws as aws_plumbing
from functions.core.storage.events import EventStore
from functions.core.storage.id_map import IdMapStore
from tests.conftest import load_event
from tests.integration.conftest import BUILD_TIME
from tests.integration.test_pipeline import answer, build, user_event

DAY_S = 86_400
# Each partner's own ids of the shop's visitors (see the `traffic` fixture), as ID sync stores them.
DEMO_RETURNING = "dsp:4f1c.returning~1"
DEMO_PARIS = "dsp-paris"
OTHER_RETURNING = "ssp_77"


def sync(aws: Any, partner: str, partner_uid: str, visitor_id: str) -> None:
    """Both sides of an ID sync mapping, as `GET /sync` stores them: the visitor's (the
    builder's exports read it) and the partner's (the lookup resolves through it)."""
    synced_at = int(BUILD_TIME.timestamp()) - DAY_S
    expires_at = max(int(time.time()), synced_at) + 90 * DAY_S
    EventStore(aws.events_table).put_mapping(
        visitor_id, partner, partner_uid, ts_ms=synced_at * 1000, expires_at=expires_at
    )
    IdMapStore(aws.id_map_table).put(partner, partner_uid, visitor_id, at_s=synced_at, expires_at=expires_at)


@pytest.fixture
def synced(traffic: dict[str, str], load_handler: Any, aws: Any, lambda_context: Any) -> dict[str, str]:
    """The partners' ids of the shop's visitors (demo-dsp knows the returning Londoner and
    the Parisian, other-ssp the returning Londoner), then a published build."""
    sync(aws, "demo-dsp", DEMO_RETURNING, traffic["returning"])
    sync(aws, "demo-dsp", DEMO_PARIS, traffic["paris"])
    sync(aws, "other-ssp", OTHER_RETURNING, traffic["returning"])
    build(load_handler, lambda_context)
    return traffic


def partner_user_event(uid: str, partner: str = "demo-dsp", fmt: str | None = None) -> dict[str, Any]:
    event = user_event(uid, partner, fmt)
    event["queryStringParameters"] = {**(event["queryStringParameters"] or {}), "id_type": "partner"}
    event["multiValueQueryStringParameters"] = {
        **(event["multiValueQueryStringParameters"] or {}),
        "id_type": ["partner"],
    }
    return event


def batch_event(uids: list[str], partner: str = "demo-dsp", id_type: str | None = "partner") -> dict[str, Any]:
    event = load_event("lookup_batch_post")
    event["requestContext"]["authorizer"] = {"principalId": partner, "partner": partner}
    event["body"] = json.dumps({"uids": uids, **({"id_type": id_type} if id_type else {})})
    return event


def exports_event(partner: str = "demo-dsp") -> dict[str, Any]:
    event = load_event("lookup_segments_get")
    event.update(path="/v1/exports/latest", resource="/v1/exports/latest")
    event["requestContext"].update(path="/prod/v1/exports/latest", resourcePath="/v1/exports/latest")
    event["requestContext"]["authorizer"] = {"principalId": partner, "partner": partner}
    return event


def segment_ids(body: dict[str, Any]) -> list[str]:
    return [s["id"] for s in body["segments"]]


# -- by the partner's own id ------------------------------------------------------


@pytest.mark.parametrize("fmt", [None, "openrtb"], ids=["json", "openrtb"])
def test_a_partner_looks_a_visitor_up_by_its_own_id_and_gets_the_same_answer(synced, load_handler, lambda_context, fmt):
    lookup = load_handler("lookup")
    # WHEN demo-dsp asks by its own id, and by ours
    by_partner = lookup.handler(partner_user_event(DEMO_RETURNING, fmt=fmt), lambda_context)
    by_ours = lookup.handler(user_event(synced["returning"], fmt=fmt), lambda_context)
    # THEN the answers are byte for byte the same but for the echoed id
    assert by_partner["statusCode"] == 200
    expected = by_ours["body"].replace(json.dumps(synced["returning"]), json.dumps(DEMO_RETURNING))
    assert by_partner["body"] == expected
    assert by_partner["multiValueHeaders"] == by_ours["multiValueHeaders"]
    body = answer(by_partner)
    found = segment_ids(body) if fmt is None else [s["id"] for s in body["user"]["data"][0]["segment"]]
    assert found == ["all-visitors", "london-pricing"]


@pytest.mark.parametrize(
    ("partner", "partner_uid"),
    [("demo-dsp", OTHER_RETURNING), ("other-ssp", DEMO_RETURNING), ("demo-dsp", "never-synced"), ("demo-dsp", "7")],
    ids=["another-partners-id", "asked-by-another-partner", "unknown", "unknown-short"],
)
def test_an_id_the_partner_never_synced_has_no_segments(synced, load_handler, lambda_context, partner, partner_uid):
    response = load_handler("lookup").handler(partner_user_event(partner_uid, partner), lambda_context)
    assert response["statusCode"] == 200
    assert (answer(response)["uid"], answer(response)["segments"]) == (partner_uid, [])


def test_each_partner_sees_only_its_segments_through_its_own_id(synced, load_handler, lambda_context):
    lookup = load_handler("lookup")
    demo = answer(lookup.handler(partner_user_event(DEMO_PARIS, "demo-dsp"), lambda_context))
    other = answer(lookup.handler(partner_user_event(OTHER_RETURNING, "other-ssp"), lambda_context))
    assert segment_ids(demo) == ["all-visitors"]  # the Parisian's `paris` segment is other-ssp's only
    assert segment_ids(other) == ["all-visitors"]  # the Londoner's `london-pricing` is demo-dsp's only


def test_an_expired_mapping_resolves_to_nothing(synced, load_handler, aws, lambda_context):
    # GIVEN a mapping whose TTL has passed but that DynamoDB has not deleted yet
    IdMapStore(aws.id_map_table).put(
        "demo-dsp", "stale-id", synced["returning"], at_s=0, expires_at=int(time.time()) - 1
    )
    # WHEN the partner asks by that id
    response = load_handler("lookup").handler(partner_user_event("stale-id"), lambda_context)
    # THEN the visitor is not found
    assert answer(response)["segments"] == []


def test_a_batch_of_partner_ids_answers_in_request_order(synced, load_handler, lambda_context):
    uids = [DEMO_PARIS, "never-synced", OTHER_RETURNING, DEMO_RETURNING]
    response = load_handler("lookup").handler(batch_event(uids), lambda_context)
    assert response["statusCode"] == 200
    body = answer(response)
    assert [(r["uid"], segment_ids(r)) for r in body["results"]] == [
        (DEMO_PARIS, ["all-visitors"]),
        ("never-synced", []),
        (OTHER_RETURNING, []),  # other-ssp's id: demo-dsp resolves only its own
        (DEMO_RETURNING, ["all-visitors", "london-pricing"]),
    ]
    assert body["build_id"] == "20261128T100000Z"


def test_a_batch_by_partner_ids_answers_the_bytes_of_the_batch_by_ours_but_the_echoed_ids(
    synced, load_handler, lambda_context
):
    lookup = load_handler("lookup")
    theirs = lookup.handler(batch_event([DEMO_RETURNING, DEMO_PARIS]), lambda_context)["body"]
    ours = lookup.handler(batch_event([synced["returning"], synced["paris"]], id_type=None), lambda_context)["body"]
    for visitor, partner_uid in ((synced["returning"], DEMO_RETURNING), (synced["paris"], DEMO_PARIS)):
        ours = ours.replace(json.dumps(visitor), json.dumps(partner_uid))
    assert theirs == ours


@pytest.mark.parametrize(
    "event",
    [
        partner_user_event("bad!id"),
        partner_user_event("x" * 129),
        batch_event(["ok", "bad id"]),
        batch_event([DEMO_RETURNING], id_type="tdid"),
    ],
    ids=["chars", "length", "batch-chars", "batch-id-type"],
)
def test_malformed_partner_ids_and_unknown_id_types_are_400s(synced, load_handler, lambda_context, event):
    response = load_handler("lookup").handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert answer(response)["error"]["code"] == "invalid_request"


def test_an_unknown_id_type_on_a_get_is_a_400(synced, load_handler, lambda_context):
    event = partner_user_event(DEMO_RETURNING)
    event["queryStringParameters"]["id_type"] = "tdid"
    event["multiValueQueryStringParameters"]["id_type"] = ["tdid"]
    response = load_handler("lookup").handler(event, lambda_context)
    assert (response["statusCode"], answer(response)["error"]["code"]) == (400, "invalid_request")


def optout_event(visitor_id: str) -> dict[str, Any]:
    event = load_event("optout_get")
    event["cookies"] = [f"dmp_uid={visitor_id}"]
    return event


def test_an_opted_out_visitor_has_no_segments_by_any_partners_id_at_once(synced, load_handler, lambda_context):
    lookup = load_handler("lookup")
    assert segment_ids(answer(lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context)))
    # WHEN the returning Londoner opts out through GET /optout (no rebuild)
    assert load_handler("ingest").handler(optout_event(synced["returning"]), lambda_context)["statusCode"] == 200
    # THEN neither partner finds a segment of it by its own id, alone or in a batch
    assert answer(lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context))["segments"] == []
    assert answer(lookup.handler(partner_user_event(OTHER_RETURNING, "other-ssp"), lambda_context))["segments"] == []
    results = answer(lookup.handler(batch_event([DEMO_RETURNING, DEMO_PARIS]), lambda_context))["results"]
    assert [segment_ids(r) for r in results] == [[], ["all-visitors"]]


@pytest.fixture
def table_requests(aws: Any) -> Iterator[list[tuple[str, frozenset[str]]]]:
    """(operation, tables) of every DynamoDB request of clients created from now on."""
    seen: list[tuple[str, frozenset[str]]] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        tables = set(params.get("RequestItems", {})) | ({params["TableName"]} if "TableName" in params else set())
        seen.append((model.name, frozenset(tables)))

    aws_plumbing.session().register("provide-client-params.dynamodb.*", count)
    yield seen
    aws_plumbing.session().unregister("provide-client-params.dynamodb.*", count)


def test_a_partner_id_lookup_is_two_reads_and_a_batch_of_100_two_requests(
    synced, load_handler, aws, lambda_context, table_requests
):
    lookup = load_handler("lookup")
    id_map, membership = frozenset({aws.id_map_table}), frozenset({aws.membership_table})
    lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context)  # the catalog is read once, then held
    table_requests.clear()
    # WHEN a partner looks up one of its ids, then a batch of 100 of them
    assert segment_ids(answer(lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context)))
    single = list(table_requests)
    table_requests.clear()
    uids = [DEMO_RETURNING, DEMO_PARIS, *(f"unsynced-{i}" for i in range(98))]
    results = answer(lookup.handler(batch_event(uids), lambda_context))["results"]
    batch = list(table_requests)
    # THEN each is one read of the id map, then one of membership
    assert single == [("GetItem", id_map), ("GetItem", membership)]
    assert [bool(r["segments"]) for r in results] == [True, True] + [False] * 98
    assert batch == [("BatchGetItem", id_map), ("BatchGetItem", membership)]


def test_an_unsynced_id_costs_one_read(synced, load_handler, aws, lambda_context, table_requests):
    lookup = load_handler("lookup")
    lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context)
    table_requests.clear()
    lookup.handler(partner_user_event("never-synced"), lambda_context)
    lookup.handler(batch_event(["never-synced", "nor-this"]), lambda_context)
    assert table_requests == [
        ("GetItem", frozenset({aws.id_map_table})),
        ("BatchGetItem", frozenset({aws.id_map_table})),
    ]


# -- exports ------------------------------------------------------------------------

FILES = {
    "demo-dsp": {
        "full": b"uid,partner_uid,segments\nvisitor-london-1,dsp:4f1c.returning~1,all-visitors|london-pricing\n",
        "delta": b"uid,partner_uid,added,removed\nvisitor-london-1,dsp:4f1c.returning~1,london-pricing,\n",
    },
    "other-ssp": {
        "full": b"uid,partner_uid,segments\nvisitor-paris-1,,all-visitors|paris\n",
        "delta": b"uid,partner_uid,added,removed\n",
    },
}


def publish_export(s3: Any, bucket: str, partner: str, build_id: str = "20261128T100000Z") -> dict[str, Any]:
    """A partner's export as the builder's publish leaves it: two gzip CSV files (stored
    with `Content-Encoding: gzip`, as the builder stores them), then
    `exports/<partner>/latest.json` naming them. Returns the pointer."""
    pointer: dict[str, Any] = {"build_id": build_id, "previous_build_id": "20261127T100000Z"}
    for name, content in FILES[partner].items():
        key = f"exports/{partner}/{build_id}/{name}.csv.gz"
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=gzip.compress(content, mtime=0),
            ContentType="text/csv",
            ContentEncoding="gzip",
        )
        pointer[name] = {"key": key, "rows": content.count(b"\n") - 1}
    s3.put_object(Bucket=bucket, Key=f"exports/{partner}/latest.json", Body=json.dumps(pointer).encode())
    return pointer


def test_a_partner_gets_short_lived_urls_of_its_latest_export_that_fetch_its_files(load_handler, aws, lambda_context):
    # GIVEN demo-dsp's export in the bucket
    publish_export(boto3.client("s3"), aws.bucket, "demo-dsp")
    # WHEN demo-dsp asks for its latest export
    response = load_handler("lookup").handler(exports_event("demo-dsp"), lambda_context)
    # THEN it gets the build, its predecessor, each file's rows, and URLs valid for 300 s
    assert response["statusCode"] == 200, response["body"]
    assert response["multiValueHeaders"]["Cache-Control"] == ["private, no-store"]
    body = answer(response)
    assert (body["build_id"], body["previous_build_id"]) == ("20261128T100000Z", "20261127T100000Z")
    assert (body["full"]["rows"], body["delta"]["rows"]) == (1, 1)
    for name in ("full", "delta"):
        url = urlsplit(body[name]["url"])
        query = parse_qs(url.query)
        assert url.path.endswith(f"/exports/demo-dsp/20261128T100000Z/{name}.csv.gz")
        assert (query["X-Amz-Algorithm"], query["X-Amz-Expires"]) == (["AWS4-HMAC-SHA256"], ["300"])
        # AND each URL, fetched without any credentials, serves the gzip file itself (no
        # client unzips it on the way, whatever the object's Content-Encoding)
        fetched = requests.get(body[name]["url"], timeout=10)
        assert fetched.status_code == 200
        assert fetched.headers["Content-Type"] == "application/gzip"
        assert gzip.decompress(fetched.content) == FILES["demo-dsp"][name]


def test_after_a_build_a_partner_fetches_the_export_the_builder_wrote_in_its_own_ids(
    synced, load_handler, lambda_context
):
    # GIVEN a published build, which wrote each destination partner's export
    # WHEN demo-dsp asks for its latest export and fetches both files
    response = load_handler("lookup").handler(exports_event("demo-dsp"), lambda_context)
    assert response["statusCode"] == 200, response["body"]
    body = answer(response)
    files = {
        name: gzip.decompress(requests.get(body[name]["url"], timeout=10).content).decode().splitlines()
        for name in ("full", "delta")
    }
    # THEN they are this build's, with the rows latest.json counts, its own ids beside ours
    assert (body["build_id"], body["previous_build_id"]) == ("20261128T100000Z", None)
    assert files["full"][0] == "uid,partner_uid,segments"
    assert files["delta"][0] == "uid,partner_uid,added,removed"
    assert (body["full"]["rows"], body["delta"]["rows"]) == (len(files["full"]) - 1, len(files["delta"]) - 1)
    assert f"{synced['returning']},{DEMO_RETURNING},all-visitors|london-pricing" in files["full"]
    assert OTHER_RETURNING not in "\n".join(files["full"] + files["delta"])  # other-ssp's id stays other-ssp's


def test_a_partner_without_an_export_gets_a_404_never_another_partners_files(load_handler, aws, lambda_context):
    # GIVEN only demo-dsp has an export
    publish_export(boto3.client("s3"), aws.bucket, "demo-dsp")
    # WHEN other-ssp asks for its latest export
    response = load_handler("lookup").handler(exports_event("other-ssp"), lambda_context)
    # THEN it is a 404 in the API's error shape, naming no file
    assert response["statusCode"] == 404
    assert answer(response) == {"error": {"code": "no_export", "message": "This partner has no export yet"}}
    assert "demo-dsp" not in response["body"]


def test_each_partner_gets_only_its_own_files(load_handler, aws, lambda_context):
    s3 = boto3.client("s3")
    publish_export(s3, aws.bucket, "demo-dsp")
    publish_export(s3, aws.bucket, "other-ssp", build_id="20261128T110000Z")
    lookup = load_handler("lookup")
    body = answer(lookup.handler(exports_event("other-ssp"), lambda_context))
    assert body["build_id"] == "20261128T110000Z"
    for name in ("full", "delta"):
        assert "/exports/other-ssp/" in body[name]["url"] and "demo-dsp" not in body[name]["url"]
        assert gzip.decompress(requests.get(body[name]["url"], timeout=10).content) == FILES["other-ssp"][name]


def test_a_pointer_naming_another_partners_file_is_refused_not_signed(load_handler, aws, lambda_context):
    # GIVEN other-ssp's latest.json names demo-dsp's files (a broken or tampered pointer)
    s3 = boto3.client("s3")
    pointer = publish_export(s3, aws.bucket, "demo-dsp")
    s3.put_object(Bucket=aws.bucket, Key="exports/other-ssp/latest.json", Body=json.dumps(pointer).encode())
    # WHEN other-ssp asks for its latest export
    response = load_handler("lookup").handler(exports_event("other-ssp"), lambda_context)
    # THEN it is our 500, with no URL in it
    assert response["statusCode"] == 500
    assert answer(response)["error"]["code"] == "internal_error"
    assert "exports/" not in response["body"]


def test_only_the_exports_route_creates_an_s3_client(synced, load_handler, aws, lambda_context, s3_clients_created):
    # GIVEN a fresh lookup (cold start) and a partner's export
    lookup = load_handler("lookup")
    publish_export(boto3.client("s3"), aws.bucket, "demo-dsp")
    s3_clients_created.clear()
    # WHEN it answers the bidding routes, by either kind of id
    lookup.handler(user_event(synced["returning"]), lambda_context)
    lookup.handler(partner_user_event(DEMO_RETURNING), lambda_context)
    lookup.handler(batch_event([DEMO_RETURNING]), lambda_context)
    # THEN no S3 client was created, and the exports route creates one, then reuses it
    assert s3_clients_created == []
    for _ in range(2):
        assert lookup.handler(exports_event(), lambda_context)["statusCode"] == 200
    assert len(s3_clients_created) == 1


@pytest.fixture
def moto_server_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The local stack as `dmp serve` runs it: moto as an HTTP server, the functions'
    environment pointing at it."""
    from moto.server import ThreadedMotoServer

    from dmp.local import create_resources

    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        target = create_resources(f"http://{host}:{port}", region="eu-west-1")
        for name, value in target.environment().items():
            monkeypatch.setenv(name, value)
        yield target
    finally:
        server.stop()


def test_on_a_moto_server_the_url_fetches_the_file_over_http(moto_server_stack, lambda_context):
    # GIVEN the stack behind a moto server, with demo-dsp's export
    s3 = boto3.client("s3", endpoint_url=moto_server_stack.aws_endpoint_url)
    publish_export(s3, moto_server_stack.bucket, "demo-dsp")
    lookup = importlib.reload(importlib.import_module("functions.lookup.handler"))
    # WHEN demo-dsp asks for its latest export
    body = answer(lookup.handler(exports_event("demo-dsp"), lambda_context))
    # THEN each URL points at the server and, fetched over HTTP, serves the file
    for name in ("full", "delta"):
        assert body[name]["url"].startswith(f"{moto_server_stack.aws_endpoint_url}/{moto_server_stack.bucket}/")
        with urllib.request.urlopen(body[name]["url"], timeout=10) as fetched:
            assert gzip.decompress(fetched.read()) == FILES["demo-dsp"][name]
