"""Validation of one tracked event (functions/core/hits.py): the pixel's limits of
DESIGN.md ("HTTP contract"), device and crawler detection, and timestamps of `dmp ingest`.
"""

from __future__ import annotations

import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.hits import (
    InvalidEvent,
    clean_geo_value,
    device_type,
    is_bot,
    is_visitor_id,
    to_epoch_ms,
    validate_event,
    validate_props,
)
from tests.conftest import dynamodb_item_bytes

VISITOR = "visitor-0001"
TS = 1_717_200_000_000


def track(**fields):
    """validate_event for a valid visitor at a fixed time, with `fields` as sent."""
    return validate_event(visitor_id=fields.pop("visitor_id", VISITOR), ts_ms=fields.pop("ts_ms", TS), **fields)


def rejection(**fields) -> str:
    """The reason an event with `fields` is rejected (fails the test if it is accepted)."""
    with pytest.raises(InvalidEvent) as caught:
        track(**fields)
    return caught.value.reason


# --- event name ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, ""])
def test_missing_event_name_defaults_to_page_view(name):
    assert track(name=name).name == "page_view"


@pytest.mark.parametrize("name", ["a", "add_to_cart", "step2", "0", "x" * 40, string.ascii_lowercase + "0123456789_"])
def test_event_names_of_the_contract_pattern_are_kept(name):
    assert track(name=name).name == name


@pytest.mark.parametrize(
    "name",
    ["x" * 41, "Page_View", "page-view", "page view", "pageview\n", "caf\u00e9", "page.view", "1/2", 42],
)
def test_event_names_outside_the_contract_pattern_are_rejected(name):
    assert rejection(name=name) == "invalid_event_name"


# --- visitor id ---------------------------------------------------------------------


@pytest.mark.parametrize("visitor_id", ["a" * 8, "Z" * 64, "abc-DEF_123", "0123456789abcdef0123456789abcdef"])
def test_visitor_ids_of_8_to_64_allowed_characters_are_valid(visitor_id):
    assert is_visitor_id(visitor_id)
    assert track(visitor_id=visitor_id).visitor_id == visitor_id


@pytest.mark.parametrize(
    "visitor_id",
    ["a" * 7, "a" * 65, "", "abcdefg.", "abcd efgh", "abcdefgh\n", "abcdéfgh", "abcd/efgh", None, 12345678],
)
def test_malformed_visitor_ids_are_invalid(visitor_id):
    assert not is_visitor_id(visitor_id)


def test_event_of_a_malformed_visitor_id_is_rejected():
    assert rejection(visitor_id="short") == "invalid_uid"


# --- url and ref --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["url", "ref"])
def test_a_long_url_or_ref_that_keeps_the_item_within_a_write_unit_is_kept(field):
    value = "https://example.com/" + "a" * (700 - len("https://example.com/"))
    assert getattr(track(**{field: value}), field) == value


@pytest.mark.parametrize("field", ["url", "ref"])
def test_url_and_ref_longer_than_2048_bytes_are_rejected(field):
    value = "https://example.com/" + "a" * (2049 - len("https://example.com/"))
    assert rejection(**{field: value}) == f"{field}_too_long"


@pytest.mark.parametrize("field", ["url", "ref"])
def test_url_and_ref_limits_count_utf8_bytes_not_characters(field):
    # 700 characters, 2100 bytes: within 2048 characters, over 2048 bytes
    value = "https://example.com/" + "\u20ac" * 700
    assert rejection(**{field: value}) == f"{field}_too_long"


def test_an_event_whose_stored_item_would_pass_1_kb_is_rejected():
    # GIVEN fields each within their own limit, together over one write unit
    fields = {"url": "https://example.com/" + "a" * 600, "ref": "https://example.com/" + "b" * 600}
    # THEN the event is refused whole, saying why
    assert rejection(**fields) == "event_too_large"


def test_twenty_props_of_multibyte_text_cannot_store_tens_of_kb():
    props = {f"p{i}": "\u00e9" * 128 for i in range(20)}  # each 256 bytes: within its limit
    assert rejection(props=props) == "event_too_large"


@pytest.mark.parametrize("field", ["url", "ref"])
def test_text_that_has_no_utf8_form_is_rejected(field):
    assert rejection(**{field: "https://example.com/\ud800"}) == f"invalid_{field}"


@pytest.mark.parametrize("field", ["url", "ref"])
@pytest.mark.parametrize("control", ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f"])
def test_url_and_ref_with_control_characters_are_rejected(field, control):
    assert rejection(**{field: f"https://example.com/a{control}b"}) == f"invalid_{field}"


@pytest.mark.parametrize("field", ["url", "ref"])
def test_url_and_ref_that_are_not_text_are_rejected(field):
    assert rejection(**{field: ["https://example.com/"]}) == f"invalid_{field}"


def test_absent_url_and_ref_are_stored_as_none():
    event = track(url="", ref=None)
    assert event.url is None
    assert event.ref is None


# --- client event id ----------------------------------------------------------------


def test_eid_of_64_printable_characters_is_accepted_for_deduplication():
    eid = (string.ascii_letters + string.digits + string.punctuation)[:64]
    assert len(eid) == 64
    assert track(eid=eid).event_id == track(eid=eid, ts_ms=TS + 1).event_id


def test_eid_longer_than_64_characters_is_rejected():
    assert rejection(eid="e" * 65) == "eid_too_long"


@pytest.mark.parametrize("eid", ["abc\x00", "abc\n", "\x7fabc", "abc\x1f"])
def test_eid_with_control_characters_is_rejected(eid):
    assert rejection(eid=eid) == "invalid_eid"


def test_eid_that_is_not_text_is_rejected():
    assert rejection(eid=12345) == "invalid_eid"


def test_same_eid_gives_the_same_event_id_whenever_it_arrives():
    # GIVEN the same client event id sent twice, a retry arriving 3 seconds later
    first = track(eid="7f3c9a1e-retry", ts_ms=TS)
    retry = track(eid="7f3c9a1e-retry", ts_ms=TS + 3000)

    # THEN both land on the same event id, so the retry is stored once
    assert first.event_id == retry.event_id


def test_different_eids_give_different_event_ids():
    assert track(eid="event-a").event_id != track(eid="event-b").event_id


@pytest.mark.parametrize("eid", [None, ""])
def test_events_without_eid_get_unique_event_ids_even_at_the_same_time(eid):
    ids = {track(eid=eid, ts_ms=TS).event_id for _ in range(200)}
    assert len(ids) == 200


# --- custom properties --------------------------------------------------------------


def test_twenty_props_are_accepted():
    props = {f"p{i}": str(i) for i in range(20)}
    assert track(props=props).props == props


def test_more_than_twenty_props_are_rejected():
    assert rejection(props={f"p{i}": "v" for i in range(21)}) == "too_many_props"


@pytest.mark.parametrize("name", ["plan", "a", "x" * 40, "utm_source_2"])
def test_prop_names_of_the_contract_pattern_are_kept(name):
    assert validate_props({name: "v"}) == {name: "v"}


@pytest.mark.parametrize("name", ["x" * 41, "", "Plan", "utm-source", "a b", "caf\u00e9", "a.b"])
def test_prop_names_outside_the_contract_pattern_are_rejected(name):
    assert rejection(props={name: "v"}) == "invalid_prop_name"


def test_prop_value_of_256_bytes_is_kept():
    assert track(props={"note": "v" * 256}).props == {"note": "v" * 256}


def test_prop_value_longer_than_256_bytes_is_rejected():
    assert rejection(props={"note": "v" * 257}) == "prop_value_too_long"
    assert rejection(props={"note": "\u00e9" * 129}) == "prop_value_too_long"  # 129 characters, 258 bytes


@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f"])
def test_prop_value_with_control_characters_is_rejected(control):
    assert rejection(props={"note": f"a{control}b"}) == "invalid_prop_value"


def test_prop_values_are_stored_as_strings():
    assert validate_props({"qty": 3, "paid": True, "trial": False, "plan": "pro"}) == {
        "qty": "3",
        "paid": "true",
        "trial": "false",
        "plan": "pro",
    }


def test_props_that_are_not_an_object_are_rejected():
    assert rejection(props=["plan", "pro"]) == "invalid_props"


def test_prop_value_that_is_not_a_scalar_is_rejected():
    assert rejection(props={"plan": ["pro"]}) == "invalid_prop_value"


# --- device type --------------------------------------------------------------------

DESKTOP_CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
DESKTOP_SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
DESKTOP_FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
DESKTOP_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36"
)
ANDROID_PHONE_FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"
ANDROID_TABLET_CHROME = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36"
)
ANDROID_TABLET_FIREFOX = "Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0"
KINDLE_FIRE_SILK = (
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Silk/124.2.1 like Chrome/124.0.6367.82 Safari/537.36"
)
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    "user_agent", [DESKTOP_CHROME_WINDOWS, DESKTOP_SAFARI_MAC, DESKTOP_FIREFOX_LINUX, DESKTOP_EDGE]
)
def test_desktop_browsers_are_desktop(user_agent):
    assert device_type(user_agent) == "desktop"


@pytest.mark.parametrize("user_agent", [IPHONE_SAFARI, ANDROID_PHONE_CHROME, ANDROID_PHONE_FIREFOX])
def test_phones_are_mobile(user_agent):
    assert device_type(user_agent) == "mobile"


@pytest.mark.parametrize("user_agent", [IPAD_SAFARI, ANDROID_TABLET_CHROME, ANDROID_TABLET_FIREFOX, KINDLE_FIRE_SILK])
def test_tablets_are_tablet(user_agent):
    assert device_type(user_agent) == "tablet"


@pytest.mark.parametrize("user_agent", [None, ""])
def test_no_user_agent_has_no_device_type(user_agent):
    assert device_type(user_agent) is None


def test_device_outside_the_known_types_is_not_stored():
    assert track(device="smart-tv").device is None
    assert track(device="tablet").device == "tablet"


# --- crawlers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "AdsBot-Google (+http://www.google.com/adsbot.html)",
        "Mediapartners-Google",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "Twitterbot/1.0",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Scrapy/2.11.0 (+https://scrapy.org)",
    ],
)
def test_known_crawlers_are_bots(user_agent):
    assert is_bot(user_agent)


@pytest.mark.parametrize(
    "user_agent",
    [
        DESKTOP_CHROME_WINDOWS,
        DESKTOP_SAFARI_MAC,
        DESKTOP_FIREFOX_LINUX,
        DESKTOP_EDGE,
        IPHONE_SAFARI,
        IPAD_SAFARI,
        ANDROID_PHONE_CHROME,
        ANDROID_TABLET_CHROME,
        KINDLE_FIRE_SILK,
    ],
)
def test_browsers_are_not_bots(user_agent):
    assert not is_bot(user_agent)


def test_headless_chrome_is_a_bot_as_the_maintained_crawler_list_says():
    # Unattended headless browsers are how most scrapers run; crawler-user-agents lists them.
    assert is_bot(HEADLESS_CHROME)


def test_phone_whose_brand_contains_bot_is_not_a_crawler():
    # Cubot is an Android phone maker: its browsers are visitors, not known crawlers.
    user_agent = (
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36"
    )
    assert not is_bot(user_agent)


@pytest.mark.parametrize("user_agent", ["", None])
def test_missing_user_agent_is_not_a_bot(user_agent):
    assert not is_bot(user_agent)


# --- timestamps ---------------------------------------------------------------------

# 2024-03-01T12:00:00Z: 19783 days after the epoch, plus 12 hours.
MARCH_1_NOON_UTC_MS = (19_783 * 86_400 + 12 * 3600) * 1000


def test_iso_timestamp_with_z_is_utc():
    assert to_epoch_ms("2024-03-01T12:00:00Z") == MARCH_1_NOON_UTC_MS


def test_iso_timestamp_keeps_milliseconds():
    assert to_epoch_ms("2024-03-01T12:00:00.123Z") == MARCH_1_NOON_UTC_MS + 123
    assert to_epoch_ms("2024-03-01T12:00:00.999Z") == MARCH_1_NOON_UTC_MS + 999


@pytest.mark.parametrize(
    "text", ["2024-03-01T13:00:00+01:00", "2024-03-01T07:30:00-04:30", "2024-03-01T12:00:00+00:00"]
)
def test_iso_timestamp_with_offset_is_converted_to_utc(text):
    # every one of these is noon UTC written in another zone
    assert to_epoch_ms(text) == MARCH_1_NOON_UTC_MS


def test_naive_iso_timestamp_is_taken_as_utc_whatever_the_local_zone(monkeypatch):
    # GIVEN a machine whose local time zone is not UTC (a developer's laptop)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # THEN a timestamp without offset still means UTC
        assert to_epoch_ms("2024-03-01T12:00:00") == MARCH_1_NOON_UTC_MS
    finally:
        monkeypatch.undo()
        time.tzset()


def test_epoch_milliseconds_as_integer_are_kept():
    assert to_epoch_ms(MARCH_1_NOON_UTC_MS + 7) == MARCH_1_NOON_UTC_MS + 7


def test_epoch_milliseconds_as_digit_string_are_kept():
    assert to_epoch_ms(str(MARCH_1_NOON_UTC_MS + 7)) == MARCH_1_NOON_UTC_MS + 7


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "-5", "12abc", None, True, [1], {}]
)
def test_unreadable_timestamps_are_rejected(value):
    with pytest.raises(InvalidEvent) as caught:
        to_epoch_ms(value)
    assert caught.value.reason == "invalid_ts"


# --- the stored item's size -------------------------------------------------------------


PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"))


@settings(max_examples=300, deadline=None)
@given(
    url=st.text(PRINTABLE, max_size=300),
    ref=st.text(PRINTABLE, max_size=300),
    eid=st.text(alphabet=string.ascii_letters, max_size=64),
    props=st.dictionaries(
        st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True), st.text(PRINTABLE, max_size=40), max_size=20
    ),
    city=st.text(PRINTABLE, max_size=64),
)
def test_the_size_bound_is_never_below_the_stored_items_size(url, ref, eid, props, city):
    from functions.core.hits import Geo, stored_bytes
    from functions.core.storage.events import EventStore

    try:
        event = validate_event(
            visitor_id="visitor-0001",
            ts_ms=TS,
            url=url,
            ref=ref,
            eid=eid,
            props=props,
            geo=Geo("GB", "ENG", clean_geo_value(city)),
            device="desktop",
            client_ts_ms=TS,
        )
    except InvalidEvent:
        return
    item = EventStore.to_item(event, 90 * 86_400)
    assert dynamodb_item_bytes(item) <= stored_bytes(event) <= 1024
