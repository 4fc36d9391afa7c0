"""What the pixel and `/collect` decide about a hit: who the visitor is, whether we may
store anything, and which events are valid. Pure: plain values in, plain values out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from secrets import compare_digest
from typing import Any
from urllib.parse import parse_qsl, unquote

from functions.core.hits import (
    Geo,
    InvalidEvent,
    TrackedEvent,
    clean_geo_value,
    device_type,
    is_bot,
    validate_event,
)
from functions.core.identity import is_visitor_id, new_visitor_id
from functions.core.times import DAY_SECONDS

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"
VISITOR_COOKIE = "dmp_uid"
OPTOUT_COOKIE = "dmp_optout"
OPTOUT_COOKIE_MAX_AGE = 5 * 365 * DAY_SECONDS
# Refusals in which the visitor says no to tracking (not a crawler, not a malformed
# string): a known visitor id that comes with one is suppressed, so what is already
# stored and published about it stops being used too.
SUPPRESSING_REFUSALS = frozenset({"optout", "gpc", "gdpr_no_consent", "gpp_optout"})
# The refusal of a hit whose visitor is already on the suppression list (opted out on
# another device, erased, or an app sending the `uid` of someone who left).
SUPPRESSED = "suppressed"
OPTOUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>You have opted out</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 36em; margin: 3em auto; line-height: 1.5">
<h1>You have opted out</h1>
<p>This browser is no longer tracked for audience segments. What was collected about it is
no longer used and is being erased. A cookie named <code>dmp_optout</code> remembers your
choice for five years; clearing your cookies removes it, and with it the opt-out.</p>
</body></html>
"""
MAX_QUERY = 16 * 1024
MAX_BODY = 64 * 1024
MAX_BATCH = 50
# CloudFront adds this header, with a value only the distribution and the function know,
# to every origin request (infra/ingest.py): it tells a hit that came through CloudFront,
# whose viewer headers CloudFront set, from a direct call to the API, whose caller may
# have sent any `CloudFront-Viewer-*` headers it liked. Lower-case, as HTTP APIs pass it.
ORIGIN_VERIFY_HEADER = "x-dmp-origin-verify"


class BadRequest(ValueError):
    """A `/collect` body that cannot be read at all; `status` is 400 or 413."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request the ingest path reads (header names lower-case)."""

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    received_ms: int
    geo_trusted: bool = True  # whether the viewer headers are CloudFront's (see `trusts_viewer_headers`)


@dataclass
class Outcome:
    events: list[TrackedEvent] = field(default_factory=list)
    rejected: list[tuple[int, InvalidEvent]] = field(default_factory=list)
    new_visitor_id: str | None = None  # set a cookie for this id
    refused: str | None = None  # why nothing may be stored (consent, bot, opt-out)
    suppress_visitor_id: str | None = None  # a known visitor who said no: suppress it

    @property
    def returning_visitor_id(self) -> str | None:
        """The known visitor this outcome would store events for (None for a new id, which
        no suppression can name)."""
        if not self.events or self.new_visitor_id is not None:
            return None
        return self.events[0].visitor_id

    @property
    def forgets_visitor(self) -> bool:
        """Whether the browser is told to forget its visitor id."""
        return self.suppress_visitor_id is not None or self.refused == SUPPRESSED

    def suppressed(self) -> Outcome:
        """The same request, its visitor found on the suppression list: nothing stored."""
        return Outcome(rejected=self.rejected, refused=SUPPRESSED)


def parse_cookies(headers: Mapping[str, str], cookie_list: list[str] | None = None) -> dict[str, str]:
    """Cookies from HTTP API's `cookies` list or a Cookie header; the first of a name wins."""
    pairs = cookie_list if cookie_list is not None else headers.get("cookie", "").split(";")
    cookies: dict[str, str] = {}
    for pair in pairs:
        name, _, value = pair.strip().partition("=")
        if name and name not in cookies:
            cookies[name] = value.strip()
    return cookies


def trusts_viewer_headers(presented: str | None, secret: str) -> bool:
    """Whether a request's `CloudFront-Viewer-*` headers may be believed: always when no
    secret is configured (no CloudFront in front: `dmp serve`, tests), else only when the
    origin-verify header carries it. Constant-time, so the answer's timing gives nothing away."""
    if not secret:
        return True
    if presented is None:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters, which a caller may send.
    return compare_digest(presented.encode("utf-8", errors="surrogatepass"), secret.encode())


def geo_from_headers(headers: Mapping[str, str]) -> Geo:
    """Location from CloudFront's viewer headers; the city arrives URL-encoded."""
    city = headers.get("cloudfront-viewer-city")
    return Geo(
        country=clean_geo_value(headers.get("cloudfront-viewer-country")),
        region=clean_geo_value(headers.get("cloudfront-viewer-country-region")),
        city=clean_geo_value(unquote(city) if city else None),
    )


def refusal(
    request: Request,
    gdpr: str | None,
    consent: str | None,
    vendor_id: int,
    *,
    gpp: str | None = None,
    gpp_sid: str | None = None,
) -> str | None:
    """Why nothing may be stored for this request, or None when storing is allowed."""
    if request.cookies.get(OPTOUT_COOKIE) == "1":
        return "optout"
    if request.headers.get("sec-gpc", "").strip() == "1":
        return "gpc"
    if request.headers.get("dnt", "").strip() == "1":
        return "dnt"
    if is_bot(request.headers.get("user-agent")):
        return "bot"
    if gdpr != "1" and not gpp:
        return None
    # The decoders load with the first hit that carries consent, not with every cold start.
    from functions.core.consent import consent_refusal

    return consent_refusal(gdpr=gdpr, tc_string=consent, gpp=gpp, gpp_sid=gpp_sid, vendor_id=vendor_id)


def known_visitor(request: Request, uid: object = None) -> str | None:
    """The visitor a request names, if any: a valid cookie, else a valid `uid`."""
    cookie = request.cookies.get(VISITOR_COOKIE)
    if is_visitor_id(cookie):
        return str(cookie)
    return str(uid) if is_visitor_id(uid) else None


def refused(request: Request, reason: str, uid: object) -> Outcome:
    """Nothing stored; the visitor suppressed when the refusal is its own no."""
    return Outcome(
        refused=reason, suppress_visitor_id=known_visitor(request, uid) if reason in SUPPRESSING_REFUSALS else None
    )


def resolve_visitor(request: Request, uid: object) -> tuple[str, bool]:
    """(visitor id, is new). A valid cookie wins; then a valid `uid`; else a new id.
    Malformed values are treated as absent."""
    cookie = request.cookies.get(VISITOR_COOKIE)
    if is_visitor_id(cookie):
        return str(cookie), False
    if is_visitor_id(uid):
        return str(uid), False
    return new_visitor_id(), True


def _event(request: Request, visitor_id: str, fields: Mapping[str, Any], props: object) -> TrackedEvent:
    return validate_event(
        visitor_id=visitor_id,
        ts_ms=request.received_ms,
        name=fields.get("e"),
        url=fields.get("url"),
        ref=fields.get("ref"),
        eid=fields.get("eid"),
        props=props,
        geo=geo_from_headers(request.headers) if request.geo_trusted else Geo(),
        device=device_type(request.headers.get("user-agent")),
        client_ts_ms=_client_ts(fields.get("ts")),
    )


# A client's clock is kept beside the server time only when it is a plausible epoch-ms
# value (1970..2100): anything else is noise, and DynamoDB cannot hold huge numbers.
_LATEST_CLIENT_TS = 4_102_444_800_000


def _client_ts(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _LATEST_CLIENT_TS:
        return value
    return None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def gdpr_flag(value: object) -> str | None:
    """The flag as "1" (GDPR applies), "0" (it does not) or None (unsaid). JSON callers may send a
    CMP's `gdprApplies` as it is: true/false, or 1/0 as a number of any form."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)) and value in (0, 1):
        return "1" if value == 1 else "0"
    if value in ("0", "1"):
        return str(value)
    raise InvalidEvent("invalid_gdpr", "gdpr must be 0 or 1")


def query_params(raw_query: str) -> dict[str, str]:
    """The parameters of a GET hit's query string (`/p.gif`, `/sync`): bounded, strict
    UTF-8, each name at most once; InvalidEvent otherwise."""
    if len(raw_query) > MAX_QUERY:
        raise InvalidEvent("query_too_long", "query string too long")
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict", max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise InvalidEvent("bad_encoding", "query string is not valid UTF-8") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidEvent("repeated_parameter", f"parameter {name!r} repeated")
        params[name] = value
    return params


def pixel(request: Request, raw_query: str, vendor_id: int) -> Outcome:
    """A `GET /p.gif` hit: at most one event, never an exception."""
    try:
        params = query_params(raw_query)
        gdpr = gdpr_flag(params.get("gdpr"))
    except InvalidEvent as error:
        return Outcome(rejected=[(0, error)])
    reason = refusal(
        request, gdpr, params.get("gdpr_consent"), vendor_id, gpp=params.get("gpp"), gpp_sid=params.get("gpp_sid")
    )
    if reason:
        return refused(request, reason, params.get("uid"))
    visitor_id, is_new = resolve_visitor(request, params.get("uid"))
    props = {name[2:]: value for name, value in params.items() if name.startswith("p.")}
    outcome = Outcome(new_visitor_id=visitor_id if is_new else None)
    try:
        outcome.events.append(_event(request, visitor_id, params, props))
    except InvalidEvent as error:
        outcome.rejected.append((0, error))
    return outcome


def read_collect_body(body: bytes) -> dict[str, Any]:
    """The JSON document of a `/collect` request, or BadRequest (400/413)."""
    if len(body) > MAX_BODY:
        raise BadRequest(413, "payload_too_large", f"body is larger than {MAX_BODY} bytes")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "malformed_json", "body is not valid JSON") from None
    except RecursionError:  # JSON nested past the parser's depth: malformed for us, not a 5xx
        raise BadRequest(400, "malformed_json", "body is nested too deeply") from None
    if not isinstance(document, dict):
        raise BadRequest(400, "invalid_body", "body must be a JSON object with an `events` list")
    events = document.get("events")
    if not isinstance(events, list) or not events:
        raise BadRequest(400, "invalid_events", "`events` must be a non-empty list")
    if len(events) > MAX_BATCH:
        raise BadRequest(413, "too_many_events", f"at most {MAX_BATCH} events per request")
    return document


def collect(request: Request, document: Mapping[str, Any], vendor_id: int) -> Outcome:
    """A `POST /collect` batch: each event accepted or rejected by its index."""
    try:
        gdpr = gdpr_flag(document.get("gdpr"))
    except InvalidEvent as error:
        raise BadRequest(400, error.reason, str(error)) from None
    consent, gpp, gpp_sid = (_string(document.get(name)) for name in ("gdpr_consent", "gpp", "gpp_sid"))
    reason = refusal(request, gdpr, consent, vendor_id, gpp=gpp, gpp_sid=gpp_sid)
    if reason:
        return refused(request, reason, document.get("uid"))
    visitor_id, is_new = resolve_visitor(request, document.get("uid"))
    outcome = Outcome(new_visitor_id=visitor_id if is_new else None)
    for index, fields in enumerate(document["events"]):
        try:
            if not isinstance(fields, dict):
                raise InvalidEvent("invalid_event", "an event must be a JSON object")
            outcome.events.append(_event(request, visitor_id, fields, fields.get("props")))
        except InvalidEvent as error:
            outcome.rejected.append((index, error))
    return outcome
