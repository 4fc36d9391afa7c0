"""`dmp demo`: a shop's Christmas campaign, end to end on the local stack.

Visitors from several cities browse the shop over four weeks — new and returning, on
desktops, phones and tablets — and their browsers send pixel hits and `/collect`
batches over HTTP to the local gateway, which stamps each request with the simulated
time of the visit. The ad platform `demo-dsp` syncs ids with a third of the browsers
as they browse (its sync pixel: we redirect to it with our id, it calls back with its
own). Then a build runs, and the ad platform looks visitors up with its partner key, by
our ids and by its own, in both answer formats, and fetches its export.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from dmp.gateway import SIMULATED_TIME_HEADER
from functions.core.hits import DEVICE_TYPES

SHOP = "https://shop.example"
DSP = "demo-dsp"
# How long the demo waits for a hit to reach lookups through the stream (seconds).
REAL_TIME_WAIT_SECONDS = 30
DSP_SYNC_URL = "https://sync.demo-dsp.example/match?dmp_uid={uid}&gdpr={gdpr}&gdpr_consent={gdpr_consent}"
SEGMENTS_DIR = Path(__file__).resolve().parent.parent / "segments"
SOURCES_DIR = Path(__file__).resolve().parent.parent / "sources"
# The retailer whose CRM shares loyalty tiers with us (sources/harbor-crm.yaml): it syncs
# its customer ids with ours through its own sync pixel, then drops its CRM file.
RETAILER = "harbor-retail"
INTERESTS = ["outdoor", "cooking", "travel", "fashion", "gaming"]
CITIES = [  # country, region, city, weight
    ("GB", "ENG", "London", 35),
    ("GB", "ENG", "Manchester", 15),
    ("GB", "SCT", "Edinburgh", 10),
    ("FR", "IDF", "Paris", 15),
    ("DE", "BE", "Berlin", 10),
    ("US", "NY", "New York", 15),
]
USER_AGENTS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
}
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PRODUCTS = ["wool-scarf", "advent-calendar", "tree-lights", "gift-box", "ski-gloves"]
POSTS = ["gift-guide-2026", "wrapping-ideas", "christmas-cocktails", "sustainable-gifts"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as an HTTPError, not followed (the sync's target is the
    DSP's server, not ours)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Browser:
    """One visitor's browser: its user agent, location and the cookie the server set."""

    gateway: str
    device: str
    geo: tuple[str, str, str]
    cookie: str | None = None
    referrer: str = ""
    dsp_id: str | None = None
    sent: Counter[str] = field(default_factory=Counter)

    def _headers(self, at: datetime, user_agent: str | None = None) -> dict[str, str]:
        country, region, city = self.geo
        headers = {
            "User-Agent": user_agent or USER_AGENTS[self.device],
            "CloudFront-Viewer-Country": country,
            "CloudFront-Viewer-Country-Region": region,
            "CloudFront-Viewer-City": city,
            SIMULATED_TIME_HEADER: str(int(at.timestamp() * 1000)),
        }
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def _send(self, request: urllib.request.Request, *, follow_redirects: bool = True) -> bytes:
        opener = urllib.request.build_opener() if follow_redirects else urllib.request.build_opener(_NoRedirect)
        with opener.open(request, timeout=30) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                self.cookie = header.split(";", 1)[0]  # the browser keeps dmp_uid
            return response.read()

    def view(self, path: str, at: datetime, user_agent: str | None = None) -> None:
        url = SHOP + path
        query = urlencode({"e": "page_view", "url": url, "ref": self.referrer})
        self._send(urllib.request.Request(f"{self.gateway}/p.gif?{query}", headers=self._headers(at, user_agent)))
        self.referrer = url
        self.sent["page_view"] += 1

    def sync(self, at: datetime) -> str | None:
        """The DSP's sync pixel on the page: we redirect to its registered URL with our id
        (never a URL from the request), and its match endpoint calls back with its own id
        for this browser. Returns the DSP's id."""
        request = urllib.request.Request(f"{self.gateway}/sync?partner={DSP}", headers=self._headers(at))
        try:
            self._send(request, follow_redirects=False)
            return None  # no redirect: the visitor said no, nothing to sync
        except urllib.error.HTTPError as redirect:
            if redirect.code != 302:
                raise
            location = redirect.headers["Location"]
            for header in redirect.headers.get_all("Set-Cookie") or []:
                self.cookie = header.split(";", 1)[0]
        our_id = parse_qs(urlsplit(location).query)["dmp_uid"][0]
        dsp_id = "dsp-" + hashlib.sha256(our_id.encode()).hexdigest()[:20]
        query = urlencode({"partner": DSP, "puid": dsp_id})
        self._send(urllib.request.Request(f"{self.gateway}/sync?{query}", headers=self._headers(at)))
        self.sent["sync"] += 1
        return dsp_id

    def track(self, name: str, props: dict[str, str], at: datetime) -> None:
        """What the tag's `dmp.track()` sends with sendBeacon: a text/plain JSON batch."""
        body = json.dumps({"events": [{"e": name, "url": self.referrer, "props": props}]}).encode()
        headers = {**self._headers(at), "Content-Type": "text/plain;charset=UTF-8"}
        self._send(urllib.request.Request(f"{self.gateway}/collect", data=body, headers=headers, method="POST"))
        self.sent[name] += 1


def _visit(browser: Browser, start: datetime, rng: random.Random, buyer: bool) -> None:
    at = start
    browser.referrer = rng.choice(["https://www.google.com/", "https://news.example/", ""])
    browser.view(rng.choice(["/", "/", f"/blog/{rng.choice(POSTS)}"]), at)
    for _ in range(rng.randint(1, 4)):
        at += timedelta(minutes=rng.randint(1, 6))
        page = rng.choices(
            ["/pricing", f"/products/{rng.choice(PRODUCTS)}", f"/blog/{rng.choice(POSTS)}", "/"], [3, 4, 2, 1]
        )[0]
        browser.view(page, at)
    if buyer or rng.random() < 0.35:
        at += timedelta(minutes=2)
        sku = rng.choice(PRODUCTS)
        browser.view(f"/products/{sku}", at)
        browser.track("add_to_cart", {"sku": sku, "price": str(rng.choice([12, 25, 40, 60]))}, at)
        browser.view("/cart", at + timedelta(seconds=30))
        if buyer:
            browser.view("/checkout", at + timedelta(minutes=1))
            browser.track("purchase", {"sku": sku}, at + timedelta(minutes=2))


def _simulate(gateway: str, index: int, now: datetime, seed: int) -> Browser:
    rng = random.Random(seed * 100_003 + index)
    geo = rng.choices([c[:3] for c in CITIES], [c[3] for c in CITIES])[0]
    device = rng.choices(DEVICE_TYPES, [5, 4, 1])[0]
    browser = Browser(gateway, device, geo)
    kind = rng.choices(["new", "returning", "lapsed"], [4, 5, 1])[0]
    if kind == "new":
        starts = [now - timedelta(days=rng.uniform(0.1, 5))]
    elif kind == "returning":
        starts = sorted(now - timedelta(days=rng.uniform(0.1, 28)) for _ in range(rng.randint(2, 5)))
    else:
        starts = sorted(now - timedelta(days=rng.uniform(18, 40)) for _ in range(rng.randint(1, 3)))
    for number, start in enumerate(starts):
        _visit(browser, start, rng, buyer=(kind == "lapsed" and number == len(starts) - 1))
        if number == 0 and index % 3 == 0:
            browser.dsp_id = browser.sync(start + timedelta(minutes=1))
    return browser


def _imports(gateway: str, target: Any, browsers: list[Browser], now: datetime, seed: int, out: Any) -> None:
    """Second- and third-party data: Harbor Retail syncs its customer ids with half the
    browsers (its sync pixel on its own site) and drops its CRM tiers, keyed by its ids;
    an interest provider scores visitors by our ids. Both files go where a partner's drop
    goes, `imports/<source>/`, and the local stack's importer runs on their S3 events."""
    import tempfile

    from dmp.imports import import_file
    from functions.core import layout
    from functions.core.sources import load_sources
    from functions.core.storage.bucket import SegmentsBucket
    from functions.core.storage.partners import PartnerProfile, PartnerStore

    rng = random.Random(seed + 13)
    bucket = SegmentsBucket(target.bucket)
    sources = load_sources({str(p): p.read_text() for p in sorted(SOURCES_DIR.glob("*.y*ml"))})
    for source in sources:
        bucket.put_json(layout.source_key(source.id), source.to_document())
    out(f"\nPushed {len(sources)} data sources from {SOURCES_DIR.name}/: {', '.join(s.id for s in sources)}")
    PartnerStore(target.partners_table).put_profile(
        PartnerProfile(name=RETAILER, sync=True, updated_at=now.isoformat())
    )
    crm_rows, interest_rows = ["id,tier,lifetime_value,newsletter"], []
    for index, browser in enumerate(b for b in browsers if b.cookie):
        assert browser.cookie is not None
        uid = browser.cookie.split("=", 1)[1]
        if index % 2 == 0:
            customer = "hr-" + hashlib.sha256(uid.encode()).hexdigest()[:12]
            query = urlencode({"partner": RETAILER, "puid": customer})
            browser._send(urllib.request.Request(f"{gateway}/sync?{query}", headers=browser._headers(now)))
            tier = rng.choices(["bronze", "silver", "gold"], [5, 3, 2])[0]
            crm_rows.append(f"{customer},{tier},{rng.randint(20, 2000)},{rng.choice(['true', 'false'])}")
        if rng.random() < 0.6:
            traits = {"interest": rng.choice(INTERESTS), "in_market_travel": rng.random() < 0.3}
            interest_rows.append(json.dumps({"id": uid, "traits": traits}))
    # Customers Harbor never synced with us, and visitors the provider knows and we never saw.
    crm_rows += [f"hr-offline-{n:04d},gold,500,false" for n in range(5)]
    interest_rows += [json.dumps({"id": f"provider-only-{n:04d}", "traits": {"interest": "travel"}}) for n in range(3)]
    with tempfile.TemporaryDirectory() as folder:
        crm = Path(folder) / "crm-tiers-2026-w48.csv"
        crm.write_text("\n".join(crm_rows) + "\n")
        interests = Path(folder) / "interests-2026-11-28.jsonl.gz"
        interests.write_bytes(gzip.compress(("\n".join(interest_rows) + "\n").encode()))
        for path, source_id in ((crm, "harbor-crm"), (interests, "interest-graph")):
            report = import_file(path, source_id, target, wait_seconds=120)
            if report is None or report.get("status") != "done":
                raise DemoFailure(f"the import of {path.name} did not finish: {report}")
            out(
                f"  {source_id}: {report['rows']} rows, {report['stored']} stored, "
                f"{report['unresolved']} unresolved, {report['rejected_rows']} rejected"
            )


def _cart_abandoner_in_real_time(gateway: str, key: str, out: Any) -> None:
    """A new visitor adds to cart after the build, and is a cart abandoner for the ad
    platform within seconds: the stream's evaluator, not a build, put it there."""
    shopper = Browser(gateway, "desktop", CITIES[0][:3])
    shopper.view("/products/advent-calendar", datetime.now(UTC))
    sent_at = time.monotonic()
    shopper.track("add_to_cart", {"sku": "advent-calendar"}, datetime.now(UTC))
    if not shopper.cookie:
        raise DemoFailure("the shopper got no visitor cookie")
    uid = shopper.cookie.split("=", 1)[1]
    segments: list[str] = []
    while time.monotonic() - sent_at < REAL_TIME_WAIT_SECONDS:
        status, answer = _call(f"{gateway}/v1/users/{uid}/segments", key)
        _expect(status, answer, "GET /v1/users/{uid}/segments")
        segments = [s["id"] for s in answer.get("segments", [])]
        if "cart-abandoners" in segments:
            break
        time.sleep(0.1)
    else:
        raise DemoFailure(f"the shopper's add_to_cart did not reach lookups in {REAL_TIME_WAIT_SECONDS} s")
    out(
        f"\nA new visitor adds to cart; {time.monotonic() - sent_at:.1f} s later, with no build, "
        f"'{DSP}' sees it in: {', '.join(segments)}"
    )


def _call(url: str, key: str | None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class DemoFailure(RuntimeError):
    pass


def _partner_ids_and_export(gateway: str, key: str, members: list[str], synced: dict[str, str], out: Any) -> None:
    """The ad platform looks visitors up by its own ids (as a bid request carries them),
    then fetches its export of the build through the pre-signed URLs."""
    dsp_ids = [synced[uid] for uid in members if uid in synced][:2] + [
        v for u, v in synced.items() if u not in members
    ][:1]
    if not dsp_ids:
        raise DemoFailure("no synced browser to look up by the ad platform's own id")
    out(f"\n'{DSP}' looks visitors up by its own ids (from ID sync):")
    status, answer = _call(f"{gateway}/v1/users/{dsp_ids[0]}/segments?id_type=partner", key)
    _expect(status, answer, "GET /v1/users/{id}/segments?id_type=partner")
    out(f"GET /v1/users/{dsp_ids[0]}/segments?id_type=partner -> {status}\n  {json.dumps(answer)}")
    status, answer = _call(f"{gateway}/v1/lookup", key, {"uids": dsp_ids, "id_type": "partner"})
    _expect(status, answer, "POST /v1/lookup (partner ids)")
    out(f"POST /v1/lookup {len(dsp_ids)} of its ids -> {status}")
    for result in answer.get("results", []):
        out(f"  {result['uid']}: {', '.join(s['id'] for s in result['segments']) or '(none)'}")
    status, export = _call(f"{gateway}/v1/exports/latest", key)
    _expect(status, export, "GET /v1/exports/latest")
    out(
        f"GET /v1/exports/latest -> {status}: build {export['build_id']}, full {export['full']['rows']} rows, "
        f"delta {export['delta']['rows']} rows"
    )
    with urllib.request.urlopen(export["full"]["url"], timeout=30) as response:
        lines = gzip.decompress(response.read()).decode().splitlines()
    if len(lines) - 1 != export["full"]["rows"]:
        raise DemoFailure(f"the full export has {len(lines) - 1} rows, latest.json says {export['full']['rows']}")
    with_ids = sum(1 for line in lines[1:] if line.split(",")[1])
    out(f"  full.csv.gz: {lines[0]}; {with_ids} of {len(lines) - 1} rows carry the platform's own id")
    for line in [line for line in lines[1:] if line.split(",")[1]][:2]:
        out(f"    {line}")


def _expect(status: int, answer: Any, what: str) -> Any:
    if status != 200:
        raise DemoFailure(f"{what} answered {status}: {json.dumps(answer)}")
    return answer


def run_demo(visitors: int = 120, seed: int = 2026, out: Any = print) -> int:
    try:
        return _run(visitors, seed, out)
    except DemoFailure as failure:
        out(f"\nDemo failed: {failure}")
        return 1


def _run(visitors: int, seed: int, out: Any) -> int:
    from dmp.local import LocalStack
    from functions.builder.build import build
    from functions.core.partners import key_hash, new_key
    from functions.core.segments import load_definitions
    from functions.core.storage.bucket import SegmentsBucket
    from functions.core.storage.events import EventStore, is_mapping
    from functions.core.storage.partners import PartnerProfile, PartnerStore

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # The build's time, a little ahead: the imported traits carry their files' upload
    # time, which must lie before it (traffic is simulated relative to it either way).
    now = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    with LocalStack(port=0, simulate_time=True) as stack:
        target = stack.target
        assert target is not None and target.gateway_url is not None
        gateway = target.gateway_url
        out(f"Local stack up: gateway {gateway}, AWS emulator {target.aws_endpoint_url}")
        # Real-time membership, as in AWS: the events table's stream feeds the evaluator
        # (which does nothing until a build has published definitions).
        stack.stream_membership()

        bucket = SegmentsBucket(target.bucket)
        files = {str(p): p.read_text() for p in sorted(SEGMENTS_DIR.glob("*.y*ml"))}
        for definition in load_definitions(files):
            bucket.put_definition(definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True))
        out(f"Pushed {len(files)} segment definitions from {SEGMENTS_DIR.name}/")
        partners = PartnerStore(target.partners_table)
        partners.put_profile(PartnerProfile(name=DSP, sync=True, sync_url=DSP_SYNC_URL, updated_at=now.isoformat()))
        out(f"Registered '{DSP}' for ID sync: {DSP_SYNC_URL}")

        with ThreadPoolExecutor(max_workers=4) as pool:
            browsers = list(pool.map(lambda i: _simulate(gateway, i, now, seed), range(visitors)))
        crawler = Browser(gateway, "desktop", CITIES[0][:3])
        for path in ("/", "/pricing", "/blog/gift-guide-2026"):
            crawler.view(path, now - timedelta(hours=1), user_agent=BOT_AGENT)
        sent = sum((b.sent for b in browsers), Counter())
        stored = sum(1 for item in EventStore(target.events_table).scan() if not is_mapping(item))
        out(
            f"Sent {sum(sent.values())} hits from {visitors} browsers over 4 weeks "
            f"({', '.join(f'{n} {k}' for k, n in sent.most_common())}) and 3 from a crawler; "
            f"{stored} events stored (the crawler's were not)."
        )
        synced = {b.cookie.split("=", 1)[1]: b.dsp_id for b in browsers if b.dsp_id and b.cookie}
        out(f"{len(synced)} browsers synced ids with '{DSP}' as they browsed.")

        _imports(gateway, target, browsers, now, seed, out)

        manifest = build(target.build_stores(), now, shards=2, retention_seconds=target.retention_seconds).manifest
        out(f"\nBuild {manifest.build_id} evaluated at {manifest.evaluated_at} (2 shards):")
        for segment in manifest.segments:
            out(f"  {segment.id:<36} {segment.size:>5} visitors  -> {', '.join(segment.destinations)}")

        key = new_key()
        partners.add(key_hash(key), DSP, now.isoformat())
        out("\nAd platform 'demo-dsp' calls the lookup API with its partner key:")
        status, catalog = _call(f"{gateway}/v1/segments", key)
        _expect(status, catalog, "GET /v1/segments")
        out(f"GET /v1/segments -> {status}")
        for entry in catalog.get("segments", []):
            out(f"  {entry['id']:<36} size {entry['size']}")
        london = manifest.segment("holiday-returning-london-pricing")
        if london is None:
            raise DemoFailure("the build has no segment holiday-returning-london-pricing")
        members = [uid for path in london.files for uid in bucket.read_members(path)]
        visitors_by_cookie = [b.cookie.split("=", 1)[1] for b in browsers if b.cookie]
        sample = (members[:2] + [v for v in visitors_by_cookie if v not in members][:1]) or visitors_by_cookie[:3]
        for uid in sample[:2]:
            status, answer = _call(f"{gateway}/v1/users/{uid}/segments", key)
            _expect(status, answer, "GET /v1/users/{uid}/segments")
            out(f"GET /v1/users/{uid}/segments -> {status}\n  {json.dumps(answer)}")
        if sample:
            status, answer = _call(f"{gateway}/v1/users/{sample[0]}/segments?format=openrtb", key)
            _expect(status, answer, "GET /v1/users/{uid}/segments?format=openrtb")
            out(f"GET /v1/users/{sample[0]}/segments?format=openrtb -> {status}\n  {json.dumps(answer)}")
        status, answer = _call(f"{gateway}/v1/lookup", key, {"uids": sample})
        _expect(status, answer, "POST /v1/lookup")
        out(f"POST /v1/lookup {len(sample)} uids -> {status}")
        for result in answer.get("results", []):
            out(f"  {result['uid']}: {', '.join(s['id'] for s in result['segments']) or '(none)'}")
        _partner_ids_and_export(gateway, key, members, synced, out)
        _cart_abandoner_in_real_time(gateway, key, out)
        status, answer = _call(f"{gateway}/v1/segments", None)
        if status != 401:
            raise DemoFailure(f"GET /v1/segments without a key answered {status}, not 401")
        out(f"GET /v1/segments without a key -> {status} {json.dumps(answer)}")
        # The build's report (sizes, changes, overlaps, reach, mixes), saved for a browser.
        from dmp.report import save_report

        report_path = Path(".dmp") / "report.html"
        save_report(bucket, report_path, manifest.build_id)
        out(f"\nReport of build {manifest.build_id} (open it in a browser): {report_path.resolve()}")

    if not members:
        out("\nThe London segment is empty: the demo traffic did not produce it.")
        return 1
    out(f"\nThe London Christmas segment has {len(members)} members. Demo finished.")
    return 0
