"""ID sync's rules (DESIGN.md "Identity"): which sync URL templates a partner may register,
how they are filled, and what a partner's user id is. A template is a redirect target, so
every way of choosing the host from a request must be refused at registration."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from functions.core.identity import is_partner_uid
from functions.core.sync import MAX_TEMPLATE, InvalidTemplate, check_template, fill_template

GOOD_TEMPLATES = [
    "https://dsp.example/sync?dmp={uid}",
    "https://dsp.example/sync?dmp={uid}&gdpr={gdpr}&gdpr_consent={gdpr_consent}",
    "https://sync.dsp.example:8443/u/{uid}/c/{gdpr_consent}#{gdpr}",
    "HTTPS://Dsp.Example/sync?id={uid}",
    "https://dsp.example/static",  # no macro at all: the partner learns nothing, but it is safe
    "https://dsp.example?x={uid}",
]


@pytest.mark.parametrize("template", GOOD_TEMPLATES)
def test_https_templates_with_known_macros_after_the_host_are_accepted(template):
    assert check_template(template) == template


HOSTILE_TEMPLATES = [
    ("", "empty"),
    ("javascript:alert(1)//{uid}", "not_https"),
    ("JavaScript:alert(document.cookie)", "not_https"),
    ("data:text/html,<script>alert(1)</script>", "not_https"),
    ("http://dsp.example/sync?dmp={uid}", "not_https"),
    ("//evil.example/sync?dmp={uid}", "not_https"),
    ("/sync?dmp={uid}", "not_https"),
    ("https:evil.example/{uid}", "not_https"),
    ("https:/evil.example/{uid}", "not_https"),
    ("ftp://dsp.example/{uid}", "not_https"),
    ("https://{uid}.evil.example/", "macro_in_host"),
    ("https://{uid}/", "macro_in_host"),
    ("https://dsp.example{uid}", "macro_in_host"),
    ("https://dsp.example:{gdpr}/x", "macro_in_host"),
    ("https://{gdpr_consent}@dsp.example/", "macro_in_host"),
    ("https://a@b", "userinfo"),
    ("https://dsp.example@evil.example/{uid}", "userinfo"),
    ("https://user:pass@dsp.example/{uid}", "userinfo"),
    ("https:///evil.example/{uid}", "no_host"),
    ("https://?x={uid}", "no_host"),
    ("https://dsp.example%2F@evil/", "userinfo"),
    ("https://dsp.example%2Fevil.example/", "bad_host"),
    ("https://dsp_example/", "bad_host"),
    ("https://[::1]/{uid}", "bad_host"),
    ("https://.../x", "bad_host"),
    ("https://dsp.example:99999/{uid}", "bad_port"),
    ("https://dsp.example:port/{uid}", "bad_port"),
    ("https://dsp.example\\@evil.example/{uid}", "backslash"),
    ("https://evil.example\\.dsp.example/", "backslash"),
    ("https://dsp.example/sync?dmp={uid} ", "whitespace_or_control"),
    (" https://dsp.example/{uid}", "whitespace_or_control"),
    ("https://dsp.example/\t{uid}", "whitespace_or_control"),
    ("https://dsp.example/\r\nLocation: https://evil.example/", "whitespace_or_control"),
    ("https://dsp.example/\x00{uid}", "whitespace_or_control"),
    ("https://dsp.example/\x7f", "whitespace_or_control"),
    ("https://dsp.exämple/{uid}", "not_ascii"),
    ("https://dsp.example/\u202e{uid}", "not_ascii"),
    ("https://dsp.example/sync?dmp={redirect}", "unknown_macro"),
    ("https://dsp.example/sync?dmp={url}", "unknown_macro"),
    ("https://dsp.example/sync?dmp={UID}", "unknown_macro"),
    ("https://dsp.example/sync?dmp={uid }", "whitespace_or_control"),
    ("https://dsp.example/sync?dmp={}", "unknown_macro"),
    ("https://dsp.example/sync?dmp={{uid}}", "unknown_macro"),
    ("https://dsp.example/sync?dmp={uid", "stray_brace"),
    ("https://dsp.example/sync?dmp=uid}", "stray_brace"),
    ("https://dsp.example/" + "a" * MAX_TEMPLATE, "too_long"),
]


@pytest.mark.parametrize(("template", "reason"), HOSTILE_TEMPLATES)
def test_hostile_templates_are_refused_with_the_rule_they_break(template, reason):
    with pytest.raises(InvalidTemplate) as refused:
        check_template(template)
    assert refused.value.reason == reason
    assert str(refused.value)  # a message an operator can read


def test_a_template_of_exactly_the_maximum_length_is_accepted():
    template = "https://dsp.example/?u={uid}&p="
    template += "a" * (MAX_TEMPLATE - len(template))
    assert check_template(template) == template


def test_filling_url_encodes_every_value_so_none_can_leave_its_place():
    # GIVEN values that would end the query, add parameters or start a fragment if kept as they are
    filled = fill_template(
        "https://dsp.example/sync/{uid}?gdpr={gdpr}&c={gdpr_consent}",
        uid="a/b?c#d",
        gdpr="1",
        gdpr_consent="CPx&evil=1#frag %{uid}",
    )
    parts = urlsplit(filled)
    # THEN the host and the path are the template's, and each value comes back whole from its own place
    assert (parts.scheme, parts.hostname) == ("https", "dsp.example")
    assert parts.path == "/sync/a%2Fb%3Fc%23d"
    assert parts.fragment == ""
    assert parse_qs(parts.query) == {"gdpr": ["1"], "c": ["CPx&evil=1#frag %{uid}"]}


def test_filling_replaces_every_occurrence_and_leaves_the_rest_alone():
    filled = fill_template("https://dsp.example/{uid}/{uid}?g={gdpr}", uid="v1", gdpr="", gdpr_consent="x")
    assert filled == "https://dsp.example/v1/v1?g="


@pytest.mark.parametrize("puid", ["a", "DSP-7f3a9c21.e4", "x:y~z_w.v-u", "A" * 128, "0"])
def test_partner_uids_of_the_contract_are_accepted(puid):
    assert is_partner_uid(puid)


@pytest.mark.parametrize(
    "puid",
    [
        "",
        "A" * 129,
        "has space",
        "semi;colon",
        "slash/",
        "<script>",
        "a\nb",
        "quote'",
        "percent%20",
        "ünï",
        "a\x00",
        "{uid}",
        None,
        123,
    ],
)
def test_malformed_partner_uids_are_refused(puid):
    assert not is_partner_uid(puid)
