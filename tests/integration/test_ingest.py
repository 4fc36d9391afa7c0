"""The ingest handler on moto, driven with the real-shaped samples in events/."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest

from functions.core.gpp import US_SECTIONS
from functions.ingest.logic import GIF, NO_STORE
from tests.conftest import load_event
from tests.unit.gpp_builder import gpp_string, us_section


@pytest.fixture
def ingest(load_handler: Any) -> Any:
    return load_handler("ingest")


def stored_items(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def assert_is_the_gif(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert response["headers"]["Cache-Control"] == NO_STORE
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]) == GIF


def test_pixel_hit_stores_one_event_with_geo_device_props_and_ttl(ingest, aws, lambda_context):
    # GIVEN a first hit from a London desktop browser with no cookie
    event = load_event("pixel_get")
    # WHEN the pixel receives it
    response = ingest.handler(event, lambda_context)
    # THEN it answers the GIF, sets a new visitor cookie and stores exactly one event
    assert_is_the_gif(response)
    (cookie,) = response["cookies"]
    assert cookie.startswith("dmp_uid=")
    for attribute in ("Max-Age=7776000", "Path=/", "Secure", "HttpOnly", "SameSite=None"):
        assert attribute in cookie
    visitor_id = cookie.split(";")[0].split("=", 1)[1]
    (item,) = stored_items(aws.events_table)
    assert item["visitor_id"]["S"] == visitor_id
    assert item["event_id"]["S"] == "eid:pv-3f9a1c"
    assert item["name"]["S"] == "page_view"
    assert item["url"]["S"] == "https://shop.example/pricing"
    assert item["ref"]["S"] == "https://www.google.com/"
    assert item["props"]["M"] == {"campaign": {"S": "xmas26"}}
    assert (item["country"]["S"], item["region"]["S"], item["city"]["S"]) == ("GB", "ENG", "London")
    assert item["device"]["S"] == "desktop"
    received_ms = event["requestContext"]["timeEpoch"]
    assert int(item["ts"]["N"]) == received_ms
    assert int(item["expires_at"]["N"]) == received_ms // 1000 + 90 * 86_400


def test_raw_ip_is_never_stored(ingest, aws, lambda_context):
    event = load_event("pixel_get")
    ingest.handler(event, lambda_context)
    (item,) = stored_items(aws.events_table)
    assert "203.0.113.17" not in json.dumps(item)


def test_retried_hit_with_same_eid_is_stored_once_and_counted_as_a_duplicate(ingest, aws, lambda_context, capsys):
    # GIVEN a hit with a client event id was stored
    event = load_event("pixel_get")
    event["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
    ingest.handler(event, lambda_context)
    assert "hits_stored" in metric_names(capsys.readouterr().out)
    # WHEN the browser retries it five seconds later
    event["requestContext"]["timeEpoch"] += 5_000
    response = ingest.handler(event, lambda_context)
    # THEN it still gets the GIF, the table holds one event, and the repeat is counted
    assert_is_the_gif(response)
    assert len(stored_items(aws.events_table)) == 1
    metrics = metric_names(capsys.readouterr().out)
    assert "hits_duplicate" in metrics and "hits_stored" not in metrics


def test_existing_cookie_is_kept_and_not_reissued(ingest, aws, lambda_context):
    event = load_event("pixel_get")
    event["cookies"] = ["dmp_uid=5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"]
    response = ingest.handler(event, lambda_context)
    assert not response.get("cookies")
    assert stored_items(aws.events_table)[0]["visitor_id"]["S"] == "5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"


# A US national section (id 7) in which the visitor opted out of the sale of its data.
GPP_US_SALE_OPT_OUT = gpp_string([(7, us_section(US_SECTIONS[7].fields, {"SaleOptOut": 1}, version=1))])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headers": {"dnt": "1"}}, "DNT"),
        ({"headers": {"sec-gpc": "1"}}, "GPC"),
        ({"query": "&gdpr=1"}, "GDPR without a TC string"),
        ({"query": "&gdpr=1&gdpr_consent=not-a-tc-string"}, "GDPR with garbage consent"),
        (
            {"headers": {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}},
            "bot",
        ),
        ({"cookies": ["dmp_optout=1"]}, "opt-out cookie"),
        ({"query": f"&gpp={GPP_US_SALE_OPT_OUT}&gpp_sid=7"}, "GPP: a US opt-out of sale"),
        ({"query": "&gpp=DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA&gpp_sid=x"}, "GPP: malformed"),
    ],
)
def test_refused_hits_store_nothing_and_set_no_cookie_but_answer_the_gif(ingest, aws, lambda_context, change, reason):
    event = load_event("pixel_get")
    event["headers"].update(change.get("headers", {}))
    event["rawQueryString"] += change.get("query", "")
    if "cookies" in change:
        event["cookies"] = change["cookies"]
    response = ingest.handler(event, lambda_context)
    assert_is_the_gif(response)
    assert not response.get("cookies"), reason
    assert stored_items(aws.events_table) == [], reason


@pytest.mark.parametrize(
    "query",
    [
        "e=Not%20Valid",
        "e=page_view&e=page_view",
        "e=page_view&url=" + "x" * 2049,
        "e=page_view&eid=" + "y" * 65,
        "e=page_view&" + "&".join(f"p.k{i}=v" for i in range(21)),
        "e=page_view&p.Bad-Name=v",
        "e=page_view&url=%ff%fe",
        "e=page_view&url=a%00b",
        "e=page_view&gdpr=2",
    ],
)
def test_malformed_pixel_hits_answer_the_gif_and_store_nothing(ingest, aws, lambda_context, query):
    event = load_event("pixel_get")
    event["rawQueryString"] = query
    response = ingest.handler(event, lambda_context)
    assert_is_the_gif(response)
    assert stored_items(aws.events_table) == []


def test_malformed_uid_is_treated_as_absent(ingest, aws, lambda_context):
    event = load_event("pixel_get")
    event["rawQueryString"] += "&uid=short"
    response = ingest.handler(event, lambda_context)
    visitor_id = response["cookies"][0].split(";")[0].split("=", 1)[1]
    assert visitor_id != "short"
    assert stored_items(aws.events_table)[0]["visitor_id"]["S"] == visitor_id


def test_collect_stores_valid_events_and_reports_rejections_by_index(ingest, aws, lambda_context):
    event = load_event("collect_post")
    response = ingest.handler(event, lambda_context)
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [2]
    assert "event name" in body["rejected"][0]["error"]
    items = stored_items(aws.events_table)
    assert {i["name"]["S"] for i in items} == {"page_view", "add_to_cart"}
    assert {i["visitor_id"]["S"] for i in items} == {"5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"}
    assert {i["device"]["S"] for i in items} == {"mobile"}


def test_collect_retry_of_the_same_batch_stores_nothing_new(ingest, aws, lambda_context):
    ingest.handler(load_event("collect_post"), lambda_context)
    ingest.handler(load_event("collect_post"), lambda_context)
    assert len(stored_items(aws.events_table)) == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ('{"events": ' + "[" * 30_000 + "]" * 30_000 + "}", 400, "malformed_json"),
        ("[1, 2]", 400, "invalid_body"),
        ('{"events": []}', 400, "invalid_events"),
        (json.dumps({"events": [{"e": "page_view"}] * 51}), 413, "too_many_events"),
        (json.dumps({"events": [{"e": "page_view", "url": "x" * 70_000}]}), 413, "payload_too_large"),
    ],
)
def test_unreadable_collect_bodies_get_a_json_error(ingest, aws, lambda_context, body, status, code):
    event = load_event("collect_post")
    event["body"] = body
    response = ingest.handler(event, lambda_context)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code
    assert stored_items(aws.events_table) == []


def test_collect_accepts_a_base64_encoded_body(ingest, aws, lambda_context):
    event = load_event("collect_post")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    response = ingest.handler(event, lambda_context)
    assert json.loads(response["body"])["accepted"] == 2


def test_tag_is_served_as_cacheable_javascript(ingest, aws, lambda_context):
    event = load_event("pixel_get")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/tag.js"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /tag.js"
    event["rawQueryString"] = ""
    response = ingest.handler(event, lambda_context)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("application/javascript")
    assert "max-age" in response["headers"]["Cache-Control"]
    assert "sendBeacon" in response["body"] and "__tcfapi" in response["body"]


def test_collect_body_flagged_base64_but_not_base64_is_a_400(ingest, aws, lambda_context):
    event = load_event("collect_post")
    event["isBase64Encoded"] = True
    event["body"] = "{not base64!}"
    response = ingest.handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "malformed_body"


# --- the viewer location is believed only from CloudFront ---------------------------

# What CloudFront sends in the origin-verify header; the deployed value is generated by
# Secrets Manager and reaches the function as ORIGIN_VERIFY_SECRET.
ORIGIN_SECRET = "Jd8uQ2nV7xLr4TbW9kZs1MeC6yHa3PfG"
LONDON = ("GB", "ENG", "London")


@pytest.fixture
def ingest_behind_cloudfront(monkeypatch: pytest.MonkeyPatch, load_handler: Any) -> Any:
    monkeypatch.setenv("ORIGIN_VERIFY_SECRET", ORIGIN_SECRET)
    return load_handler("ingest")


def location(item: dict[str, Any]) -> tuple[str | None, ...]:
    return tuple(item.get(name, {}).get("S") for name in ("country", "region", "city"))


def metric_names(output: str) -> set[str]:
    """The metrics of the EMF documents Powertools printed."""
    names: set[str] = set()
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                names.update(metric["Name"] for metric in directive["Metrics"])
    return names


def test_a_hit_through_cloudfront_keeps_its_location_and_not_the_verify_header(
    ingest_behind_cloudfront, aws, lambda_context, capsys
):
    # GIVEN the function configured with the origin secret, and a hit carrying it
    event = load_event("pixel_get")
    event["headers"]["x-dmp-origin-verify"] = ORIGIN_SECRET
    # WHEN the pixel receives it
    response = ingest_behind_cloudfront.handler(event, lambda_context)
    # THEN it is stored with CloudFront's location, and the secret is stored nowhere
    assert_is_the_gif(response)
    (item,) = stored_items(aws.events_table)
    assert location(item) == LONDON
    assert ORIGIN_SECRET not in json.dumps(item)
    assert "geo_untrusted" not in metric_names(capsys.readouterr().out)


@pytest.mark.parametrize(
    "presented",
    [
        None,
        "",
        "not-the-secret",
        ORIGIN_SECRET[:-1],
        ORIGIN_SECRET + "x",
        ORIGIN_SECRET.lower(),
        "Jd8uQ2nV7xLr4TbW9kZs1MeC6yHa3Pf\u00e9",  # non-ASCII, as a direct caller may send
    ],
    ids=["missing", "empty", "wrong", "prefix", "longer", "other-case", "non-ascii"],
)
def test_a_hit_without_the_origin_secret_is_stored_without_its_location(
    ingest_behind_cloudfront, aws, lambda_context, capsys, presented
):
    # GIVEN a direct call to the API with viewer headers of its own choosing
    event = load_event("pixel_get")
    if presented is not None:
        event["headers"]["x-dmp-origin-verify"] = presented
    # WHEN the pixel receives it
    response = ingest_behind_cloudfront.handler(event, lambda_context)
    # THEN the hit is kept (the GIF, the new visitor's cookie, the event) but not its location
    assert_is_the_gif(response)
    assert response["cookies"][0].startswith("dmp_uid=")
    (item,) = stored_items(aws.events_table)
    assert item["url"]["S"] == "https://shop.example/pricing"
    assert item["device"]["S"] == "desktop"
    assert location(item) == (None, None, None)
    assert "geo_untrusted" in metric_names(capsys.readouterr().out)


def test_a_collect_batch_without_the_origin_secret_is_accepted_without_its_location(
    ingest_behind_cloudfront, aws, lambda_context
):
    # GIVEN a beacon posted straight to the API, with no origin-verify header
    event = load_event("collect_post")
    # WHEN /collect receives it
    response = ingest_behind_cloudfront.handler(event, lambda_context)
    # THEN every valid event is accepted and stored, none with a location
    assert json.loads(response["body"])["accepted"] == 2
    items = stored_items(aws.events_table)
    assert len(items) == 2
    assert {location(item) for item in items} == {(None, None, None)}


def test_without_an_origin_secret_configured_viewer_headers_are_trusted_as_before(
    monkeypatch, load_handler, aws, lambda_context, capsys
):
    # GIVEN no origin secret (dmp serve, the demo), and a hit with a stray verify header
    monkeypatch.delenv("ORIGIN_VERIFY_SECRET", raising=False)
    ingest = load_handler("ingest")
    event = load_event("pixel_get")
    event["headers"]["x-dmp-origin-verify"] = "whatever-the-caller-sent"
    # WHEN the pixel receives it
    ingest.handler(event, lambda_context)
    # THEN the location comes from the viewer headers, and the stray header is not stored
    (item,) = stored_items(aws.events_table)
    assert location(item) == LONDON
    assert "whatever-the-caller-sent" not in json.dumps(item)
    assert "geo_untrusted" not in metric_names(capsys.readouterr().out)


# --- the visitor id: told to the page, scoped to the collection host --------------------

KNOWN_VISITOR = "5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"  # the dmp_uid cookie of events/collect_post.json


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";")[0].split("=", 1)[1]


def test_collect_answer_names_the_returning_visitor_its_events_were_stored_for(ingest, aws, lambda_context):
    # GIVEN a batch from a browser with a visitor cookie
    response = ingest.handler(load_event("collect_post"), lambda_context)
    # THEN the answer names the visitor the events were stored for (the page cannot read
    # the HttpOnly cookie: this is how the tag's dmp.getVisitorId learns it)
    body = json.loads(response["body"])
    assert body["uid"] == KNOWN_VISITOR
    assert {item["visitor_id"]["S"] for item in stored_items(aws.events_table)} == {KNOWN_VISITOR}


def test_collect_answer_names_a_new_visitor_by_the_id_of_its_new_cookie(ingest, aws, lambda_context):
    # GIVEN a new visitor's first batch (no cookie)
    event = load_event("collect_post")
    event["cookies"] = ["_ga=GA1.1.123.456"]
    response = ingest.handler(event, lambda_context)
    # THEN the answer's uid is the id of the cookie it sets, and of the stored events
    (set_cookie,) = response["cookies"]
    uid = json.loads(response["body"])["uid"]
    assert uid == cookie_value(set_cookie)
    assert {item["visitor_id"]["S"] for item in stored_items(aws.events_table)} == {uid}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headers": {"dnt": "1"}}, "DNT: consent refused"),
        ({"body": {"gdpr": 1}}, "GDPR without a TC string"),
        ({"cookies": ["dmp_optout=1"]}, "opted out"),
        ({"body": {"events": [{"e": "Bad Name"}]}}, "every event rejected"),
    ],
)
def test_collect_answer_has_no_uid_when_nothing_is_stored(ingest, aws, lambda_context, change, reason):
    # GIVEN a batch that stores nothing
    event = load_event("collect_post")
    event["headers"].update(change.get("headers", {}))
    event["body"] = json.dumps({**json.loads(event["body"]), **change.get("body", {})})
    if "cookies" in change:
        event["cookies"] = change["cookies"]
    response = ingest.handler(event, lambda_context)
    # THEN it is answered without a visitor id
    assert response["statusCode"] == 200, reason
    body = json.loads(response["body"])
    assert body["accepted"] == 0, reason
    assert "uid" not in body, reason
    assert stored_items(aws.events_table) == [], reason


@pytest.mark.parametrize("sample", ["pixel_get", "collect_post"])
def test_the_visitor_cookie_is_host_only_so_it_is_scoped_to_the_collection_name(ingest, aws, lambda_context, sample):
    # GIVEN a new visitor's hit (on a deployment with a custom domain, collect.shop.example)
    event = load_event(sample)
    event["cookies"] = []
    response = ingest.handler(event, lambda_context)
    # THEN its cookie has no Domain attribute: the browser keeps it for the host it called
    # (the site's own subdomain: a first-party cookie), and sends it to no other host
    (set_cookie,) = response["cookies"]
    assert set_cookie.startswith("dmp_uid=")
    attributes = {part.strip().split("=", 1)[0].lower() for part in set_cookie.split(";")[1:]}
    assert attributes == {"max-age", "path", "secure", "httponly", "samesite"}
