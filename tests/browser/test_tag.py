"""The tag (`GET /tag.js`) in a real browser against `dmp serve`: what a shop page sends
ends up in the events table under the visitor id of the browser's `dmp_uid` cookie, and a
consent platform that refuses storage means nothing is stored and no cookie is set.

The shop is served from http://127.0.0.1 and the gateway listens on 127.0.0.1 too: the
same site, and a host Chromium treats as potentially trustworthy, so it keeps the
server's `Secure; SameSite=None` cookie although the page is plain http.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tests.unit.tcf_builder import tc_string

if TYPE_CHECKING:  # the fixtures' types; pytest itself loads conftest.py
    from tests.browser.cdp import Browser, Page
    from tests.browser.conftest import Site, Stack

pytestmark = pytest.mark.slow

WAIT = 30.0  # the longest any single wait may take
QUIET_PERIOD = 1.0  # how long "nothing more is sent" is watched after the server answered
VISITOR_COOKIE = "dmp_uid"


def shop_page(gateway_url: str, *, cmp: str = "") -> str:
    """A product page with the tag and an add-to-cart button; `cmp` goes before the tag,
    as a consent platform's stub does."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Wool scarf</title>{cmp}</head>
<body>
  <h1>Wool scarf</h1>
  <button id="add-to-cart" style="position:absolute; left:40px; top:120px; width:200px; height:50px"
          onclick='dmp.track("add_to_cart", {{sku: "wool-scarf"}})'>Add to cart</button>
  <script src="{gateway_url}/tag.js"></script>
</body></html>"""


def tcf_cmp(*, gdpr_applies: bool, tc: str) -> str:
    """A stand-in for an IAB TCF v2 consent platform: `__tcfapi('addEventListener')`
    answers asynchronously, as real ones do, with the visitor's stored choice."""
    tc_data = json.dumps({"gdprApplies": gdpr_applies, "tcString": tc, "eventStatus": "tcloaded", "listenerId": 1})
    return f"""<script>
  window.__tcfapi = function (command, version, callback) {{
    if (command === "addEventListener") setTimeout(function () {{ callback({tc_data}, true); }}, 50);
  }};
</script>"""


def wait_until(found: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.2)


def events_named(stack: Stack, url: str, name: str) -> list[dict[str, Any]]:
    return [item for item in stack.stored_events(url) if item["name"]["S"] == name]


def collect_exchanges(page: Page) -> list[tuple[dict[str, Any], int]]:
    """(JSON body, response status) of every POST /collect the page has sent, once all of
    them have been answered; [] while one is still in flight. Needs Network.enable."""
    page.browser.drain(0.1)
    statuses = {r["requestId"]: r["response"]["status"] for r in page.events("Network.responseReceived")}
    requests = [r for r in page.events("Network.requestWillBeSent") if r["request"]["url"].endswith("/collect")]
    if not requests or any(r["requestId"] not in statuses for r in requests):
        return []
    return [
        (
            json.loads(page.send("Network.getRequestPostData", {"requestId": r["requestId"]})["postData"]),
            statuses[r["requestId"]],
        )
        for r in requests
    ]


def test_page_view_and_click_are_stored_for_the_visitor_in_the_browsers_cookie(
    stack: Stack, site: Site, browser: Browser
) -> None:
    # GIVEN a shop page that embeds the tag, opened by a browser with no cookies
    url = site.publish("/products/wool-scarf", shop_page(stack.gateway_url))
    with browser.new_page() as page:
        page.navigate(url)

        # WHEN the page view has been stored (so the server has set the visitor cookie)...
        (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
        cookie = wait_until(lambda: page.cookies().get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
        # ...and the visitor clicks "Add to cart", then leaves (pagehide sends the batch)
        page.click("#add-to-cart")
        page.navigate("about:blank")
        (add_to_cart,) = wait_until(lambda: events_named(stack, url, "add_to_cart"), "no add_to_cart stored")
        cookies = page.cookies()

    # THEN both events belong to the visitor the browser's cookie names
    assert cookies[VISITOR_COOKIE]["value"] == cookie["value"]
    assert page_view["visitor_id"]["S"] == cookie["value"]
    assert add_to_cart["visitor_id"]["S"] == cookie["value"]
    # AND the click carried its properties and the page's URL
    assert add_to_cart["props"]["M"] == {"sku": {"S": "wool-scarf"}}
    assert add_to_cart["url"]["S"] == url
    # AND the cookie is the server's: HttpOnly, Secure, SameSite=None, for the gateway's host
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "None")
    assert cookie["domain"] == "127.0.0.1"


def test_a_click_right_after_load_is_stored_for_the_same_new_visitor(
    stack: Stack, site: Site, browser: Browser
) -> None:
    # GIVEN a new visitor (no cookie) on a slow network, who clicks while the page view's
    # request is still on its way (so its answer, with the cookie, is not back yet)
    url = site.publish("/products/quick-click", shop_page(stack.gateway_url))
    with browser.new_page() as page:
        page.send("Network.enable")
        page.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        page.navigate(url)
        time.sleep(0.5)  # the tag sends the page view 200 ms after load
        page.click("#add-to-cart")
        page.evaluate("dmp.flush()")
        # WHEN both events have been stored
        (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
        (add_to_cart,) = wait_until(lambda: events_named(stack, url, "add_to_cart"), "no add_to_cart stored")
        cookie = wait_until(lambda: page.cookies().get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    # THEN the tag waited for the first answer's cookie: one visitor, not two
    assert page_view["visitor_id"]["S"] == add_to_cart["visitor_id"]["S"] == cookie["value"]


def test_consent_platform_refusing_storage_means_nothing_stored_and_no_cookie(
    stack: Stack, site: Site, browser: Browser
) -> None:
    # GIVEN a page whose consent platform says GDPR applies and the visitor consented
    # to our vendor for other purposes, but not purpose 1 (store/access on a device)
    tc = tc_string(purposes_consent={2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    url = site.publish("/consent/refused", shop_page(stack.gateway_url, cmp=tcf_cmp(gdpr_applies=True, tc=tc)))
    with browser.new_page() as page:
        page.send("Network.enable")

        # WHEN the page is loaded and the visitor clicks "Add to cart"
        page.navigate(url)
        page.click("#add-to-cart")
        page.evaluate("dmp.flush()")
        # ...and the server has answered every batch carrying the two events (it stores
        # before it answers; the quiet period catches any late request)
        wait_until(
            lambda: (
                {e["e"] for body, _ in collect_exchanges(page) for e in body["events"]} >= {"page_view", "add_to_cart"}
            ),
            "the tag did not send both events to /collect",
        )
        time.sleep(QUIET_PERIOD)
        exchanges = collect_exchanges(page)
        cookies = page.cookies()

    # THEN the tag passed the CMP's answer on with every batch, and each was answered 200
    assert [(body["gdpr"], body["gdpr_consent"], status) for body, status in exchanges] == [(1, tc, 200)] * len(
        exchanges
    )
    # AND the server stored nothing for the page and set no visitor cookie
    assert stack.stored_events(url) == []
    assert VISITOR_COOKIE not in cookies


def test_consent_platform_granting_storage_lets_the_page_view_be_stored(
    stack: Stack, site: Site, browser: Browser
) -> None:
    # GIVEN the same consent platform, but purpose 1 is granted to our vendor: the
    # control that shows the refusal above is about purpose 1 and nothing else
    tc = tc_string(purposes_consent={1, 2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    url = site.publish("/consent/granted", shop_page(stack.gateway_url, cmp=tcf_cmp(gdpr_applies=True, tc=tc)))
    with browser.new_page() as page:
        # WHEN the page is loaded
        page.navigate(url)
        # THEN the page view is stored for the visitor of the cookie the server set
        (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
        cookie = wait_until(lambda: page.cookies().get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    assert page_view["visitor_id"]["S"] == cookie["value"]
