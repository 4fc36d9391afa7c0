"""Ingest: `GET /p.gif`, `POST /collect`, `GET /tag.js`, `GET /optout` and `GET /sync`
behind an HTTP API.

The pixel answers the same GIF whatever happens, so it can never break a page; what it
could not store is counted by reason. Kept light on purpose: it runs on every page view.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.config import Settings, initialised_ahead_of_requests
from functions.core.hits import load_user_agent_rules
from functions.core.storage.events import EventStore
from functions.core.storage.fallback import FallbackQueue
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.membership import MembershipStore
from functions.core.storage.partners import PartnerStore
from functions.core.storage.suppression import SuppressionStore
from functions.ingest import logic
from functions.ingest import sync as sync_logic

settings = Settings.from_env(require=("events_table", "fallback_queue_url", "membership_table", "suppression_table"))
logger = Logger(service="ingest")
metrics = Metrics(service="ingest")
# No Powertools Tracer here: importing the X-Ray SDK alone costs ~100 ms of every cold
# start on the pixel path. Lambda's active tracing still records each invocation.
events = EventStore(settings.events_table)
fallback = FallbackQueue(settings.fallback_queue_url)
# Read for each returning visitor's hit, written when a visitor says no (opt-out, GPC,
# consent refused): one client for all.
suppression = SuppressionStore(settings.suppression_table, same_client_as=events)
membership = MembershipStore(settings.membership_table, same_client_as=events)
# ID sync: the partner's side of each mapping, and the partners' sync registrations (read
# through a short cache). Empty names: a deployment without ID sync; `/sync` then syncs nothing.
id_map = IdMapStore(settings.id_map_table, same_client_as=events)
partner_profiles = sync_logic.ProfileCache(PartnerStore(settings.partners_table, same_client_as=events).profile)
if initialised_ahead_of_requests():
    # Initialised ahead of requests: the user-agent rules load now, not on the first hit.
    load_user_agent_rules()

_cors = (
    CORSConfig(
        allow_origin=settings.cors_origins[0],
        extra_origins=list(settings.cors_origins[1:]),
        allow_headers=["Content-Type"],
        allow_credentials=True,
        max_age=3600,
    )
    if settings.cors_origins
    else None
)
app = APIGatewayHttpResolver(cors=_cors)
_TAG_PATH = Path(__file__).with_name("tag.js")
_tag_source: str | None = None


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _request() -> logic.Request:
    # The raw payload-2.0 fields: Powertools' `headers` builds a case-insensitive copy on
    # every access, which the pixel path does not need (HTTP APIs send lower-case names).
    event = app.current_event.raw_event
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    # Taken out of the headers, so nothing past this point can store or log it.
    presented = headers.pop(logic.ORIGIN_VERIFY_HEADER, None)
    geo_trusted = logic.trusts_viewer_headers(presented, settings.origin_verify_secret)
    if not geo_trusted:
        # A direct call to the API (or a secret out of step): the hit is kept, its location not.
        _count("geo_untrusted")
    return logic.Request(
        headers=headers,
        cookies=logic.parse_cookies(headers, event.get("cookies")),
        received_ms=int(event["requestContext"]["timeEpoch"]),
        geo_trusted=geo_trusted,
    )


def _cookie(name: str, value: str, max_age: int) -> Cookie:
    """Our cookies: site-wide, HTTPS only, out of scripts' reach, sent cross-site (the
    pixel sits on other sites' pages). Max-Age 0 removes one."""
    return Cookie(
        name=name, value=value, path="/", secure=True, http_only=True, max_age=max_age, same_site=SameSite.NONE_MODE
    )


def _visitor_cookies(outcome: logic.Outcome) -> list[Cookie]:
    if outcome.forgets_visitor:
        # The visitor said no: the browser forgets its id, so its next hits name no one
        # (and cost no write).
        return [_cookie(logic.VISITOR_COOKIE, "", 0)]
    if outcome.new_visitor_id is None or not outcome.events:
        return []
    return [_cookie(logic.VISITOR_COOKIE, outcome.new_visitor_id, settings.retention_seconds)]


def _suppress(visitor_id: str, reason: str, received_ms: int) -> None:
    """From now on nothing is stored, built or served for the visitor; the next build
    erases what is stored. A failure is logged and counted, never the page's problem.
    Erasure is imported here: only a refusal needs it, not a cold start."""
    from functions.core import erasure

    try:
        erasure.suppress(
            [visitor_id],
            reason=reason,
            at_s=received_ms // 1000,
            retention_seconds=settings.retention_seconds,
            suppression=suppression,
            membership=membership,
        )
    except (ClientError, BotoCoreError):
        logger.exception("visitor not suppressed", reason=reason)
        _count("suppression_failed")
        return
    _count(f"suppressed_{reason}")


def _honour_suppression(outcome: logic.Outcome) -> logic.Outcome:
    """A returning visitor's hits are checked against the suppression list before anything
    is stored: one that opted out elsewhere or was erased gets nothing stored from that
    moment. One key read per hit of a known id; a new id costs nothing. Should the read
    fail, the hits are stored: builds never use a suppressed visitor's events and delete
    them, so the failure delays the erasure of nothing more than these hits."""
    visitor_id = outcome.returning_visitor_id
    if visitor_id is None:
        return outcome
    try:
        if not suppression.is_suppressed(visitor_id):
            return outcome
    except (ClientError, BotoCoreError):
        logger.warning("suppression list not readable; storing the hit", exc_info=True)
        _count("suppression_check_failed")
        return outcome
    return outcome.suppressed()


def _record(outcome: logic.Outcome, received_ms: int) -> None:
    if outcome.suppress_visitor_id and outcome.refused:
        _suppress(outcome.suppress_visitor_id, outcome.refused, received_ms)
    if outcome.refused:
        _count(f"refused_{outcome.refused}")
    for _index, error in outcome.rejected:
        _count(f"rejected_{error.reason}")


def _defer(items: list[dict[str, Any]]) -> None:
    """Keep hits DynamoDB would not take (after botocore's retries) in the fallback
    queue; the replay function writes them later, each exactly once."""
    fallback.defer(items)
    metrics.add_metric(name="hits_deferred", unit=MetricUnit.Count, value=len(items))


def _store(item: dict[str, Any]) -> None:
    try:
        stored = events.put_item(item)
    except (ClientError, BotoCoreError):
        logger.warning("events table refused a hit; deferring it", exc_info=True)
        _defer([item])
        return
    _count("hits_stored" if stored else "hits_duplicate")


@app.get("/p.gif")
def pixel() -> Response:
    cookies: list[Cookie] = []
    try:
        request = _request()
        outcome = _honour_suppression(
            logic.pixel(request, app.current_event.raw_query_string or "", settings.tcf_vendor_id)
        )
        _record(outcome, request.received_ms)
        for event in outcome.events:
            _store(events.to_item(event, settings.retention_seconds))
        cookies = _visitor_cookies(outcome)
    except Exception:  # the pixel must answer the GIF whatever failed
        logger.exception("pixel hit not stored")
        _count("hits_lost")
    return _gif(cookies)


def _gif(cookies: list[Cookie]) -> Response:
    """The 1x1 GIF, never cached: every pixel and opt-out request reaches us."""
    return Response(
        status_code=200,
        content_type="image/gif",
        body=logic.GIF,
        headers={"Cache-Control": logic.NO_STORE},
        cookies=cookies,
    )


def _json_error(status: int, code: str, message: str) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body={"error": {"code": code, "message": message}},
        headers={"Cache-Control": logic.NO_STORE},
    )


def _raw_body() -> bytes:
    event = app.current_event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error: not what API Gateway sends, but answer it cleanly
            raise logic.BadRequest(400, "malformed_body", "body is not valid base64") from None
    return body.encode("utf-8", errors="surrogatepass")


@app.exception_handler(logic.BadRequest)
def _bad_request(error: logic.BadRequest) -> Response:
    """A `/collect` body that cannot be read at all: 400 or 413, counted by reason."""
    _count(f"rejected_{error.code}")
    return _json_error(error.status, error.code, str(error))


@app.post("/collect")
def collect() -> Response:
    request = _request()
    outcome = _honour_suppression(logic.collect(request, logic.read_collect_body(_raw_body()), settings.tcf_vendor_id))
    _record(outcome, request.received_ms)
    if outcome.events:
        written, unwritten = events.put_many(outcome.events, settings.retention_seconds)
        metrics.add_metric(name="hits_stored", unit=MetricUnit.Count, value=written)
        if unwritten:
            try:
                _defer(unwritten)
            except (ClientError, BotoCoreError):
                logger.exception("events table and fallback queue both failed")
                _count("hits_lost")
                return _json_error(503, "unavailable", "events could not be stored; send them again")
    body: dict[str, Any] = {
        "accepted": len(outcome.events),
        "rejected": [{"index": index, "error": str(error)} for index, error in outcome.rejected],
    }
    if outcome.refused:
        body["not_stored"] = outcome.refused
    if outcome.events:
        # The id the events were stored for: how the page learns the HttpOnly cookie's id
        # (the tag's `dmp.getVisitorId`, for Prebid). Only pages CORS allows can read it.
        body["uid"] = outcome.events[0].visitor_id
    return Response(
        status_code=200,
        content_type="application/json",
        body=body,
        headers={"Cache-Control": logic.NO_STORE},
        cookies=_visitor_cookies(outcome),
    )


@app.get("/optout")
def optout() -> Response:
    """The visitor opts out: suppressed at once (lookups answer no segments from now on,
    the next build erases what is stored), `dmp_optout=1` for five years, `dmp_uid` gone.
    Answers the GIF, or with `format=html` a short page to link to from a privacy notice."""
    try:
        request = _request()
        visitor_id = logic.known_visitor(request)
        if visitor_id is not None:
            _suppress(visitor_id, "optout", request.received_ms)
        _count("optouts")
    except Exception:  # like the pixel, it answers whatever failed
        logger.exception("opt-out not recorded")
        _count("optouts_failed")
    cookies = [_cookie(logic.OPTOUT_COOKIE, "1", logic.OPTOUT_COOKIE_MAX_AGE), _cookie(logic.VISITOR_COOKIE, "", 0)]
    query = app.current_event.query_string_parameters or {}
    if query.get("format") == "html":
        return Response(
            status_code=200,
            content_type="text/html; charset=utf-8",
            body=logic.OPTOUT_PAGE,
            headers={"Cache-Control": logic.NO_STORE},
            cookies=cookies,
        )
    return _gif(cookies)


def _sync_suppressed(visitor_id: str) -> bool:
    """Whether a returning visitor is on the suppression list. Unlike a hit, a sync is not
    stored when the list cannot be read: a mapping of someone who left would outlive the
    erasure that missed it, and the partner simply syncs again later."""
    try:
        return suppression.is_suppressed(visitor_id)
    except (ClientError, BotoCoreError):
        logger.warning("suppression list not readable; not syncing", exc_info=True)
        _count("suppression_check_failed")
        return True


def _store_mapping(partner: str, partner_uid: str, visitor_id: str, received_ms: int) -> None:
    """Both sides of a mapping, latest sync wins. Ours (an events-table item) first: an
    erasure finds the partner's side through it, so the partner's side never exists
    without it. Whatever either replaced is deleted where it still names the same pair,
    so each side names one id per partner and visitor, and an erasure reaches them all."""
    at_s = received_ms // 1000
    expires_at = at_s + settings.retention_seconds
    replaced_uid = events.put_mapping(visitor_id, partner, partner_uid, ts_ms=received_ms, expires_at=expires_at)
    before = id_map.put(partner, partner_uid, visitor_id, at_s=at_s, expires_at=expires_at)
    _count("syncs_stored")
    try:
        if before is not None:
            # The partner's id now belongs to this browser: the other visitor no longer has it.
            events.delete_mapping(before, partner, partner_uid)
        if replaced_uid is not None:
            # The partner gave this visitor a new id: its old one no longer names the visitor.
            id_map.forget([(partner, replaced_uid)], visitor_id)
    except (ClientError, BotoCoreError):
        # The mapping is stored (and the new visitor keeps its cookie); what it replaced
        # expires with the retention, and an erasure skips an id map item naming another.
        logger.warning("a replaced mapping was not deleted", exc_info=True)
        _count("sync_cleanup_failed")


def _redirect(location: str, cookies: list[Cookie]) -> Response:
    return Response(
        status_code=302,
        content_type="text/plain",
        body="",
        headers={"Location": location, "Cache-Control": logic.NO_STORE},
        cookies=cookies,
    )


@app.get("/sync")
def sync() -> Response:
    """ID sync with a registered partner. Inbound (`puid`): store the partner's id for this
    browser's visitor, answer the GIF. Outbound: `302` to the partner's registered template
    filled with our id. Refused, rejected or failed: the GIF, nothing stored."""
    try:
        request = _request()
        decision = sync_logic.decide(request, app.current_event.raw_query_string or "", settings.tcf_vendor_id)
        if decision.refusal is not None:
            _record(decision.refusal, request.received_ms)
            return _gif(_visitor_cookies(decision.refusal))
        if decision.ask is None:
            return _sync_rejected(decision.rejected or "invalid")
        return _sync(request, decision.ask)
    except Exception:  # like the pixel, a sync answers whatever failed
        logger.exception("sync not done")
        _count("sync_failed")
        return _gif([])


def _sync_rejected(reason: str) -> Response:
    _count(f"sync_rejected_{reason}")
    return _gif([])


def _sync(request: logic.Request, ask: sync_logic.SyncAsk) -> Response:
    if not (settings.id_map_table and settings.partners_table):
        return _sync_rejected("unavailable")
    admitted = sync_logic.admit(partner_profiles.get(ask.partner))
    if isinstance(admitted, str):
        return _sync_rejected(admitted)
    if not ask.inbound and not admitted.sync_url:
        # Nothing to send the browser to, so no visitor id is made for it either.
        _count("sync_no_template")
        return _gif([])
    visitor_id, is_new = logic.resolve_visitor(request, None)
    if not is_new and _sync_suppressed(visitor_id):
        _count(f"refused_{logic.SUPPRESSED}")
        return _gif([_cookie(logic.VISITOR_COOKIE, "", 0)])
    cookies = [_cookie(logic.VISITOR_COOKIE, visitor_id, settings.retention_seconds)] if is_new else []
    if ask.partner_uid is not None:
        _store_mapping(ask.partner, ask.partner_uid, visitor_id, request.received_ms)
        return _gif(cookies)
    location = sync_logic.location(admitted, visitor_id, ask)
    if location is None:
        return _sync_rejected("location_too_long")
    _count("sync_redirects")
    return _redirect(location, cookies)


@app.get("/tag.js")
def tag() -> Response:
    global _tag_source
    if _tag_source is None:
        _tag_source = _TAG_PATH.read_text()
    _count("tag_served")
    return Response(
        status_code=200,
        content_type="application/javascript; charset=utf-8",
        body=_tag_source,
        headers={"Cache-Control": "public, max-age=3600"},
    )


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
