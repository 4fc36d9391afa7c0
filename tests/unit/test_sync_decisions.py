"""What `GET /sync` decides before touching storage (functions/ingest/sync.py): consent as
on the pixel, the partner and its id checked by form, the partner's registration, the
redirect built from the registered template alone, and the short cache of profiles."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from functions.core.storage.partners import PartnerProfile
from functions.ingest import logic
from functions.ingest.sync import MAX_LOCATION, ProfileCache, SyncAsk, admit, decide, location

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
VISITOR = "3f9a1c0d2b7e4a5f8c6d1e2f3a4b5c6d"
DSP = PartnerProfile("demo-dsp", sync=True, sync_url="https://dsp.example/sync?dmp={uid}&g={gdpr}&c={gdpr_consent}")


def request(cookies: dict[str, str] | None = None, **headers: str) -> logic.Request:
    return logic.Request(
        headers={"user-agent": CHROME, **headers}, cookies=cookies or {}, received_ms=1_795_857_330_000
    )


def test_an_inbound_sync_asks_to_store_the_partner_s_id():
    decision = decide(request(), "partner=demo-dsp&puid=DSP-7f3a9c21.e4", vendor_id=755)
    assert decision == decide(request(), "puid=DSP-7f3a9c21.e4&partner=demo-dsp", vendor_id=755)
    assert decision.ask == SyncAsk("demo-dsp", "DSP-7f3a9c21.e4", "", "")
    assert decision.ask.inbound
    assert (decision.rejected, decision.refusal) == (None, None)


def test_an_outbound_sync_carries_the_consent_it_came_with():
    decision = decide(request(), "partner=demo-dsp&gdpr=0&gdpr_consent=CPabc", vendor_id=755)
    assert decision.ask == SyncAsk("demo-dsp", None, "0", "CPabc")
    assert not decision.ask.inbound


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing_partner"),
        ("partner=", "missing_partner"),
        ("puid=abc", "missing_partner"),
        ("partner=Demo-DSP&puid=abc", "unknown_partner"),
        ("partner=demo%3Adsp&puid=abc", "unknown_partner"),
        ("partner=../etc&puid=abc", "unknown_partner"),
        ("partner=demo-dsp&puid=", "malformed_puid"),
        ("partner=demo-dsp&puid=has%20space", "malformed_puid"),
        ("partner=demo-dsp&puid=%3Cscript%3E", "malformed_puid"),
        ("partner=demo-dsp&puid=" + "a" * 129, "malformed_puid"),
        ("partner=demo-dsp&puid=a%0Ab", "malformed_puid"),
        ("partner=demo-dsp&partner=other&puid=abc", "repeated_parameter"),
        ("partner=demo-dsp&puid=a&puid=b", "repeated_parameter"),
        ("partner=demo-dsp&gdpr=2", "invalid_gdpr"),
        ("partner=demo-dsp&puid=%FF", "bad_encoding"),
        ("partner=demo-dsp&x=" + "a" * logic.MAX_QUERY, "query_too_long"),
    ],
)
def test_malformed_requests_are_rejected_by_reason(query, reason):
    decision = decide(request(), query, vendor_id=755)
    assert (decision.ask, decision.rejected, decision.refusal) == (None, reason, None)


@pytest.mark.parametrize(
    ("kwargs", "query", "reason"),
    [
        ({"cookies": {"dmp_optout": "1", "dmp_uid": VISITOR}}, "", "optout"),
        ({"sec-gpc": "1", "cookies": {"dmp_uid": VISITOR}}, "", "gpc"),
        ({"dnt": "1"}, "", "dnt"),
        ({"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}, "", "bot"),
        ({"cookies": {"dmp_uid": VISITOR}}, "&gdpr=1", "gdpr_no_consent"),
        ({"cookies": {"dmp_uid": VISITOR}}, "&gdpr=1&gdpr_consent=garbage", "gdpr_invalid_consent"),
    ],
)
def test_consent_opt_out_and_bots_refuse_a_sync_as_they_refuse_a_hit(kwargs, query, reason):
    headers = dict(kwargs)
    cookies = headers.pop("cookies", None)
    # GIVEN a well-formed inbound sync, from a browser that says no (or a crawler)
    decision = decide(request(cookies, **headers), "partner=demo-dsp&puid=abc" + query, vendor_id=755)
    # THEN nothing is asked for, and the refusal is the pixel's, suppression included
    assert decision.ask is None and decision.refusal is not None
    assert decision.refusal.refused == reason
    assert decision.refusal.events == [] and decision.refusal.new_visitor_id is None
    expected = VISITOR if cookies and reason in logic.SUPPRESSING_REFUSALS else None
    assert decision.refusal.suppress_visitor_id == expected


def test_a_refusal_never_suppresses_an_id_taken_from_the_query():
    # A `uid` parameter names no one on /sync: only the browser's own cookie does.
    decision = decide(request(**{"sec-gpc": "1"}), f"partner=demo-dsp&puid=abc&uid={VISITOR}", vendor_id=755)
    assert decision.refusal is not None and decision.refusal.suppress_visitor_id is None


def test_a_refusal_is_judged_before_the_partner():
    # A browser that says no is honoured whatever the partner it was sent for.
    decision = decide(request({"dmp_uid": VISITOR}, **{"sec-gpc": "1"}), "partner=NOT%20A%20NAME", vendor_id=755)
    assert decision.refusal is not None and decision.refusal.suppress_visitor_id == VISITOR


@pytest.mark.parametrize(
    ("profile", "admitted"),
    [
        (None, "unknown_partner"),
        (PartnerProfile("demo-dsp"), "not_registered"),
        (PartnerProfile("demo-dsp", sync=False, sync_url="https://dsp.example/{uid}"), "not_registered"),
        (DSP, DSP),
        (PartnerProfile("demo-dsp", sync=True), PartnerProfile("demo-dsp", sync=True)),
    ],
)
def test_only_a_partner_registered_for_sync_is_admitted(profile, admitted):
    assert admit(profile) == admitted


def test_the_redirect_is_the_registered_template_filled_url_encoded():
    ask = SyncAsk("demo-dsp", None, "1", "CP a&b=c")
    assert location(DSP, VISITOR, ask) == f"https://dsp.example/sync?dmp={VISITOR}&g=1&c={quote('CP a&b=c', safe='')}"


def test_without_a_template_there_is_no_redirect():
    assert location(PartnerProfile("demo-dsp", sync=True), VISITOR, SyncAsk("demo-dsp", None, "", "")) is None


def test_a_redirect_too_long_to_send_is_not_sent():
    ask = SyncAsk("demo-dsp", None, "1", "C" * MAX_LOCATION)
    assert location(DSP, VISITOR, ask) is None


def test_hostile_parameters_never_reach_the_redirect():
    # GIVEN a request that names where it would like the browser to go
    query = "partner=demo-dsp&redirect=https%3A%2F%2Fevil.example&url=https%3A%2F%2Fevil.example&uid=evil-visitor-1"
    decision = decide(request(), query, vendor_id=755)
    assert decision.ask is not None
    # THEN the redirect is the partner's registered host, with our id alone
    target = location(DSP, VISITOR, decision.ask)
    assert target is not None and target.startswith("https://dsp.example/sync?dmp=" + VISITOR + "&")
    assert "evil" not in target


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_profiles_are_read_once_per_partner_while_fresh_and_again_once_stale():
    # GIVEN a cache over a partners table that counts its reads
    reads: list[str] = []
    table = {"demo-dsp": DSP}

    def fetch(name: str) -> PartnerProfile | None:
        reads.append(name)
        return table.get(name)

    clock = Clock()
    cache = ProfileCache(fetch, ttl_seconds=60, clock=clock)
    # WHEN a burst of syncs asks for the same partner
    assert [cache.get("demo-dsp") for _ in range(100)] == [DSP] * 100
    # THEN the table is read once
    assert reads == ["demo-dsp"]
    # AND a partner registered meanwhile is found at its first sync (a miss)
    table["new-dsp"] = PartnerProfile("new-dsp", sync=True)
    assert cache.get("new-dsp") == PartnerProfile("new-dsp", sync=True)
    # AND a change is seen once the cached profile is older than the TTL
    table["demo-dsp"] = PartnerProfile("demo-dsp", sync=False)
    clock.now += 59
    assert cache.get("demo-dsp") == DSP
    clock.now += 2
    assert cache.get("demo-dsp") == PartnerProfile("demo-dsp", sync=False)
    assert reads == ["demo-dsp", "new-dsp", "demo-dsp"]


def test_unknown_partners_are_cached_too_but_cannot_grow_the_cache_without_bound():
    reads: list[str] = []

    def fetch(name: str) -> PartnerProfile | None:
        reads.append(name)
        return None

    cache = ProfileCache(fetch, clock=Clock())
    assert cache.get("ghost") is None and cache.get("ghost") is None
    assert reads == ["ghost"]
    for index in range(5000):
        cache.get(f"made-up-{index}")
    assert len(cache._cached) <= 1024
