"""`GET /sync` on moto (DESIGN.md "Identity (ID sync)"): inbound and outbound syncs for new
and returning visitors, latest sync wins on both sides of a mapping, every refusal stores
nothing and never redirects, and an erasure removes both sides of a visitor's mappings."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest

from dmp import privacy
from functions.core.erasure import visitor_hash
from functions.core.records import MappingRecord
from functions.core.storage.events import EventStore
from functions.core.storage.id_map import IdMapStore
from functions.core.storage.partners import PartnerProfile, PartnerStore
from functions.core.storage.suppression import SuppressionStore
from functions.ingest.logic import GIF, NO_STORE
from tests.conftest import load_event
from tests.unit.tcf_builder import tc_string

DSP = "demo-dsp"
TEMPLATE = "https://sync.dsp.example/match?dmp={uid}&gdpr={gdpr}&gdpr_consent={gdpr_consent}"
RECEIVED_MS = load_event("sync_get")["requestContext"]["timeEpoch"]
NOW_S = RECEIVED_MS // 1000
RETENTION_S = 90 * 86_400
VISITOR = "3f9a1c0d2b7e4a5f8c6d1e2f3a4b5c6d"
OTHER = "visitor-other-0001"


def register(aws: Any, name: str = DSP, *, sync: bool = True, sync_url: str | None = TEMPLATE) -> None:
    PartnerStore(aws.partners_table).put_profile(PartnerProfile(name, sync=sync, sync_url=sync_url))


def sync_event(visitor_id: str | None = None, **params: str) -> dict[str, Any]:
    event = load_event("sync_get")
    event["cookies"] = [f"dmp_uid={visitor_id}"] if visitor_id else None
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = params or None
    return event


def items(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def new_cookie(response: dict[str, Any]) -> str | None:
    """The visitor id a `Set-Cookie: dmp_uid=<id>` gives the browser, if any."""
    for cookie in response.get("cookies") or []:
        name, _, rest = cookie.partition("=")
        value = rest.split(";")[0]
        if name == "dmp_uid" and value:
            return value
    return None


def forgets_visitor(response: dict[str, Any]) -> bool:
    return any(c.startswith("dmp_uid=;") and "Max-Age=0" in c for c in response.get("cookies") or [])


def assert_is_the_gif(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert response["headers"]["Cache-Control"] == NO_STORE
    assert "Location" not in response["headers"]
    assert base64.b64decode(response["body"]) == GIF


def redirect_of(response: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """(scheme://host/path, query) of a 302's Location."""
    assert response["statusCode"] == 302, response
    assert response["headers"]["Cache-Control"] == NO_STORE
    target = urlsplit(response["headers"]["Location"])
    return f"{target.scheme}://{target.netloc}{target.path}", parse_qs(target.query, keep_blank_values=True)


def mappings(aws: Any, visitor_id: str) -> list[tuple[str, str]]:
    """Our side: the (partner, partner uid) items of the visitor in the events table."""
    return [
        (r.partner, r.partner_uid)
        for r in EventStore(aws.events_table).records_of(visitor_id)
        if isinstance(r, MappingRecord)
    ]


def resolve(aws: Any, partner_uid: str, partner: str = DSP) -> str | None:
    """The partner's side: whom its id names in the id map."""
    return IdMapStore(aws.id_map_table).resolve(partner, partner_uid, now_s=NOW_S)


@pytest.fixture
def ingest(load_handler: Any) -> Any:
    return load_handler("ingest")


def test_inbound_then_outbound_for_a_new_visitor(ingest, aws, lambda_context):
    register(aws)
    # GIVEN a browser we have never seen, sent to us by the partner with its own id
    response = ingest.handler(sync_event(partner=DSP, puid="DSP-7f3a9c21.e4"), lambda_context)
    # THEN it gets the GIF and a new visitor id, as the pixel gives one
    assert_is_the_gif(response)
    visitor = new_cookie(response)
    assert visitor is not None
    (cookie,) = response["cookies"]
    for attribute in ("Max-Age=7776000", "Path=/", "Secure", "HttpOnly", "SameSite=None"):
        assert attribute in cookie
    # AND both sides of the mapping are stored, expiring with the retention
    assert resolve(aws, "DSP-7f3a9c21.e4") == visitor
    assert mappings(aws, visitor) == [(DSP, "DSP-7f3a9c21.e4")]
    (map_item,) = items(aws.id_map_table)
    assert int(map_item["expires_at"]["N"]) == NOW_S + RETENTION_S
    (our_item,) = items(aws.events_table)
    assert our_item["event_id"]["S"] == f"sync#{DSP}"
    assert int(our_item["expires_at"]["N"]) == NOW_S + RETENTION_S
    # WHEN the same browser (now with its cookie) is sent out to the partner
    response = ingest.handler(sync_event(visitor, partner=DSP, gdpr="0"), lambda_context)
    # THEN it is redirected to the registered template, filled with its id, and keeps its cookie
    where, query = redirect_of(response)
    assert where == "https://sync.dsp.example/match"
    assert query == {"dmp": [visitor], "gdpr": ["0"], "gdpr_consent": [""]}
    assert new_cookie(response) is None


def test_outbound_then_inbound_for_a_returning_visitor(ingest, aws, lambda_context):
    register(aws)
    # GIVEN a visitor with its cookie, sent out to the partner
    response = ingest.handler(sync_event(VISITOR, partner=DSP), lambda_context)
    where, query = redirect_of(response)
    assert (where, query["dmp"]) == ("https://sync.dsp.example/match", [VISITOR])
    assert query["gdpr"] == [""]
    assert not response.get("cookies")
    # AND nothing is stored by an outbound sync
    assert items(aws.events_table) == [] and items(aws.id_map_table) == []
    # WHEN the partner sends it back with its own id
    response = ingest.handler(sync_event(VISITOR, partner=DSP, puid="u-42"), lambda_context)
    # THEN the partner's id names the visitor, the visitor keeps its id
    assert_is_the_gif(response)
    assert not response.get("cookies")
    assert resolve(aws, "u-42") == VISITOR
    assert mappings(aws, VISITOR) == [(DSP, "u-42")]


def test_an_outbound_sync_for_a_new_visitor_gives_it_an_id_and_sends_that_id(ingest, aws, lambda_context):
    register(aws)
    response = ingest.handler(sync_event(partner=DSP), lambda_context)
    _, query = redirect_of(response)
    visitor = new_cookie(response)
    assert visitor is not None and query["dmp"] == [visitor]
    assert items(aws.events_table) == []


def test_the_redirect_carries_the_consent_the_sync_came_with(load_handler, aws, lambda_context, monkeypatch):
    # GIVEN a stack with our vendor id, and a browser whose TC string grants purposes 1, 3 and 4
    monkeypatch.setenv("TCF_VENDOR_ID", "755")
    ingest = load_handler("ingest")
    register(aws)
    consent = tc_string(purposes_consent={1, 3, 4}, vendors={755})
    # WHEN it is sent out under GDPR
    response = ingest.handler(sync_event(VISITOR, partner=DSP, gdpr="1", gdpr_consent=consent), lambda_context)
    # THEN the partner gets the flag and the string as they came, URL-encoded in place
    _, query = redirect_of(response)
    assert query == {"dmp": [VISITOR], "gdpr": ["1"], "gdpr_consent": [consent]}


def test_without_a_template_an_outbound_sync_answers_the_gif_and_makes_no_id(ingest, aws, lambda_context):
    register(aws, sync_url=None)
    response = ingest.handler(sync_event(partner=DSP), lambda_context)
    assert_is_the_gif(response)
    assert not response.get("cookies")
    # AND the partner may still sync inbound
    assert_is_the_gif(ingest.handler(sync_event(VISITOR, partner=DSP, puid="in-only"), lambda_context))
    assert resolve(aws, "in-only") == VISITOR


def test_the_latest_sync_wins_on_both_sides(ingest, aws, lambda_context):
    register(aws)
    # GIVEN the partner's id synced for a first visitor
    ingest.handler(sync_event(VISITOR, partner=DSP, puid="shared-1"), lambda_context)
    assert resolve(aws, "shared-1") == VISITOR
    # WHEN the same partner id is synced for a second visitor (the partner's cookie moved)
    ingest.handler(sync_event(OTHER, partner=DSP, puid="shared-1"), lambda_context)
    # THEN the id map names the second, and the first no longer holds the id on our side
    assert resolve(aws, "shared-1") == OTHER
    assert mappings(aws, OTHER) == [(DSP, "shared-1")]
    assert mappings(aws, VISITOR) == []
    # WHEN the partner gives the second visitor a new id
    ingest.handler(sync_event(OTHER, partner=DSP, puid="fresh-2"), lambda_context)
    # THEN each side names one id: the old one resolves to no one, the new one to the visitor
    assert mappings(aws, OTHER) == [(DSP, "fresh-2")]
    assert resolve(aws, "fresh-2") == OTHER
    assert resolve(aws, "shared-1") is None
    assert len(items(aws.id_map_table)) == 1


def test_a_visitor_syncs_with_each_partner_separately(ingest, aws, lambda_context):
    register(aws)
    register(aws, "other-ssp", sync_url=None)
    ingest.handler(sync_event(VISITOR, partner=DSP, puid="same-id"), lambda_context)
    ingest.handler(sync_event(VISITOR, partner="other-ssp", puid="same-id"), lambda_context)
    assert sorted(mappings(aws, VISITOR)) == [(DSP, "same-id"), ("other-ssp", "same-id")]
    assert resolve(aws, "same-id", DSP) == resolve(aws, "same-id", "other-ssp") == VISITOR


# A well-formed inbound and outbound sync, and what makes each refused or rejected.
REFUSED = {
    "gdpr=1 without consent": ({"gdpr": "1"}, {}, None),
    "gdpr=1 with a string that does not grant": ({"gdpr": "1", "gdpr_consent": tc_string()}, {}, None),
    "global privacy control": ({}, {"sec-gpc": "1"}, None),
    "do not track": ({}, {"dnt": "1"}, None),
    "the opt-out cookie": ({}, {}, "dmp_optout=1"),
    "a crawler": ({}, {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, None),
    "an unknown partner": ({"partner": "ghost-dsp"}, {}, None),
    "a partner not registered for sync": ({"partner": "keys-only"}, {}, None),
    "a partner registered with sync off": ({"partner": "sync-off"}, {}, None),
    "a malformed partner name": ({"partner": "Demo DSP"}, {}, None),
    "no partner": ({"partner": ""}, {}, None),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
@pytest.mark.parametrize("known", [False, True], ids=["new-browser", "cookie"])
def test_refused_and_rejected_syncs_store_nothing_set_no_cookie_and_never_redirect(
    ingest, aws, lambda_context, case, direction, known
):
    register(aws)
    register(aws, "sync-off", sync=False)
    PartnerStore(aws.partners_table).add("0" * 64, "keys-only", "2026-11-01T00:00:00+00:00")
    params, headers, extra_cookie = REFUSED[case]
    query = {"partner": DSP, **({"puid": "p-1"} if direction == "inbound" else {}), **params}
    event = sync_event(VISITOR if known else None, **query)
    event["headers"].update(headers)
    if extra_cookie:
        event["cookies"] = [*(event["cookies"] or []), extra_cookie]
    # WHEN the sync arrives
    response = ingest.handler(event, lambda_context)
    # THEN the answer is the GIF, with no new id
    assert_is_the_gif(response)
    assert new_cookie(response) is None
    # AND nothing is stored on either side
    assert items(aws.id_map_table) == []
    assert [i for i in items(aws.events_table) if i["event_id"]["S"].startswith("sync#")] == []


def test_a_malformed_puid_is_rejected(ingest, aws, lambda_context):
    register(aws)
    for puid in ("", "has space", "<script>alert(1)</script>", "x" * 129, "a/b", "ü"):
        response = ingest.handler(sync_event(None, partner=DSP, puid=puid), lambda_context)
        assert_is_the_gif(response)
        assert not response.get("cookies")
    assert items(aws.id_map_table) == [] and items(aws.events_table) == []


@pytest.mark.parametrize(
    "hostile",
    [
        {"redirect": "https://evil.example/"},
        {"url": "https://evil.example/"},
        {"redirect_uri": "javascript:alert(1)", "next": "//evil.example"},
        {"uid": "evil-visitor-0001"},
    ],
)
def test_hostile_redirect_parameters_are_ignored(ingest, aws, lambda_context, hostile):
    register(aws)
    response = ingest.handler(sync_event(VISITOR, partner=DSP, **hostile), lambda_context)
    where, query = redirect_of(response)
    assert where == "https://sync.dsp.example/match"
    assert query["dmp"] == [VISITOR]
    assert "evil" not in response["headers"]["Location"]


def test_a_sync_never_stores_a_mapping_for_an_id_named_by_the_query(ingest, aws, lambda_context):
    # A page cannot tie a partner's id to someone else's visitor id through `uid`.
    register(aws)
    response = ingest.handler(sync_event(None, partner=DSP, puid="p-9", uid=OTHER), lambda_context)
    visitor = new_cookie(response)
    assert visitor is not None and visitor != OTHER
    assert resolve(aws, "p-9") == visitor
    assert mappings(aws, OTHER) == []


def test_a_refusal_from_a_known_visitor_suppresses_it_as_the_pixel_does(ingest, aws, lambda_context):
    register(aws)
    event = sync_event(VISITOR, partner=DSP, puid="p-1")
    event["headers"]["sec-gpc"] = "1"
    response = ingest.handler(event, lambda_context)
    assert_is_the_gif(response)
    assert forgets_visitor(response)
    suppression = SuppressionStore(aws.suppression_table).get(VISITOR)
    assert suppression is not None and suppression.reason == "gpc"


def test_a_suppressed_visitor_s_syncs_store_nothing_and_never_redirect(ingest, aws, lambda_context):
    register(aws)
    # GIVEN a visitor on the suppression list (opted out elsewhere, or erased)
    SuppressionStore(aws.suppression_table).suppress([VISITOR], reason="optout", at_s=NOW_S, keep_seconds=RETENTION_S)
    # WHEN its browser syncs, in and out
    inbound = ingest.handler(sync_event(VISITOR, partner=DSP, puid="p-1"), lambda_context)
    outbound = ingest.handler(sync_event(VISITOR, partner=DSP), lambda_context)
    # THEN nothing is stored, there is no redirect, and the browser is told to forget the id
    for response in (inbound, outbound):
        assert_is_the_gif(response)
        assert forgets_visitor(response)
    assert items(aws.id_map_table) == [] and mappings(aws, VISITOR) == []


def test_a_partner_registered_after_the_function_started_syncs_at_once(ingest, aws, lambda_context):
    # GIVEN a warm function that has already read one partner's profile
    register(aws)
    assert ingest.handler(sync_event(VISITOR, partner=DSP), lambda_context)["statusCode"] == 302
    # WHEN the operator registers another partner
    register(aws, "late-dsp", sync_url="https://late.example/s/{uid}")
    # THEN its first sync is honoured (a partner not cached yet is read)
    where, _ = redirect_of(ingest.handler(sync_event(VISITOR, partner="late-dsp"), lambda_context))
    assert where == f"https://late.example/s/{VISITOR}"


def test_dmp_erase_removes_both_sides_of_the_visitor_s_mappings_and_visitor_show_lists_them_before(
    ingest, aws, lambda_context
):
    register(aws)
    register(aws, "other-ssp", sync_url=None)
    # GIVEN a visitor synced with two partners, and another visitor synced with one
    ingest.handler(sync_event(VISITOR, partner=DSP, puid="dsp-id-1"), lambda_context)
    ingest.handler(sync_event(VISITOR, partner="other-ssp", puid="ssp-id-1"), lambda_context)
    ingest.handler(sync_event(OTHER, partner=DSP, puid="dsp-id-2"), lambda_context)
    # WHEN the data subject asks what is held
    report = privacy.visitor_report(VISITOR, aws)
    # THEN the mappings are listed, with when they were synced
    synced_at = datetime.fromtimestamp(NOW_S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert report["mappings"] == [
        {"partner": DSP, "partner_uid": "dsp-id-1", "synced_at": synced_at},
        {"partner": "other-ssp", "partner_uid": "ssp-id-1", "synced_at": synced_at},
    ]
    assert report["traits"] == [] and report["events"] == []
    # WHEN the operator erases the visitor
    (record,) = privacy.erase([VISITOR], aws, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
    # THEN neither side of its mappings is left, and the audit record counts them
    assert mappings(aws, VISITOR) == []
    assert resolve(aws, "dsp-id-1") is None and resolve(aws, "ssp-id-1", "other-ssp") is None
    assert record.deleted["mappings"] == 2
    assert privacy.visitor_report(VISITOR, aws)["mappings"] == []
    (audit,) = privacy.audit_records(aws)
    assert audit["visitor_sha256"] == visitor_hash(VISITOR) and audit["deleted"]["mappings"] == 2
    # AND the other visitor's mapping is untouched
    assert resolve(aws, "dsp-id-2") == OTHER
    assert mappings(aws, OTHER) == [(DSP, "dsp-id-2")]
    # AND a later sync of the erased visitor stores nothing
    response = ingest.handler(sync_event(VISITOR, partner=DSP, puid="dsp-id-1"), lambda_context)
    assert forgets_visitor(response) and resolve(aws, "dsp-id-1") is None


def test_an_erasure_leaves_a_partner_id_that_a_later_sync_gave_to_another_visitor(ingest, aws, lambda_context):
    register(aws)
    ingest.handler(sync_event(VISITOR, partner=DSP, puid="moved"), lambda_context)
    # GIVEN our side of the first visitor still names the id (as if the clean-up had failed)
    EventStore(aws.events_table).put_mapping(VISITOR, DSP, "moved", ts_ms=RECEIVED_MS, expires_at=NOW_S + 60)
    ingest.handler(sync_event(OTHER, partner=DSP, puid="moved"), lambda_context)
    EventStore(aws.events_table).put_mapping(VISITOR, DSP, "moved", ts_ms=RECEIVED_MS, expires_at=NOW_S + 60)
    # WHEN the first visitor is erased
    privacy.erase([VISITOR], aws, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
    # THEN the partner's id still names the visitor it now belongs to
    assert resolve(aws, "moved") == OTHER


def test_an_opt_out_s_erasure_by_the_next_build_removes_the_mappings(ingest, load_handler, aws, lambda_context):
    register(aws)
    ingest.handler(sync_event(VISITOR, partner=DSP, puid="dsp-id-1"), lambda_context)
    # GIVEN the visitor opted out: suppressed now, erased by the next build's plan stage
    optout = load_event("optout_get")
    optout["cookies"] = [f"dmp_uid={VISITOR}"]
    ingest.handler(optout, lambda_context)
    assert resolve(aws, "dsp-id-1") == VISITOR
    # WHEN the next build plans
    load_handler("builder").handler({"stage": "plan", "time": "2026-11-28T11:00:00Z"}, lambda_context)
    # THEN both sides of the mapping are gone
    assert resolve(aws, "dsp-id-1") is None and mappings(aws, VISITOR) == []
    (audit,) = privacy.audit_records(aws)
    assert (audit["by"], audit["deleted"]["mappings"]) == ("optout", 1)
