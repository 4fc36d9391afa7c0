"""A build's report page (report.html) in headless Chromium: it opens offline, with no
request for anything, no console error, and its charts (SVG with titles) are there, with
3 segments and with 200. A screenshot of each is kept as an artifact of the run:
under $DMP_TEST_ARTIFACTS when set, else under pytest's temporary directory (the path is
printed, and recorded as the test's `screenshot` property)."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from functions.builder.build import build
from functions.builder.stores import BuildStores
from functions.core import layout
from functions.core.records import EventRecord
from functions.core.times import DAY_SECONDS
from tests.fakes import MemoryBucket, MemoryCatalog, MemoryEvents, MemoryMembership, MemorySuppression

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
PLACES = [("GB", "London"), ("FR", "Paris"), ("DE", "Berlin"), ("US", "New York"), ("IE", "Dublin"), (None, None)]


def definitions(count: int) -> dict[str, str]:
    """`count` segments over 50 pages, each any of two pages: pairs share members."""
    found = {}
    for number in range(count):
        a, b = number % 50, (number * 7 + 3) % 50
        name = "Viewers <script>alert(1)</script>" if number == 0 else f"Viewers of pages {a} and {b}"
        found[f"seg-{number:03d}"] = (
            f"id: seg-{number:03d}\nname: '{name}'\ndestinations: [dsp-{number % 3}]\n"
            f"rule: {{any: [{{event: {{url_contains: /p/{a}/}}}}, {{event: {{url_contains: /p/{b}/}}}}]}}\n"
        )
    return found


def built_report(segments: int, visitors: int) -> str:
    """The page of a second build (so trends and changes have a previous one)."""
    rng = random.Random(segments)
    records = []
    for number in range(visitors):
        for _ in range(rng.randint(1, 6)):
            ts = NOW_MS - rng.randrange(1, 20 * 86_400_000)
            country, city = rng.choice(PLACES)
            page = rng.randrange(50)
            device = rng.choice(["desktop", "mobile", "tablet", None])
            records.append(
                (
                    f"visitor-{number:06d}",
                    EventRecord(
                        ts,
                        "page_view",
                        url=f"https://shop.example/p/{page}/",
                        country=country,
                        city=city,
                        device=device,
                        expires_at=ts // 1000 + 90 * DAY_SECONDS,
                    ),
                )
            )
    bucket = MemoryBucket()
    for segment_id, text in definitions(segments).items():
        bucket.objects[f"segments/{segment_id}.yaml"] = text.encode()
    stores = BuildStores(MemoryEvents(records), MemoryMembership(), bucket, MemoryCatalog(), MemorySuppression())
    build(stores, NOW.replace(hour=9), 2, retention_seconds=90 * DAY_SECONDS)
    build_id = build(stores, NOW, 2, retention_seconds=90 * DAY_SECONDS).manifest.build_id
    return bucket.objects[layout.report_key(build_id, "html")].decode()


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("DMP_TEST_ARTIFACTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(("segments", "visitors"), [(3, 300), (200, 2000)])
def test_the_report_page_opens_offline_with_its_charts(
    browser: Browser,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Any,
    segments: int,
    visitors: int,
) -> None:
    # GIVEN a build's report page saved as a file
    page_file = tmp_path / "report.html"
    page_file.write_text(built_report(segments, visitors), encoding="utf-8")
    # WHEN Chromium opens it with every network request refused
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        requested.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith("file:"), refuse)
    try:
        tab = context.new_page()
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("request", lambda request: None if request.url.startswith("file:") else requested.append(request.url))
        tab.goto(page_file.as_uri(), wait_until="load")
        # THEN nothing was asked of the network and nothing went wrong
        assert requested == []
        assert errors == []
        # AND every chart is an SVG image labelled by its title and description
        charts = tab.locator("svg[role=img]")
        count = charts.count()
        assert count >= 5 + segments  # sizes, heatmap, reach, devices, countries + a sparkline per segment
        labelled = tab.evaluate(
            """() => [...document.querySelectorAll('svg[role=img]')].every(svg => {
                const ids = (svg.getAttribute('aria-labelledby') || '').split(' ');
                const title = svg.querySelector(':scope > title'), desc = svg.querySelector(':scope > desc');
                return title && desc && title.textContent.trim() && ids.includes(title.id) && ids.includes(desc.id);
            })"""
        )
        assert labelled
        heatmaps = tab.locator("svg[role=img] > title", has_text="Overlap heatmap")
        assert heatmaps.count() == -(-segments // 40)
        # AND no heatmap is wider than 40 segments: it stays legible
        widths = tab.evaluate(
            """() => [...document.querySelectorAll('svg[role=img]')]
                .filter(svg => svg.querySelector(':scope > title').textContent.startsWith('Overlap heatmap'))
                .map(svg => svg.querySelectorAll('rect').length)"""
        )
        assert max(widths) <= 40 * 40
        # AND the user's markup is shown as text, never run
        assert tab.evaluate("() => document.scripts.length") == 0
        assert tab.get_by_text("Viewers <script>alert(1)</script>").count() >= 1
        screenshot = artifacts_dir(tmp_path_factory) / f"report-page-{segments}-segments.png"
        tab.screenshot(path=str(screenshot), full_page=segments <= 3)
        record_property("screenshot", str(screenshot))
        print(f"screenshot: {screenshot}")
    finally:
        context.close()
