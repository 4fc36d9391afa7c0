"""The tag (`GET /tag.js`) in a real browser against `dmp serve`: what a shop page sends
ends up in the events table under the visitor id of the browser's `dmp_uid` cookie, and a
consent platform (IAB TCF v2 or GPP) that refuses storage means nothing is stored and no
cookie is set.

The shop is served from http://127.0.0.1 and the gateway listens on 127.0.0.1 too: the
same site, and a host Chromium treats as potentially trustworthy, so it keeps the
server's `Secure; SameSite=None` cookie although the page is plain http. The stack allows
the shop's origin (CORS, as a deployment's `cors_origins`), so the tag can read `/collect`'s
answer when the page asks for our visitor id (`dmp.getVisitorId`, for Prebid).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

from functions.core.gpp import US_SECTIONS
from tests.unit.gpp_builder import gpp_string, us_section
from tests.unit.tcf_builder import tc_string

if TYPE_CHECKING:  # the fixtures' types; pytest itself loads conftest.py
    from playwright.sync_api import Page

    from tests.browser.conftest import Site, Stack

pytestmark = pytest.mark.slow

WAIT = 30.0  # the longest any single wait may take
QUIET_PERIOD = 1.0  # how long "nothing (more) is sent" is watched
VISITOR_COOKIE = "dmp_uid"
USNAT = 7  # the GPP section id of the US national privacy section
GppReadiness = Literal["registered", "after_load", "on_command"]


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


def tcf_cmp(*, gdpr_applies: bool, tc: str, on_command: bool = False) -> str:
    """A stand-in for an IAB TCF v2 consent platform: `__tcfapi('addEventListener')`
    answers asynchronously, as real ones do, with the visitor's stored choice; with
    `on_command`, only when the page calls `tcfCmpReady()` (the test decides when)."""
    tc_data = json.dumps({"gdprApplies": gdpr_applies, "tcString": tc, "eventStatus": "tcloaded", "listenerId": 1})
    answer = "window.tcfCmpReady = answer;" if on_command else "setTimeout(answer, 50);"
    return f"""<script>
  window.__tcfapi = function (command, version, callback) {{
    if (command !== "addEventListener") return;
    var answer = function () {{ callback({tc_data}, true); }};
    {answer}
  }};
</script>"""


def gpp_cmp(gpp: str, applicable_sections: list[int], *, ready: GppReadiness = "after_load") -> str:
    """A stand-in for an IAB GPP consent platform (GPP CMP API v1.1, as `@iabgpp/cmpapi`
    answers): `__gpp('addEventListener', callback)` calls back at once with a
    "listenerRegistered" event, and every event carries the platform's `pingData`.

    `ready` says when the signal becomes "ready" (with the visitor's string and applicable
    sections in `pingData`): "registered" — already when the listener is registered;
    "after_load" — once the page has loaded (so after the tag registered), announced by a
    "signalStatus" event whose `data` is "ready", as a CMP still loading does;
    "on_command" — the same, but only when the page calls `gppCmpReady()` (the test
    decides when)."""
    signal = {
        "signalStatus": "ready",
        "cmpStatus": "loaded",
        "gppString": gpp,
        "sectionList": applicable_sections,
        "applicableSections": applicable_sections,
    }
    waiting = {
        "signalStatus": "not ready",
        "cmpStatus": "loading",
        "gppString": "",
        "sectionList": [],
        "applicableSections": [-1],
    }
    initial = signal if ready == "registered" else waiting
    becomes_ready = {
        "registered": "",
        "after_load": 'window.addEventListener("load", function () { setTimeout(window.gppCmpReady, 0); });',
        "on_command": "",
    }[ready]
    return f"""<script>
  (function () {{
    var state = {json.dumps(initial)}, listeners = [];
    function pingData() {{
      return {{gppVersion: "1.1", cmpStatus: state.cmpStatus, cmpDisplayStatus: "hidden",
               signalStatus: state.signalStatus, supportedAPIs: ["2:tcfeuv2", "7:usnat"], cmpId: 0,
               sectionList: state.sectionList, applicableSections: state.applicableSections,
               gppString: state.gppString, parsedSections: {{}}}};
    }}
    function fire(listenerId, eventName, data) {{
      listeners[listenerId - 1]({{eventName: eventName, listenerId: listenerId, data: data, pingData: pingData()}}, true);
    }}
    window.__gpp = function (command, callback) {{
      if (command === "ping") {{ callback(pingData(), true); return; }}
      if (command !== "addEventListener") {{ if (callback) callback(null, false); return; }}
      listeners.push(callback);
      fire(listeners.length, "listenerRegistered", true);
    }};
    window.gppCmpReady = function () {{
      state = {json.dumps(signal)};
      for (var i = 1; i <= listeners.length; i++) fire(i, "signalStatus", "ready");
    }};
    {becomes_ready}
  }})();
</script>"""


def gpp10_cmp(gpp: str, applicable_sections: list[int]) -> str:
    """A stand-in for a GPP CMP API v1.0 platform, as many sites still run: `pingData` has
    no signal status and no string; the platform is ready once its `cmpStatus` is "loaded"
    (announced by a "cmpStatus" event after the page loads), and `getGPPData` answers the
    string and applicable sections (returned, and passed to a callback if one is given)."""
    data = {"gppString": gpp, "applicableSections": applicable_sections, "gppVersion": "1.0"}
    return f"""<script>
  (function () {{
    var status = "loading", listeners = [];
    function pingData() {{
      return {{gppVersion: "1.0", cmpStatus: status, cmpDisplayStatus: "hidden", apiSupport: ["usnat"], cmpId: 0}};
    }}
    function fire(listenerId, eventName, data) {{
      listeners[listenerId - 1]({{eventName: eventName, listenerId: listenerId, data: data, pingData: pingData()}}, true);
    }}
    window.__gpp = function (command, callback) {{
      if (command === "ping") {{ if (callback) callback(pingData(), true); return pingData(); }}
      if (command === "getGPPData") {{
        var answer = status === "loaded" ? {json.dumps(data)} : null;
        if (callback) callback(answer, answer !== null);
        return answer;
      }}
      if (command !== "addEventListener") {{ if (callback) callback(null, false); return null; }}
      listeners.push(callback);
      fire(listeners.length, "listenerRegistered", true);
    }};
    window.addEventListener("load", function () {{
      setTimeout(function () {{
        status = "loaded";
        for (var i = 1; i <= listeners.length; i++) fire(i, "cmpStatus", "loaded");
      }}, 0);
    }});
  }})();
</script>"""


def usnat_gpp(**fields: int) -> str:
    """A GPP string with one US national section (version 1) holding `fields`."""
    return gpp_string([(USNAT, us_section(US_SECTIONS[USNAT].fields, fields, version=1))])


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


def cookies(page: Page) -> dict[str, Any]:
    """The cookies this page's browser context holds, by name."""
    return {cookie["name"]: cookie for cookie in page.context.cookies()}


class TagRequests:
    """Every request a page's tag makes to `/collect` or `/p.gif`, and the statuses of their
    answers, seen through a DevTools session of the page's own. (Playwright's
    `Request.post_data` is empty in Chromium when the body is a Blob, as the tag's
    sendBeacon body is; DevTools' `Network.getRequestPostData` has it.)"""

    def __init__(self, page: Page) -> None:
        self._page = page
        self._devtools = page.context.new_cdp_session(page)
        self._sent: list[dict[str, Any]] = []  # DevTools' requestWillBeSent events
        self._statuses: dict[str, int] = {}  # requestId -> status of the answer
        self._devtools.on("Network.requestWillBeSent", self._on_request)
        self._devtools.on("Network.responseReceived", self._on_response)
        self._devtools.send("Network.enable")

    def _on_request(self, event: dict[str, Any]) -> None:
        if urlsplit(event["request"]["url"]).path in ("/collect", "/p.gif"):
            self._sent.append(event)

    def _on_response(self, event: dict[str, Any]) -> None:
        self._statuses[event["requestId"]] = event["response"]["status"]

    def sent(self, path: str | None = None) -> list[dict[str, Any]]:
        """The requests sent so far (to `path` only, if given). Waits a moment first, so
        that Playwright delivers the DevTools events that have arrived meanwhile."""
        self._page.wait_for_timeout(100)
        return [e for e in self._sent if path is None or urlsplit(e["request"]["url"]).path == path]

    def collect_exchanges(self) -> list[tuple[dict[str, Any], int]]:
        """(JSON body, response status) of every POST /collect sent, once all of them have
        been answered; [] while one is still in flight."""
        requests = self.sent("/collect")
        if not requests or any(e["requestId"] not in self._statuses for e in requests):
            return []
        return [
            (
                json.loads(
                    self._devtools.send("Network.getRequestPostData", {"requestId": e["requestId"]})["postData"]
                ),
                self._statuses[e["requestId"]],
            )
            for e in requests
        ]

    def pixel_queries(self) -> list[dict[str, str]]:
        """The query parameters of every GET /p.gif sent."""
        queries = [parse_qs(urlsplit(e["request"]["url"]).query) for e in self.sent("/p.gif")]
        return [{name: values[0] for name, values in query.items()} for query in queries]


def sent_events(exchanges: list[tuple[dict[str, Any], int]]) -> set[str]:
    return {event["e"] for body, _ in exchanges for event in body["events"]}


def test_page_view_and_click_are_stored_for_the_visitor_in_the_browsers_cookie(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN a shop page that embeds the tag, opened by a browser with no cookies
    url = site.publish("/products/wool-scarf", shop_page(stack.gateway_url))
    page.goto(url)

    # WHEN the page view has been stored (so the server has set the visitor cookie)...
    (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    cookie = wait_until(lambda: cookies(page).get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    # ...and the visitor clicks "Add to cart", then leaves (pagehide sends the batch)
    page.click("#add-to-cart")
    page.goto("about:blank")
    (add_to_cart,) = wait_until(lambda: events_named(stack, url, "add_to_cart"), "no add_to_cart stored")
    cookies_after = cookies(page)

    # THEN both events belong to the visitor the browser's cookie names
    assert cookies_after[VISITOR_COOKIE]["value"] == cookie["value"]
    assert page_view["visitor_id"]["S"] == cookie["value"]
    assert add_to_cart["visitor_id"]["S"] == cookie["value"]
    # AND the click carried its properties and the page's URL
    assert add_to_cart["props"]["M"] == {"sku": {"S": "wool-scarf"}}
    assert add_to_cart["url"]["S"] == url
    # AND the cookie is the server's: HttpOnly, Secure, SameSite=None, for the gateway's host
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "None")
    assert cookie["domain"] == "127.0.0.1"


def test_a_click_right_after_load_is_stored_for_the_same_new_visitor(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN a new visitor (no cookie) on a slow network, who clicks while the page view's
    # request is still on its way (so its answer, with the cookie, is not back yet)
    url = site.publish("/products/quick-click", shop_page(stack.gateway_url))
    devtools = page.context.new_cdp_session(page)
    devtools.send("Network.enable")
    devtools.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    with page.expect_request(lambda request: urlsplit(request.url).path == "/collect", timeout=WAIT * 1000):
        page.goto(url)  # the tag sends the page view 200 ms after load
    page.click("#add-to-cart")
    page.evaluate("dmp.flush()")
    # WHEN both events have been stored
    (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    (add_to_cart,) = wait_until(lambda: events_named(stack, url, "add_to_cart"), "no add_to_cart stored")
    cookie = wait_until(lambda: cookies(page).get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    # THEN the tag waited for the first answer's cookie: one visitor, not two
    assert page_view["visitor_id"]["S"] == add_to_cart["visitor_id"]["S"] == cookie["value"]


def test_consent_platform_refusing_storage_means_nothing_stored_and_no_cookie(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN a page whose consent platform says GDPR applies and the visitor consented
    # to our vendor for other purposes, but not purpose 1 (store/access on a device)
    tc = tc_string(purposes_consent={2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    url = site.publish("/consent/refused", shop_page(stack.gateway_url, cmp=tcf_cmp(gdpr_applies=True, tc=tc)))
    requests = TagRequests(page)

    # WHEN the page is loaded and the visitor clicks "Add to cart"
    page.goto(url)
    page.click("#add-to-cart")
    page.evaluate("dmp.flush()")
    # ...and the server has answered every batch carrying the two events (it stores
    # before it answers; the quiet period catches any late request)
    wait_until(
        lambda: sent_events(requests.collect_exchanges()) >= {"page_view", "add_to_cart"},
        "the tag did not send both events to /collect",
    )
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    exchanges = requests.collect_exchanges()

    # THEN the tag passed the CMP's answer on with every batch, and each was answered 200
    assert [(body["gdpr"], body["gdpr_consent"], status) for body, status in exchanges] == [(1, tc, 200)] * len(
        exchanges
    )
    # AND the server stored nothing for the page and set no visitor cookie
    assert stack.stored_events(url) == []
    assert VISITOR_COOKIE not in cookies(page)


def test_consent_platform_granting_storage_lets_the_page_view_be_stored(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN the same consent platform, but purpose 1 is granted to our vendor: the
    # control that shows the refusal above is about purpose 1 and nothing else
    tc = tc_string(purposes_consent={1, 2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    url = site.publish("/consent/granted", shop_page(stack.gateway_url, cmp=tcf_cmp(gdpr_applies=True, tc=tc)))
    # WHEN the page is loaded
    page.goto(url)
    # THEN the page view is stored for the visitor of the cookie the server set
    (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    cookie = wait_until(lambda: cookies(page).get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    assert page_view["visitor_id"]["S"] == cookie["value"]


# --- GPP (window.__gpp) -----------------------------------------------------------


def test_gpp_platform_recording_an_opt_out_of_sale_means_nothing_stored_and_no_cookie(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN a page whose GPP consent platform applies the US national section, in which
    # the visitor opted out of the sale of their data
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=1)
    url = site.publish("/gpp/opted-out", shop_page(stack.gateway_url, cmp=gpp_cmp(gpp, [USNAT])))
    requests = TagRequests(page)

    # WHEN the page is loaded and the server has answered the page view's batch (the
    # quiet period catches any late request)
    page.goto(url)
    wait_until(lambda: "page_view" in sent_events(requests.collect_exchanges()), "no page_view sent to /collect")
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    exchanges = requests.collect_exchanges()

    # THEN the tag passed the platform's string and applicable sections on, answered 200
    assert [(body.get("gpp"), body.get("gpp_sid"), status) for body, status in exchanges] == [
        (gpp, str(USNAT), 200)
    ] * len(exchanges)
    # AND the server stored nothing for the page and set no visitor cookie
    assert stack.stored_events(url) == []
    assert VISITOR_COOKIE not in cookies(page)


def test_gpp_platform_without_an_opt_out_lets_the_page_view_be_stored(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN the same platform, but the visitor did not opt out of sale: the control that
    # shows the refusal above is about the opt-out and nothing else
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=2)
    url = site.publish("/gpp/not-opted-out", shop_page(stack.gateway_url, cmp=gpp_cmp(gpp, [USNAT])))
    requests = TagRequests(page)
    # WHEN the page is loaded
    page.goto(url)
    # THEN the page view is stored for the visitor of the cookie the server set
    (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    cookie = wait_until(lambda: cookies(page).get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    assert page_view["visitor_id"]["S"] == cookie["value"]
    # AND it went with the platform's string
    ((body, _),) = wait_until(requests.collect_exchanges, "no answered request to /collect")
    assert (body.get("gpp"), body.get("gpp_sid")) == (gpp, str(USNAT))


@pytest.mark.parametrize(("sale_opt_out", "stored"), [(1, False), (2, True)])
def test_a_gpp_1_0_platform_is_read_once_loaded(
    stack: Stack, site: Site, page: Page, sale_opt_out: int, stored: bool
) -> None:
    # GIVEN a page whose GPP 1.0 platform (no signal status, the string from getGPPData)
    # applies the US national section
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=sale_opt_out)
    url = site.publish(f"/gpp10/{sale_opt_out}", shop_page(stack.gateway_url, cmp=gpp10_cmp(gpp, [USNAT])))
    requests = TagRequests(page)
    # WHEN the page is loaded and the platform reports "loaded"
    page.goto(url)
    # THEN the page view goes with the platform's string and applicable sections
    ((body, status),) = wait_until(requests.collect_exchanges, "no answered request to /collect")
    assert (body.get("gpp"), body.get("gpp_sid"), status) == (gpp, str(USNAT), 200)
    # AND it is stored unless the visitor opted out of sale
    if stored:
        wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    else:
        page.wait_for_timeout(QUIET_PERIOD * 1000)
        assert stack.stored_events(url) == []
        assert VISITOR_COOKIE not in cookies(page)


def test_tag_sends_nothing_until_the_gpp_platform_is_ready_then_sends_its_string(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN a page whose GPP consent platform has registered the tag's listener but is
    # not ready yet (it has not read the visitor's choice)
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=2)
    url = site.publish("/gpp/late", shop_page(stack.gateway_url, cmp=gpp_cmp(gpp, [USNAT], ready="on_command")))
    requests = TagRequests(page)

    # WHEN the page is loaded and the tag is asked to send its queue
    page.goto(url)
    page.evaluate("dmp.flush()")
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    # THEN nothing has been sent, neither to /collect nor to the pixel
    assert requests.sent() == []

    # WHEN the platform becomes ready
    page.evaluate("gppCmpReady()")
    # THEN the page view goes with its string and is stored
    ((body, status),) = wait_until(requests.collect_exchanges, "no answered request to /collect")
    assert ([e["e"] for e in body["events"]], body.get("gpp"), body.get("gpp_sid"), status) == (
        ["page_view"],
        gpp,
        str(USNAT),
        200,
    )
    wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")


@pytest.mark.parametrize("late", ["tcf", "gpp"])
def test_with_tcf_and_gpp_platforms_the_tag_waits_for_both(stack: Stack, site: Site, page: Page, late: str) -> None:
    # GIVEN a page with both a TCF platform granting our vendor what it needs and a GPP
    # platform without an opt-out, one of them ready at once and the other (`late`) not
    tc = tc_string(purposes_consent={1, 2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=2)
    cmp = tcf_cmp(gdpr_applies=True, tc=tc, on_command=late == "tcf") + gpp_cmp(
        gpp, [USNAT], ready="on_command" if late == "gpp" else "registered"
    )
    url = site.publish(f"/gpp/both-{late}-late", shop_page(stack.gateway_url, cmp=cmp))
    requests = TagRequests(page)

    # WHEN the page is loaded and the tag is asked to send its queue
    page.goto(url)
    page.evaluate("dmp.flush()")
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    # THEN nothing has been sent while one platform has not answered
    assert requests.sent() == []

    # WHEN that platform answers too
    page.evaluate(f"{late}CmpReady()")
    # THEN the page view goes with both platforms' strings and is stored
    ((body, status),) = wait_until(requests.collect_exchanges, "no answered request to /collect")
    assert (body.get("gdpr"), body.get("gdpr_consent"), body.get("gpp"), body.get("gpp_sid"), status) == (
        1,
        tc,
        gpp,
        str(USNAT),
        200,
    )
    wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")


def test_without_fetch_or_beacon_the_pixel_carries_the_gpp_string(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN a browser without fetch and sendBeacon, on a page whose GPP platform records
    # an opt-out of sale in the US national section
    gpp = usnat_gpp(SaleOptOutNotice=1, SaleOptOut=1)
    no_fetch = "<script>window.fetch = undefined; navigator.sendBeacon = undefined;</script>"
    url = site.publish("/gpp/pixel", shop_page(stack.gateway_url, cmp=no_fetch + gpp_cmp(gpp, [USNAT])))
    requests = TagRequests(page)

    # WHEN the page is loaded and the page view has gone out as a pixel
    page.goto(url)
    (query,) = wait_until(requests.pixel_queries, "no pixel request")
    page.wait_for_timeout(QUIET_PERIOD * 1000)

    # THEN the pixel carried the platform's string and applicable sections
    assert (query["e"], query.get("gpp"), query.get("gpp_sid")) == ("page_view", gpp, str(USNAT))
    # AND the server stored nothing for the page and set no visitor cookie
    assert stack.stored_events(url) == []
    assert VISITOR_COOKIE not in cookies(page)


# --- dmp.getVisitorId: our visitor id for the page's header bidding (Prebid) -----------

EID_SOURCE = "dmp.example"


def prebid_page(gateway_url: str, *, cmp: str = "") -> str:
    """A page with header bidding: the README's snippet hands our visitor id to Prebid's
    pubProvidedId through `dmp.getVisitorId`, queued on `dmp.que` before the (async) tag
    has loaded. `window.visitorIds` records every id the callback got. Prebid.js is a
    stand-in: `pbjs.que`, run once it has "loaded", `setConfig` and `getConfig`."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Front page</title>{cmp}
<script>
  window.visitorIds = [];
  window.dmp = window.dmp || {{ que: [] }};
  window.pbjs = window.pbjs || {{ que: [] }};
  dmp.que.push(function () {{
    dmp.getVisitorId(function (uid) {{
      window.visitorIds.push(uid);
      if (!uid) return;
      pbjs.que.push(function () {{
        pbjs.setConfig({{ userSync: {{ userIds: [{{ name: "pubProvidedId", params: {{
          eids: [{{ source: "{EID_SOURCE}", uids: [{{ id: uid, atype: 1 }}] }}] }} }}] }} }});
      }});
    }});
  }});
</script>
<script>
  // Prebid.js, as far as the page sees it: a command queue run once it has loaded.
  setTimeout(function () {{
    var config = {{}}, waiting = pbjs.que;
    pbjs.setConfig = function (options) {{ for (var k in options) config[k] = options[k]; }};
    pbjs.getConfig = function () {{ return config; }};
    pbjs.que = {{ push: function (command) {{ command(); }} }};
    for (var i = 0; i < waiting.length; i++) waiting[i]();
  }}, 0);
</script>
<script async src="{gateway_url}/tag.js"></script>
</head>
<body><h1>Front page</h1></body></html>"""


def visitor_ids(page: Page) -> list[str | None]:
    return list(page.evaluate("window.visitorIds"))


def prebid_user_ids(page: Page) -> list[Any]:
    """The `userSync.userIds` the page gave Prebid ([] when none)."""
    return list(page.evaluate("(pbjs.getConfig && (pbjs.getConfig().userSync || {}).userIds) || []"))


def later_visitor_id(page: Page) -> str | None:
    """What `dmp.getVisitorId` answers a caller that asks after the id is known."""
    answer: str | None = page.evaluate("new Promise(function (resolve) { dmp.getVisitorId(resolve); })")
    return answer


def test_prebid_gets_our_visitor_id_the_one_of_the_browsers_cookie(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN a page whose Prebid setup asks the tag for our visitor id, opened by a browser
    # with no cookies
    url = site.publish("/prebid/front", prebid_page(stack.gateway_url))
    # WHEN the page is loaded and the tag's first batch has been answered
    page.goto(url)
    (uid,) = wait_until(lambda: visitor_ids(page), "dmp.getVisitorId did not call back")
    cookie = wait_until(lambda: cookies(page).get(VISITOR_COOKIE), "no dmp_uid cookie in the browser")
    # THEN the callback got the id of the browser's (HttpOnly) cookie, once
    assert uid == cookie["value"]
    # AND Prebid was given it as a pubProvidedId eid
    user_ids = wait_until(lambda: prebid_user_ids(page), "Prebid was given no user id")
    assert user_ids == [
        {"name": "pubProvidedId", "params": {"eids": [{"source": EID_SOURCE, "uids": [{"id": uid, "atype": 1}]}]}}
    ]
    # AND it is the visitor the page view was stored for
    (page_view,) = wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    assert page_view["visitor_id"]["S"] == uid
    # AND a later caller gets the same id
    assert later_visitor_id(page) == uid
    assert visitor_ids(page) == [uid]


def test_a_returning_visitor_gets_the_same_id_on_the_next_page(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN a visitor whose first page gave Prebid our id
    first = site.publish("/prebid/first", prebid_page(stack.gateway_url))
    page.goto(first)
    (uid,) = wait_until(lambda: visitor_ids(page), "dmp.getVisitorId did not call back on the first page")
    # WHEN the visitor opens another page
    second = site.publish("/prebid/second", prebid_page(stack.gateway_url))
    page.goto(second)
    # THEN that page's Prebid gets the same id, the cookie's
    assert wait_until(lambda: visitor_ids(page), "dmp.getVisitorId did not call back on the second page") == [uid]
    assert cookies(page)[VISITOR_COOKIE]["value"] == uid


def test_when_consent_is_refused_prebid_gets_no_id(stack: Stack, site: Site, page: Page) -> None:
    # GIVEN a page with the Prebid setup whose consent platform refuses purpose 1 to our vendor
    tc = tc_string(purposes_consent={2, 3, 4, 7}, vendors={stack.tcf_vendor_id})
    url = site.publish("/prebid/refused", prebid_page(stack.gateway_url, cmp=tcf_cmp(gdpr_applies=True, tc=tc)))
    requests = TagRequests(page)
    # WHEN the page is loaded and the server has answered the tag's batch
    page.goto(url)
    wait_until(lambda: "page_view" in sent_events(requests.collect_exchanges()), "no page_view sent to /collect")
    # THEN the callback got null: nothing is stored, so there is no id to share
    assert wait_until(lambda: visitor_ids(page), "dmp.getVisitorId did not call back") == [None]
    assert later_visitor_id(page) is None
    # AND Prebid was given no id, no cookie was set and nothing was stored
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    assert prebid_user_ids(page) == []
    assert VISITOR_COOKIE not in cookies(page)
    assert stack.stored_events(url) == []


def on_an_origin_not_allowed(url: str) -> str:
    """The same page from http://localhost: another origin, which the stack's CORS origins
    (as a deployment's `cors_origins`) do not list."""
    return url.replace("://127.0.0.1:", "://localhost:", 1)


def test_a_page_that_does_not_ask_for_the_id_sends_as_before_from_any_origin(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN the shop page, which never calls dmp.getVisitorId, on an origin CORS does not allow
    url = on_an_origin_not_allowed(site.publish("/prebid/never-asks", shop_page(stack.gateway_url)))
    requests = TagRequests(page)
    # WHEN it is loaded and its page view stored
    page.goto(url)
    wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
    page.wait_for_timeout(QUIET_PERIOD * 1000)
    # THEN its batch went once and was answered: the tag did not try to read the answer
    # (which CORS would have refused, and the batch would have gone again)
    assert [(sent_events([exchange]), exchange[1]) for exchange in requests.collect_exchanges()] == [
        ({"page_view"}, 200)
    ]
    assert requests.sent("/p.gif") == []
    # AND a caller after the first answer gets null: it was not read
    assert later_visitor_id(page) is None


def test_asking_from_an_origin_cors_does_not_allow_calls_back_null_and_loses_no_event(
    stack: Stack, site: Site, page: Page
) -> None:
    # GIVEN the Prebid page on an origin the stack's CORS origins do not list
    url = on_an_origin_not_allowed(site.publish("/prebid/not-allowed", prebid_page(stack.gateway_url)))
    # WHEN it is loaded
    page.goto(url)
    # THEN the tag cannot read the answer: the callback gets null, Prebid no id
    assert wait_until(lambda: visitor_ids(page), "dmp.getVisitorId did not call back") == [None]
    assert prebid_user_ids(page) == []
    # AND the page view is stored all the same (the batch goes again by beacon)
    wait_until(lambda: events_named(stack, url, "page_view"), "no page_view stored")
