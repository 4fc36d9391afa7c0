"""Property-based fuzzing of the ingest handler (`GET /p.gif`, `POST /collect`) on moto.

Hypothesis throws HTTP API (payload 2.0) events at `handler(event, context)`: raw query
strings (percent-encoded invalid UTF-8, repeated and huge parameters, `p.` properties,
control characters), arbitrary headers and cookies, and `/collect` bodies from random
bytes to well-shaped JSON with hostile values. Whatever arrives, the public contract of
DESIGN.md must hold:

- the handler never raises and never answers 5xx;
- `/p.gif` always answers 200 with the 43-byte GIF and the no-store Cache-Control;
- `/collect` answers 200, 400 or 413 with a JSON body (413 above 64 KiB);
- every stored item, in the events table or deferred to the fallback queue for a later
  replay, is well formed (visitor id, event name, URL and property limits, no control
  characters, numbers DynamoDB can hold, no raw IP);
- DNT, Sec-GPC, the opt-out cookie, known crawlers and `gdpr=1` without a TC string
  granting purpose 1 to our vendor store nothing and set no cookie;
- events are stored for the visitor of a valid cookie, else of a valid `uid`, else for a
  new visitor who is given that id in a cookie.

Each example starts from an empty table and queue and leaves them empty, so they are
shared by the module (a module-scoped fixture: Hypothesis' function-scoped-fixture
health check does not apply, and nothing leaks from one example into the next). The
inputs the fuzzer found failing are pinned at the end as plain tests.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, quote

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.core.tables import EVENTS
from functions.ingest.logic import GIF, NO_STORE
from tests.conftest import FakeContext, dynamodb_item_bytes, load_event
from tests.unit.tcf_builder import publisher_tc_segment, tc_string

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

REGION = "eu-west-1"
OUR_VENDOR = 755
SOURCE_IP = "203.0.113.17"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the contract of a stored item (DESIGN.md) ---------------------------------------

VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
NAME = re.compile(r"[a-z0-9_]{1,40}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_URL, MAX_PROPS, MAX_PROP_VALUE, MAX_EID = 2048, 20, 256, 64
VISITOR_COOKIE = re.compile(r"dmp_uid=([^;]*)")
COOKIE_ATTRIBUTES = ("Max-Age=", "Path=/", "Secure", "HttpOnly", "SameSite=None")


def is_dynamodb_number(text: str) -> bool:
    """What DynamoDB accepts as a number: at most 38 significant digits, magnitude
    between 1E-130 and 9.99...E+125 (or zero). Anything else fails the whole write."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return False
    if not number.is_finite():
        return False
    if number == 0:
        return True
    significant = "".join(map(str, number.as_tuple().digits)).strip("0")
    return len(significant) <= 38 and Decimal("1E-130") <= abs(number) < Decimal("1E+126")


def strings_of(value: dict[str, Any]) -> Iterator[str]:
    """Every string inside a DynamoDB attribute value."""
    for kind, inner in value.items():
        if kind == "S":
            yield inner
        elif kind == "M":
            for name, attribute in inner.items():
                yield name
                yield from strings_of(attribute)


def assert_well_formed(item: dict[str, Any], request_text: str) -> None:
    visitor_id = item["visitor_id"]["S"]
    assert VISITOR_ID.fullmatch(visitor_id), f"malformed visitor id stored: {visitor_id!r}"
    assert NAME.fullmatch(item["name"]["S"]), f"malformed event name stored: {item['name']!r}"
    event_id = item["event_id"]["S"]
    if event_id.startswith("eid:"):
        assert 1 <= len(event_id) - 4 <= MAX_EID, f"client event id longer than {MAX_EID}: {event_id!r}"
    for attribute in ("url", "ref"):
        if attribute in item:
            assert len(item[attribute]["S"].encode()) <= MAX_URL, f"{attribute} longer than {MAX_URL} bytes stored"
    props = item.get("props", {}).get("M", {})
    assert len(props) <= MAX_PROPS, f"{len(props)} props stored"
    for name, value in props.items():
        assert NAME.fullmatch(name), f"malformed prop name stored: {name!r}"
        assert len(value["S"].encode()) <= MAX_PROP_VALUE, f"prop {name} longer than {MAX_PROP_VALUE} bytes stored"
    if "device" in item:
        assert item["device"]["S"] in ("desktop", "mobile", "tablet")
    for name, value in item.items():
        for text in strings_of(value):
            assert not CONTROL.search(text), f"control character stored in {name}: {text!r}"
        if "N" in value:
            assert is_dynamodb_number(value["N"]), f"{name}={value['N']} is not a number DynamoDB can store"
    if SOURCE_IP not in request_text:
        assert SOURCE_IP not in json.dumps(item), "the raw IP was stored"
    size = dynamodb_item_bytes(item)
    assert size <= 1024, f"a stored item of {size} bytes is over one write unit"


# --- the handler on moto -------------------------------------------------------------


class ErrorRecords(logging.Handler):
    """Errors the handler logged: the pixel swallows its failures (it must answer the
    GIF), so a hit it failed to store shows only here."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Ingest:
    module: ModuleType
    dynamodb: Any
    events_table: str
    sqs: Any
    fallback_queue_url: str | None
    suppression_table: str = ""
    errors: ErrorRecords = field(default_factory=ErrorRecords)

    def suppressed(self, visitor: str | None) -> bool:
        """Whether an earlier example left `visitor` on the suppression list (a refusal
        with its cookie suppresses it): its hits are refused from then on."""
        if not visitor or visitor == NEW_VISITOR:
            return False
        key = {"visitor_id": {"S": visitor}}
        return "Item" in self.dynamodb.get_item(TableName=self.suppression_table, Key=key)

    def handle(self, event: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The handler's response to `event` and the items it stored for it."""
        self.take_stored()  # whatever an example that failed half-way left behind
        self.errors.records.clear()
        try:
            response = self.module.handler(event, FakeContext())
        finally:
            self.module.metrics.clear_metrics()
        assert not self.errors.records, f"the handler logged an error: {self.errors.records[0].getMessage()}"
        return response, self.take_stored()

    def take_stored(self) -> list[dict[str, Any]]:
        """Every item in the events table or deferred to the fallback queue (which the
        replay writes later), removed from both."""
        items: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.events_table):
            items.extend(page["Items"])
        key_names = [key["AttributeName"] for key in EVENTS.key_schema()]
        keys = [{"DeleteRequest": {"Key": {k: item[k] for k in key_names}}} for item in items]
        for start in range(0, len(keys), 25):
            self.dynamodb.batch_write_item(RequestItems={self.events_table: keys[start : start + 25]})
        while self.fallback_queue_url:
            messages = self.sqs.receive_message(QueueUrl=self.fallback_queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                items.extend(json.loads(message["Body"])["items"])
                self.sqs.delete_message(QueueUrl=self.fallback_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return items


@pytest.fixture(scope="module")
def ingest() -> Iterator[Ingest]:
    """The ingest handler imported afresh under moto, its environment pointing at the
    resources the local stack creates from the CDK stack's own definitions."""
    from moto import mock_aws

    from dmp.local import create_resources

    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_METRICS_NAMESPACE": "DMP",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }.items():
            env.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "CORS_ORIGINS"):
            env.delenv(name, raising=False)
        with mock_aws():
            target = create_resources(None, region=REGION, retention_days=90)
            for name, value in {**target.environment(), "TCF_VENDOR_ID": str(OUR_VENDOR)}.items():
                env.setenv(name, value)
            module = importlib.reload(importlib.import_module("functions.ingest.handler"))
            ingest = Ingest(
                module,
                dynamodb=boto3.client("dynamodb", region_name=REGION),
                events_table=target.events_table,
                sqs=boto3.client("sqs", region_name=REGION),
                fallback_queue_url=os.environ.get("FALLBACK_QUEUE_URL"),
                suppression_table=target.suppression_table,
            )
            logger = logging.getLogger(module.logger.name)
            logger.addHandler(ingest.errors)
            try:
                yield ingest
            finally:
                logger.removeHandler(ingest.errors)


# --- strategies ----------------------------------------------------------------------

# Strings at and around every length limit of the contract.
LIMIT_SIZES = (0, 1, 7, 8, 39, 40, 41, 63, 64, 65, 255, 256, 257, 2047, 2048, 2049, 5000)
TRICKY = (
    "",
    " ",
    "0",
    "1",
    " 1",
    "null",
    "%00",
    "%ff%fe",
    "\x00",
    "\t",
    "\r\n",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "\ufeff",
    "é",
    "💥",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "${jndi:ldap://x}",
)
hostile_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=30),  # ASCII, C0 and C1 controls
    st.sampled_from(TRICKY),
    st.builds(lambda c, n: c * n, st.sampled_from("aZ9_-é%"), st.sampled_from(LIMIT_SIZES)),
)
valid_names = st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True)
valid_visitor_ids = st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True)
# Integers at the edges of what JSON parsers, 64-bit clients and DynamoDB numbers (38
# significant digits, magnitude below 1E+126) can hold.
EXTREME_INTEGERS = (2**53 + 1, 2**63, -(2**63) - 1, 10**38, int("9" * 39), 10**126, -(10**130), int("1" * 300))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)

# Real user agents of each device type, known crawlers (never stored), and noise.
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
)
CRAWLERS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
)
user_agents = st.sampled_from(BROWSERS + CRAWLERS) | hostile_text

# TC strings whose consent we know: granting means purposes 1, 3 and 4 for OUR_VENDOR.
GRANTING = (
    tc_string(purposes_consent={1, 3, 4}, vendors={OUR_VENDOR}),
    tc_string(purposes_consent=set(range(1, 25)), vendor_ranges=[(700, 800)]),
    tc_string(publisher_tc_segment(), purposes_consent={1, 2, 3, 4, 7}, vendor_ranges=[3, OUR_VENDOR]),
)
REFUSING = (
    tc_string(purposes_consent={1}, vendors={OUR_VENDOR}),  # storage alone: no ad profile
    tc_string(purposes_consent={2, 3, 4, 7}, vendors={OUR_VENDOR}),
    tc_string(purposes_consent=set(range(2, 25)), vendor_ranges=[(1, 3000)]),
    tc_string(purposes_consent={1}, vendors={OUR_VENDOR - 1, OUR_VENDOR + 1}),
    tc_string(purposes_consent={1}, vendors=set()),
    tc_string(purposes_consent={1}, vendors={OUR_VENDOR}, version=1),
)
consent_strings = st.sampled_from(GRANTING + REFUSING) | hostile_text

header_names = st.sampled_from(
    [
        "user-agent",
        "dnt",
        "sec-gpc",
        "cloudfront-viewer-country",
        "cloudfront-viewer-country-region",
        "cloudfront-viewer-city",
        "content-type",
        "origin",
        "referer",
        "x-forwarded-for",
        "cookie",
    ]
) | st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers = draw(st.dictionaries(header_names, hostile_text, max_size=6))
    if draw(st.booleans()):
        headers["user-agent"] = draw(user_agents)
    for signal in ("dnt", "sec-gpc"):
        if draw(st.integers(0, 4)) == 0:
            headers[signal] = draw(st.sampled_from(["1", "0", " 1 ", "yes"]))
    if "cloudfront-viewer-city" in headers and draw(st.booleans()):
        headers["cloudfront-viewer-city"] = quote(headers["cloudfront-viewer-city"], safe="")
    return headers


cookie_names = st.sampled_from(["dmp_uid", "dmp_optout", "_ga"]) | st.text(max_size=10)
cookie_values = valid_visitor_ids | st.sampled_from(["1", "0"]) | hostile_text
cookie_lists = st.none() | st.lists(st.builds("{}={}".format, cookie_names, cookie_values), max_size=4)


def base_event(sample: str, headers: dict[str, str], cookies: list[str] | None) -> dict[str, Any]:
    """A real-shaped HTTP API event from events/, with the request's headers and cookies."""
    event = load_event(sample)
    base = {k: v for k, v in event["headers"].items() if not k.startswith(("cloudfront-", "user-agent"))}
    event["headers"] = {**base, "x-forwarded-for": SOURCE_IP, **headers}
    event["requestContext"]["http"]["sourceIp"] = SOURCE_IP
    event["requestContext"]["http"]["userAgent"] = event["headers"].get("user-agent", "")
    event.pop("cookies", None)
    if cookies is not None:
        event["cookies"] = cookies
    return event


@st.composite
def query_values(draw: st.DrawFn, values: st.SearchStrategy[str] = hostile_text) -> str:
    """A parameter value as a raw query carries it: percent-encoded, raw, or bytes that
    are not UTF-8."""
    how = draw(st.sampled_from(["quoted", "raw", "bytes"]))
    if how == "bytes":
        return "".join(f"%{b:02X}" for b in draw(st.binary(max_size=24)))
    value = draw(values)
    return quote(value, safe="") if how == "quoted" else value


@st.composite
def raw_queries(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["params", "params", "params", "text", "huge"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "huge":  # past the pixel's 16 KiB limit, or many fields
        return "&".join(
            f"p.k{i}=" + "v" * draw(st.sampled_from([1, 100, 900])) for i in range(draw(st.integers(150, 250)))
        )
    fields = {
        "e": valid_names | hostile_text,
        "url": st.just("https://shop.example/p?q=1") | hostile_text,
        "ref": hostile_text,
        "eid": st.from_regex(r"[!-~]{1,64}", fullmatch=True) | hostile_text,
        "uid": valid_visitor_ids | hostile_text,
        "gdpr": st.sampled_from(["0", "1", "", "2", "true"]),
        "gdpr_consent": consent_strings,
        "ts": st.integers().map(str),
    }
    params = draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(fields)).flatmap(
                    lambda name: st.tuples(st.just(name), query_values(fields[name]))
                ),
                st.tuples(valid_names.map("p.{}".format), query_values()),
                st.tuples(hostile_text.map("p.{}".format) | hostile_text, query_values()),
            ),
            max_size=24,
        )
    )
    return "&".join(f"{quote(name, safe='.') if draw(st.booleans()) else name}={value}" for name, value in params)


@st.composite
def pixel_events(draw: st.DrawFn) -> dict[str, Any]:
    event = base_event("pixel_get", draw(header_sets()), draw(cookie_lists))
    query = draw(raw_queries())
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True)) or None
    return event


urls = st.just("https://shop.example/products/wool-scarf") | st.builds("https://shop.example/{}".format, hostile_text)
client_event_ids = st.from_regex(r"[!-~]{1,64}", fullmatch=True)
# Events a tag or an app would send, with hostile values only where the contract lets
# any value through (property values, client timestamps)...
plausible_events = st.fixed_dictionaries(
    {"e": valid_names},
    optional={
        "url": urls,
        "ref": urls,
        "eid": client_event_ids,
        "ts": st.integers() | st.sampled_from(EXTREME_INTEGERS) | st.floats(),
        "props": st.dictionaries(valid_names, json_scalars | st.sampled_from(EXTREME_INTEGERS), max_size=21),
    },
)
# ...and events where any field may be anything.
hostile_events = st.fixed_dictionaries(
    {},
    optional={
        "e": valid_names | json_values,
        "url": urls | json_values,
        "ref": json_values,
        "eid": client_event_ids | json_values,
        "ts": st.integers() | st.sampled_from(EXTREME_INTEGERS) | json_values,
        "props": st.dictionaries(valid_names | hostile_text, json_scalars, max_size=22) | json_values,
    },
)
collect_events = plausible_events | hostile_events
collect_documents = st.fixed_dictionaries(
    {
        "events": st.lists(collect_events | json_values, max_size=6)
        | st.integers(48, 53).map(lambda n: [{"e": "page_view", "eid": f"batch-{i}"} for i in range(n)])
        | json_values
    },
    optional={
        "uid": valid_visitor_ids | json_values,
        "gdpr": st.sampled_from([0, 1, "0", "1", 1.0, 0.0, True, False, 2, "", None]) | json_values,
        "gdpr_consent": consent_strings | json_values,
        "padding": st.sampled_from([100, 65_000, 65_536, 70_000]).map(lambda n: "x" * n),
    },
)


@st.composite
def collect_requests(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A `/collect` event and the body bytes it carries."""
    kind = draw(st.sampled_from(["document", "document", "document", "json", "text", "bytes", "empty"]))
    if kind == "document":
        raw = json.dumps(draw(collect_documents), ensure_ascii=draw(st.booleans())).encode()
    elif kind == "json":
        raw = json.dumps(draw(json_values)).encode()
    elif kind == "text":
        raw = draw(st.text(max_size=200)).encode()
    elif kind == "bytes":
        raw = draw(st.binary(max_size=200))
    else:
        raw = b""
    event = base_event("collect_post", draw(header_sets()), draw(cookie_lists))
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = None
    # API Gateway base64-encodes what is not text; it may do so for text too.
    if text is None or draw(st.booleans()):
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = text, False
    if not raw and draw(st.booleans()):
        event.pop("body")
    return event, raw


# --- oracles: what the contract says about one request -------------------------------


def request_cookies(event: dict[str, Any], name: str) -> list[str]:
    """The values of cookie `name` the request carries (API Gateway's `cookies` list,
    else the Cookie header)."""
    pairs = event.get("cookies")
    if pairs is None:
        pairs = event["headers"].get("cookie", "").split(";")
    return [value.strip() for n, _, value in (p.strip().partition("=") for p in pairs) if n == name]


def header_refusal(event: dict[str, Any]) -> str | None:
    """A reason in the request's headers or cookies why nothing may be stored."""
    headers = event["headers"]
    # Header values come without the whitespace around them (HTTP's optional whitespace).
    if headers.get("dnt", "").strip() == "1":
        return "DNT: 1"
    if headers.get("sec-gpc", "").strip() == "1":
        return "Sec-GPC: 1"
    if headers.get("user-agent") in CRAWLERS:
        return "a known crawler"
    if request_cookies(event, "dmp_optout") == ["1"]:
        return "the opt-out cookie"
    return None


def gdpr_refusal(gdpr: object, consent: object) -> str | None:
    # JSON has one number type, so 1.0 is the number 1; TCF's own gdprApplies is a
    # boolean, so `true` is what a caller forwarding it sends.
    applies = gdpr == "1" or (isinstance(gdpr, (int, float)) and gdpr == 1)
    if applies and consent not in GRANTING:
        return f"gdpr={gdpr!r} without a TC string granting purpose 1 to our vendor"
    return None


NEW_VISITOR = "a new visitor"


def named_visitor(event: dict[str, Any], uid: object) -> str | None:
    """The known visitor the handler takes a request for, ambiguity or not (the first
    `dmp_uid` cookie when valid, else a valid `uid`): the one whose suppression counts."""
    cookies = request_cookies(event, "dmp_uid")
    if cookies and VISITOR_ID.fullmatch(cookies[0]):
        return cookies[0]
    return uid if isinstance(uid, str) and VISITOR_ID.fullmatch(uid) else None


def suppressed_refusal(was_suppressed: bool) -> str | None:
    return "the visitor's suppression (an earlier refusal with its id)" if was_suppressed else None


def expected_visitor(event: dict[str, Any], uid: object) -> str | None:
    """Whom events must be stored for: the valid cookie's visitor, else the valid `uid`'s,
    else NEW_VISITOR; None when the request is ambiguous (several visitor cookies)."""
    cookies = request_cookies(event, "dmp_uid")
    if len(cookies) > 1:
        return None
    if cookies and VISITOR_ID.fullmatch(cookies[0]):
        return cookies[0]
    if isinstance(uid, str) and VISITOR_ID.fullmatch(uid):
        return uid
    return NEW_VISITOR


def check_storage(
    response: dict[str, Any], stored: list[dict[str, Any]], refusal: str | None, visitor: str | None, request_text: str
) -> None:
    for item in stored:
        assert_well_formed(item, request_text)
    visitor_cookies = [c for c in response.get("cookies") or [] if c.startswith("dmp_uid=")]
    # An empty dmp_uid with Max-Age=0 makes the browser forget its id (a visitor who said no).
    forgotten = [c for c in visitor_cookies if c.startswith("dmp_uid=;") and "Max-Age=0" in c]
    new_cookies = [c for c in visitor_cookies if c not in forgotten]
    if refusal:
        assert stored == [], f"events stored despite {refusal}"
        assert new_cookies == [], f"visitor cookie set despite {refusal}"
        return
    assert forgotten == [], "a visitor's id was dropped though nothing was refused"
    for cookie in new_cookies:
        match = VISITOR_COOKIE.match(cookie)
        assert match and VISITOR_ID.fullmatch(match.group(1)), f"malformed visitor cookie: {cookie!r}"
        assert all(attribute in cookie for attribute in COOKIE_ATTRIBUTES), f"cookie lacks attributes: {cookie!r}"
    visitors = {item["visitor_id"]["S"] for item in stored}
    assert len(visitors) <= 1, f"one request stored events for several visitors: {visitors}"
    if not stored or visitor is None:
        return
    if visitor == NEW_VISITOR:
        assert [VISITOR_COOKIE.match(c).group(1) for c in new_cookies] == list(visitors), (  # type: ignore[union-attr]
            "a new visitor's events were stored without giving the visitor that id in a cookie"
        )
    else:
        assert visitors == {visitor}, f"stored for {visitors}, not for the request's visitor {visitor!r}"
        assert new_cookies == [], "a new cookie replaced the visitor's valid id"


# --- properties ----------------------------------------------------------------------


@FUZZ
@given(event=pixel_events())
def test_pixel_always_answers_the_gif_and_stores_only_well_formed_consented_events(
    ingest: Ingest, event: dict[str, Any]
) -> None:
    query = event["rawQueryString"]
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        pairs = []
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    uid = params["uid"][0] if len(params.get("uid", [])) == 1 else None
    visitor = expected_visitor(event, uid)
    was_suppressed = ingest.suppressed(named_visitor(event, uid))
    # WHEN any request reaches the pixel
    response, stored = ingest.handle(event)

    # THEN it answers the GIF, uncacheable
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert response["headers"]["Cache-Control"] == NO_STORE
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]) == GIF and len(GIF) == 43
    # AND it stores at most one event, well formed, for the right visitor, with consent
    assert len(stored) <= 1
    gdpr, consent = (params.get(name, [None])[0] for name in ("gdpr", "gdpr_consent"))
    refusal = header_refusal(event) or gdpr_refusal(gdpr, consent) or suppressed_refusal(was_suppressed)
    check_storage(response, stored, refusal, visitor, query)


@FUZZ
@given(request=collect_requests())
def test_collect_answers_json_with_a_contract_status_and_stores_only_well_formed_consented_events(
    ingest: Ingest, request: tuple[dict[str, Any], bytes]
) -> None:
    event, raw = request
    try:
        sent = json.loads(raw)
    except ValueError:
        sent = None
    was_suppressed = ingest.suppressed(named_visitor(event, sent.get("uid") if isinstance(sent, dict) else None))
    # WHEN any body is posted to /collect
    response, stored = ingest.handle(event)

    # THEN the answer is 200, 400 or 413, in JSON, and 413 for more than 64 KiB
    status = response["statusCode"]
    assert status in (200, 400, 413), f"/collect answered {status}"
    body = json.loads(base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"])
    if len(raw) > 64 * 1024:
        assert status == 413
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if status == 200:
        assert isinstance(document, dict) and isinstance(document.get("events"), list)
        assert 1 <= len(document["events"]) <= 50
        assert isinstance(body["accepted"], int) and isinstance(body["rejected"], list)
        # (a key both written and deferred is one event: the replay writes it once)
        assert len({(i["visitor_id"]["S"], i["event_id"]["S"]) for i in stored}) <= body["accepted"]
        if "not_stored" not in body:
            assert body["accepted"] + len(body["rejected"]) == len(document["events"])
    else:
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
        assert stored == []
    # AND whatever was stored is well formed, for the right visitor, with consent
    if not isinstance(document, dict):
        document = {}
    refusal = (
        header_refusal(event)
        or gdpr_refusal(document.get("gdpr"), document.get("gdpr_consent"))
        or suppressed_refusal(was_suppressed)
    )
    check_storage(response, stored, refusal, expected_visitor(event, document.get("uid")), raw.decode(errors="replace"))


# --- inputs the fuzzer found ---------------------------------------------------------


def collect_event(document: dict[str, Any]) -> dict[str, Any]:
    event = base_event("collect_post", {"user-agent": BROWSERS[0]}, None)
    event["body"], event["isBase64Encoded"] = json.dumps(document), False
    return event


@pytest.mark.parametrize("gdpr", [1.0, True], ids=["number-1.0", "true"])
def test_collect_with_gdpr_applying_as_1_0_or_true_stores_nothing_without_consent(ingest: Ingest, gdpr: object) -> None:
    # GIVEN a batch saying GDPR applies as the JSON number 1.0 (the same number as 1) or
    # as TCF's own boolean gdprApplies=true, with no TC string
    event = collect_event({"gdpr": gdpr, "events": [{"e": "page_view"}]})
    # WHEN it is posted
    response, stored = ingest.handle(event)
    # THEN nothing is stored and no cookie set (or the flag is refused as malformed)
    assert response["statusCode"] in (200, 400)
    assert stored == [], f"stored without consent for gdpr={gdpr!r}"
    assert not response.get("cookies")


@pytest.mark.parametrize("ts", [int("9" * 39), 10**126, 10**200], ids=["39-digits", "1e126", "1e200"])
def test_collect_client_timestamp_dynamodb_cannot_hold_is_never_stored(ingest: Ingest, ts: int) -> None:
    # GIVEN an otherwise valid event whose client timestamp DynamoDB cannot hold
    event = collect_event({"events": [{"e": "page_view", "ts": ts}]})
    # WHEN it is posted
    response, stored = ingest.handle(event)
    # THEN the answer is one of the contract's and nothing unstorable is kept, neither
    # in the table nor deferred to the fallback queue (where no replay could write it)
    assert response["statusCode"] in (200, 400)
    for item in stored:
        assert_well_formed(item, "")
