"""The report page (functions/builder/report_html.py), drawn from a report document."""

from __future__ import annotations

import re
from itertools import combinations

from functions.builder.report import jaccard
from functions.builder.report_html import BLOCK, render, seriate
from functions.core.documents import BuildReport, DestinationReach, ReportSegment, SegmentOverlap, TrendPoint


def report(count: int, name: str = "Segment", description: str = "") -> BuildReport:
    sizes = {f"s-{n:03d}": 100 + n for n in range(count)}
    segments = tuple(
        ReportSegment(s, f"{name} {s}", description, ("dsp",), size, 3, 1, {"mobile": size}, {"GB": size})
        for s, size in sizes.items()
    )
    overlaps = tuple(
        SegmentOverlap(a, b, shared, jaccard(shared, sizes[a], sizes[b]))
        for a, b in combinations(sizes, 2)
        for shared in [50 if int(a[2:]) // 4 == int(b[2:]) // 4 else 0]
    )
    return BuildReport(
        build_id="20261128T100000Z",
        evaluated_at="2026-11-28T10:00:00Z",
        previous_build_id="20261128T090000Z",
        visitors_scanned=5000,
        segments=segments,
        overlaps=overlaps,
        destinations=(DestinationReach("dsp", tuple(sizes), 900),),
        trend=(TrendPoint("20261128T090000Z", "", sizes), TrendPoint("20261128T100000Z", "", sizes)),
    )


def test_user_text_is_escaped_everywhere() -> None:
    # GIVEN segment names and descriptions carrying markup
    page = render(report(3, name="<script>alert(1)</script>", description='"><svg onload=alert(2)>'))
    # THEN none of it is markup in the page
    assert "<script" not in page and "<svg onload" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; s-000" in page
    assert "&quot;&gt;&lt;svg onload=alert(2)&gt;" in page


def test_every_chart_is_an_image_with_its_own_title_and_description() -> None:
    page = render(report(5))
    charts = re.findall(r"<svg [^>]*>", page)
    assert charts and all('role="img"' in c and "aria-labelledby=" in c for c in charts)
    for labels in (re.search(r'aria-labelledby="([^"]+)"', c).group(1).split() for c in charts):  # type: ignore[union-attr]
        assert f'<title id="{labels[0]}">' in page and f'<desc id="{labels[1]}">' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_two_hundred_segments_come_in_heatmaps_of_at_most_forty() -> None:
    page = render(report(200))
    assert page.count(">Overlap heatmap ") == 5
    assert "The 50 pairs sharing the most visitors" in page
    assert BLOCK == 40


def test_seriation_puts_overlapping_segments_side_by_side() -> None:
    # GIVEN two groups of segments overlapping within their group only, interleaved by id
    ids = ["a", "b", "c", "d"]
    sizes = dict.fromkeys(ids, 10)
    close = {("a", "c"): 0.5, ("c", "a"): 0.5, ("b", "d"): 0.4, ("d", "b"): 0.4}
    # THEN each group is contiguous
    order = seriate(ids, sizes, close)
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset("ac"), frozenset("bd")}
