"""`builds/<build_id>/report.html`: a build's report as one self-contained page.

Inline SVG charts and CSS, no script, no external asset (a Content-Security-Policy that
allows nothing else says so to the browser), so it opens offline and reads without
JavaScript. Every chart is an `<svg role="img">` labelled by its own `<title>` and
`<desc>`, and its figures are also in a table. Segment names and descriptions are user
input: everything from the report is escaped.

Legible from 3 segments to hundreds: heatmaps and bar charts are drawn in blocks of at
most `BLOCK` segments, ordered so that segments which overlap most sit together (a greedy
seriation on the Jaccard index), and the most overlapping pairs are also listed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from html import escape

from functions.core.documents import BuildReport, ReportSegment, SegmentOverlap

BLOCK = 40  # segments per heatmap or bar chart
TOP_PAIRS = 50
TOP_COUNTRIES = 6
TEXT = "#1a1a1a"
MUTED = "#4b5563"
# Sequential blues for the Jaccard index, lightest to darkest, with the bins' upper bounds.
HEAT = (
    (0.0, "#ffffff", "0"),
    (0.05, "#deebf7", "up to 0.05"),
    (0.15, "#9ecae1", "0.05 to 0.15"),
    (0.3, "#4292c6", "0.15 to 0.30"),
    (0.5, "#2171b5", "0.30 to 0.50"),
    (1.0, "#08306b", "0.50 to 1"),
)
# Categorical colours, each at least 3:1 against the white page.
DEVICE_COLOURS = {"desktop": "#0072b2", "mobile": "#c2410c", "tablet": "#047857", "unknown": "#6b7280"}
CATEGORY_COLOURS = ("#0072b2", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490")
OTHER_COLOUR, UNKNOWN_COLOUR = "#6b7280", "#374151"

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#fff;
margin:0 auto;max-width:1200px;padding:1rem 1.5rem}
h1,h2,h3{line-height:1.2}h2{margin-top:2.2rem;border-bottom:1px solid #d1d5db;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:14px}
th,td{border:1px solid #d1d5db;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.3rem 0}
code{font-size:13px}.muted{color:#4b5563}svg{display:block;max-width:100%;height:auto;margin:.5rem 0}
details{margin:.4rem 0 1rem}summary{cursor:pointer;color:#1d4ed8}
nav ul{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;padding:0;list-style:none}
a{color:#1d4ed8}.legend span{display:inline-block;margin-right:1rem}
.swatch{display:inline-block;width:.9em;height:.9em;border:1px solid #6b7280;vertical-align:-.1em;margin-right:.3em}
"""


def render(report: BuildReport) -> str:
    page = _Page(report)
    return page.html()


class _Page:
    def __init__(self, report: BuildReport) -> None:
        self.report = report
        self._ids = 0
        self.sizes = {s.id: s.size for s in report.segments}
        self.jaccard = {(o.a, o.b): o.jaccard for o in report.overlaps}
        self.jaccard.update({(o.b, o.a): o.jaccard for o in report.overlaps})
        self.shared = {(o.a, o.b): o.shared for o in report.overlaps}
        self.shared.update({(o.b, o.a): o.shared for o in report.overlaps})
        self.order = seriate([s.id for s in report.segments], self.sizes, self.jaccard)
        self.by_id = {s.id: s for s in report.segments}

    def _id(self, kind: str) -> str:
        self._ids += 1
        return f"{kind}-{self._ids}"

    def html(self) -> str:
        r = self.report
        previous = f"<code>{escape(r.previous_build_id)}</code>" if r.previous_build_id else "none (first build)"
        note = (
            ""
            if r.complete
            else '<p class="muted">Some shards ran a version without reports: overlaps, reach and mixes '
            "leave their visitors out.</p>"
        )
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>Segment report, build {escape(r.build_id)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<header><h1>Segment report, build <code>{escape(r.build_id)}</code></h1>",
            f"<p>Evaluated at {escape(r.evaluated_at)}; previous published build: {previous}; "
            f"{r.visitors_scanned:,} visitors scanned; {len(r.segments)} segments; "
            f"{len(r.trend)} kept build(s) in the trends.</p>{note}</header>",
            '<nav aria-label="Sections"><ul><li><a href="#segments">Segments</a></li>'
            '<li><a href="#overlap">Overlap</a></li><li><a href="#reach">Destination reach</a></li>'
            '<li><a href="#devices">Device mix</a></li><li><a href="#countries">Country mix</a></li></ul></nav>',
            "<main>",
            self.segments_section(),
            self.overlap_section(),
            self.reach_section(),
            self.devices_section(),
            self.countries_section(),
            "</main></body></html>",
        ]
        return "\n".join(parts)

    # -- segments ---------------------------------------------------------------------
    def segments_section(self) -> str:
        out = ['<section id="segments" aria-labelledby="segments-h"><h2 id="segments-h">Segments</h2>']
        out.append(
            "<p>Each segment's members in this build, and how many joined (added) and left (removed) it "
            "since the previous published build.</p>"
        )
        for number, block in enumerate(_blocks(self.order), 1):
            out.append(self.size_chart(block, number))
        rows = []
        for segment in self.report.segments:
            rows.append(
                "<tr>"
                f"<td><code>{escape(segment.id)}</code><br>{escape(segment.name)}"
                + (f'<br><span class="muted">{escape(segment.description)}</span>' if segment.description else "")
                + "</td>"
                f'<td class="n">{segment.size:,}</td><td class="n">{_count(segment.added)}</td>'
                f'<td class="n">{_count(segment.removed)}</td>'
                f"<td>{self.sparkline(segment)}</td>"
                f"<td>{escape(', '.join(segment.destinations)) or '<span class=muted>none</span>'}</td></tr>"
            )
        out.append(
            "<table><caption>Segments: size, change since the previous build, trend over the kept builds"
            '</caption><thead><tr><th scope="col">Segment</th><th scope="col" class="n">Size</th>'
            '<th scope="col" class="n">Added</th><th scope="col" class="n">Removed</th>'
            '<th scope="col">Trend</th><th scope="col">Destinations</th></tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table></section>"
        )
        return "\n".join(out)

    def size_chart(self, block: Sequence[str], number: int) -> str:
        label_w, bar_w, row_h, top = 260, 520, 20, 8
        height = top + row_h * len(block) + 8
        largest = max([self.sizes[s] for s in block] + [1])
        rows = []
        for index, segment_id in enumerate(block):
            y = top + index * row_h
            width = round(bar_w * self.sizes[segment_id] / largest, 1)
            rows.append(
                f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(_short(segment_id))}</text>'
                f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="{row_h - 6}" fill="#0072b2">'
                f"<title>{escape(segment_id)}: {self.sizes[segment_id]:,} visitors</title></rect>"
                f'<text x="{label_w + width + 6}" y="{y + 14}">{self.sizes[segment_id]:,}</text>'
            )
        return self.svg(
            title=f"Segment sizes, chart {number}",
            desc="Members per segment: "
            + "; ".join(f"{segment_id} {self.sizes[segment_id]}" for segment_id in block)
            + ".",
            width=label_w + bar_w + 90,
            height=height,
            body="".join(rows),
        )

    def sparkline(self, segment: ReportSegment) -> str:
        values = [point.sizes.get(segment.id) for point in self.report.trend]
        known = [v for v in values if v is not None]
        width, height, pad = 120, 28, 3
        desc = ", ".join(
            f"{p.build_id}: {'-' if v is None else v}" for p, v in zip(self.report.trend, values, strict=True)
        )
        if len(known) < 2:
            body = f'<text x="0" y="18" fill="{MUTED}" font-size="12">{len(known)} build</text>'
        else:
            low, high = min(known), max(known)
            span = (high - low) or 1
            step = (width - 2 * pad) / (len(values) - 1)
            points = " ".join(
                f"{pad + i * step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
                for i, v in enumerate(values)
                if v is not None
            )
            body = f'<polyline points="{points}" fill="none" stroke="#0072b2" stroke-width="2"/>'
        return self.svg(
            title=f"Trend of {segment.id}",
            desc=f"Size in each kept build, oldest first: {desc}.",
            width=width,
            height=height,
            body=body,
        )

    # -- overlap ----------------------------------------------------------------------
    def overlap_section(self) -> str:
        out = ['<section id="overlap" aria-labelledby="overlap-h"><h2 id="overlap-h">Overlap</h2>']
        if len(self.order) < 2:
            out.append("<p>One segment: no pairs to compare.</p></section>")
            return "\n".join(out)
        blocks = list(_blocks(self.order))
        out.append(
            "<p>Shared visitors of every pair of segments, shaded by the Jaccard index (shared visitors / "
            "visitors in either). Segments that overlap most are placed next to each other"
            + (
                f"; with {len(self.order)} segments the heatmap comes in {len(blocks)} blocks of at most "
                f"{BLOCK}, and the pairs across blocks are in the tables below"
                if len(blocks) > 1
                else ""
            )
            + ".</p>"
        )
        out.append(
            '<p class="legend">'
            + "".join(
                f'<span><span class="swatch" style="background:{colour}"></span>Jaccard {escape(label)}</span>'
                for _, colour, label in HEAT
            )
            + "</p>"
        )
        for number, block in enumerate(blocks, 1):
            out.append(self.heatmap(block, number, len(blocks)))
            pairs = [self.overlap(a, b) for i, a in enumerate(block) for b in block[i + 1 :]]
            out.append(
                f"<details><summary>Heatmap {number} as a table ({len(pairs)} pairs)</summary>"
                + _pairs_table(f"Pairs of heatmap {number}", pairs)
                + "</details>"
            )
        top = sorted(self.report.overlaps, key=lambda o: (-o.shared, -o.jaccard, o.a, o.b))[:TOP_PAIRS]
        out.append(_pairs_table(f"The {len(top)} pairs sharing the most visitors", top))
        out.append("</section>")
        return "\n".join(out)

    def overlap(self, a: str, b: str) -> SegmentOverlap:
        return SegmentOverlap(a, b, self.shared.get((a, b), 0), self.jaccard.get((a, b), 0.0))

    def heatmap(self, block: Sequence[str], number: int, blocks: int) -> str:
        # Larger cells for few segments; room for the longest (rotated) label above.
        cell = max(16, min(40, 480 // len(block)))
        longest = max(len(_short(s)) for s in block)
        left, top = 30 + 7 * longest, 24 + round(6.5 * longest)
        size = cell * len(block)
        out = []
        for index, segment_id in enumerate(block):
            y = top + index * cell
            out.append(
                f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end" font-size="12">'
                f"{escape(_short(segment_id))}</text>"
            )
            x = left + index * cell + cell / 2 + 4
            out.append(
                f'<text x="{x}" y="{top - 6}" transform="rotate(-60 {x} {top - 6})" font-size="12">'
                f"{escape(_short(segment_id))}</text>"
            )
        for row, a in enumerate(block):
            for column, b in enumerate(block):
                x, y = left + column * cell, top + row * cell
                if a == b:
                    out.append(
                        f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#e5e7eb" stroke="#9ca3af">'
                        f"<title>{escape(a)}: {self.sizes[a]:,} visitors</title></rect>"
                    )
                    continue
                shared, value = self.shared.get((a, b), 0), self.jaccard.get((a, b), 0.0)
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_heat(value)}" stroke="#d1d5db">'
                    f"<title>{escape(a)} and {escape(b)}: {shared:,} shared, Jaccard {value:.3f}</title></rect>"
                )
        strongest = sorted(
            ((self.jaccard.get((a, b), 0.0), a, b) for i, a in enumerate(block) for b in block[i + 1 :]),
            reverse=True,
        )[:5]
        summary = "; ".join(f"{a} and {b} {value:.2f}" for value, a, b in strongest if value > 0) or "none overlap"
        which = f" {number} of {blocks}" if blocks > 1 else ""
        return self.svg(
            title=f"Overlap heatmap{which}",
            desc=f"Jaccard index of each pair of {len(block)} segments ({', '.join(block)}). "
            f"Strongest overlaps: {summary}. The table after the chart lists every pair.",
            width=left + size + 20,
            height=top + size + 10,
            body="".join(out),
        )

    # -- reach ------------------------------------------------------------------------
    def reach_section(self) -> str:
        out = ['<section id="reach" aria-labelledby="reach-h"><h2 id="reach-h">Destination reach</h2>']
        destinations = self.report.destinations
        if not destinations:
            out.append("<p>No segment names a destination.</p></section>")
            return "\n".join(out)
        out.append("<p>Distinct visitors each destination partner can reach through the segments it may see.</p>")
        label_w, bar_w, row_h = 220, 520, 22
        largest = max([d.reach for d in destinations] + [1])
        rows = []
        for index, destination in enumerate(destinations):
            y = 6 + index * row_h
            width = round(bar_w * destination.reach / largest, 1)
            rows.append(
                f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(destination.partner)}</text>'
                f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="{row_h - 6}" fill="#047857">'
                f"<title>{escape(destination.partner)}: {destination.reach:,} visitors</title></rect>"
                f'<text x="{label_w + width + 6}" y="{y + 15}">{destination.reach:,}</text>'
            )
        out.append(
            self.svg(
                title="Reach of each destination",
                desc="Distinct visitors per destination: "
                + "; ".join(f"{d.partner} {d.reach}" for d in destinations)
                + ".",
                width=label_w + bar_w + 90,
                height=12 + row_h * len(destinations),
                body="".join(rows),
            )
        )
        out.append(
            '<table><caption>Destination reach</caption><thead><tr><th scope="col">Destination</th>'
            '<th scope="col" class="n">Visitors</th><th scope="col">Segments</th></tr></thead><tbody>'
            + "".join(
                f'<tr><td>{escape(d.partner)}</td><td class="n">{d.reach:,}</td>'
                f"<td>{escape(', '.join(d.segments))}</td></tr>"
                for d in destinations
            )
            + "</tbody></table></section>"
        )
        return "\n".join(out)

    # -- mixes ------------------------------------------------------------------------
    def devices_section(self) -> str:
        present = {device for s in self.report.segments for device in s.devices}
        categories = [d for d in DEVICE_COLOURS if d in present] + sorted(present - set(DEVICE_COLOURS))
        colours = {d: DEVICE_COLOURS.get(d, OTHER_COLOUR) for d in categories}
        return self.mix_section(
            "devices",
            "Device mix",
            "The device type of each member's most recent event.",
            {s.id: s.devices for s in self.report.segments},
            categories,
            colours,
        )

    def countries_section(self) -> str:
        totals: dict[str, int] = {}
        for segment in self.report.segments:
            for country, count in segment.countries.items():
                totals[country] = totals.get(country, 0) + count
        top = [c for c, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])) if c != "unknown"]
        top = top[:TOP_COUNTRIES]
        mixes: dict[str, Mapping[str, int]] = {}
        for segment in self.report.segments:
            mix = {c: segment.countries.get(c, 0) for c in top}
            other = sum(n for c, n in segment.countries.items() if c not in top and c != "unknown")
            mix["other"] = other
            mix["unknown"] = segment.countries.get("unknown", 0)
            mixes[segment.id] = mix
        categories = [*top, "other", "unknown"]
        colours = dict(zip(top, CATEGORY_COLOURS, strict=False))
        colours.update(other=OTHER_COLOUR, unknown=UNKNOWN_COLOUR)
        return self.mix_section(
            "countries",
            "Country mix",
            f"The country of each member's most recent located event; the {len(top)} most common countries, "
            "the rest as other. Every country is in the table.",
            mixes,
            categories,
            colours,
            table_mixes={s.id: s.countries for s in self.report.segments},
        )

    def mix_section(
        self,
        anchor: str,
        heading: str,
        intro: str,
        mixes: Mapping[str, Mapping[str, int]],
        categories: Sequence[str],
        colours: Mapping[str, str],
        table_mixes: Mapping[str, Mapping[str, int]] | None = None,
    ) -> str:
        out = [f'<section id="{anchor}" aria-labelledby="{anchor}-h"><h2 id="{anchor}-h">{heading}</h2>']
        out.append(f"<p>{escape(intro)}</p>")
        out.append(
            '<p class="legend">'
            + "".join(
                f'<span><span class="swatch" style="background:{colours[c]}"></span>{escape(c)}</span>'
                for c in categories
            )
            + "</p>"
        )
        for number, block in enumerate(_blocks(self.order), 1):
            out.append(self.mix_chart(heading, block, number, mixes, categories, colours))
        shown = table_mixes or mixes
        columns = sorted({c for mix in shown.values() for c in mix}, key=lambda c: (c == "unknown", c))
        out.append(
            f"<table><caption>{heading} per segment (members)</caption><thead><tr>"
            '<th scope="col">Segment</th>'
            + "".join(f'<th scope="col" class="n">{escape(c)}</th>' for c in columns)
            + "</tr></thead><tbody>"
            + "".join(
                f"<tr><td><code>{escape(s.id)}</code></td>"
                + "".join(f'<td class="n">{shown[s.id].get(c, 0):,}</td>' for c in columns)
                + "</tr>"
                for s in self.report.segments
            )
            + "</tbody></table></section>"
        )
        return "\n".join(out)

    def mix_chart(
        self,
        heading: str,
        block: Sequence[str],
        number: int,
        mixes: Mapping[str, Mapping[str, int]],
        categories: Sequence[str],
        colours: Mapping[str, str],
    ) -> str:
        label_w, bar_w, row_h = 260, 560, 20
        rows = []
        described = []
        for index, segment_id in enumerate(block):
            y = 6 + index * row_h
            mix = mixes[segment_id]
            total = sum(mix.values())
            rows.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(_short(segment_id))}</text>')
            x = float(label_w)
            shares = []
            for category in categories:
                count = mix.get(category, 0)
                if not count:
                    continue
                width = bar_w * count / total
                shares.append(f"{category} {count / total:.0%}")
                rows.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
                    f'fill="{colours[category]}" stroke="#fff" stroke-width="0.5">'
                    f"<title>{escape(segment_id)}: {escape(category)} {count:,} ({count / total:.1%})</title></rect>"
                )
                x += width
            if not total:
                rows.append(f'<text x="{label_w}" y="{y + 14}" fill="{MUTED}">no members</text>')
            described.append(f"{segment_id}: {', '.join(shares) or 'no members'}")
        return self.svg(
            title=f"{heading}, chart {number}",
            desc="Share of members per segment. " + "; ".join(described) + ".",
            width=label_w + bar_w + 20,
            height=12 + row_h * len(block),
            body="".join(rows),
        )

    # -- plumbing ---------------------------------------------------------------------
    def svg(self, *, title: str, desc: str, width: int, height: int, body: str) -> str:
        ident = self._id("chart")
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{ident}-t {ident}-d" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="13" fill="{TEXT}">'
            f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
            f"{body}</svg>"
        )


def seriate(ids: Sequence[str], sizes: Mapping[str, int], jaccard: Mapping[tuple[str, str], float]) -> list[str]:
    """An order that puts overlapping segments side by side: start from the largest
    segment, then repeatedly take the one overlapping the last placed most (the largest
    first among equals); a segment overlapping none starts a new run from the largest left."""
    left = set(ids)
    order: list[str] = []
    while left:
        last = order[-1] if order else None
        best = max(
            left,
            key=lambda s: (jaccard.get((last, s), 0.0) if last is not None else 0.0, sizes.get(s, 0), _neg(s)),
        )
        order.append(best)
        left.remove(best)
    return order


def _neg(segment_id: str) -> tuple[int, ...]:
    """Sorts ids in reverse, so `max` prefers the alphabetically first among equals."""
    return tuple(-ord(c) for c in segment_id)


def _blocks(order: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(order), BLOCK):
        yield order[start : start + BLOCK]


def _heat(value: float) -> str:
    if value <= 0:
        return HEAT[0][1]
    return next(colour for bound, colour, _ in HEAT[1:] if value <= bound)


def _short(segment_id: str, limit: int = 30) -> str:
    return segment_id if len(segment_id) <= limit else segment_id[: limit - 1] + "…"


def _count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _pairs_table(caption: str, pairs: Sequence[SegmentOverlap]) -> str:
    return (
        f'<table><caption>{escape(caption)}</caption><thead><tr><th scope="col">Segment</th>'
        '<th scope="col">Segment</th><th scope="col" class="n">Shared visitors</th>'
        '<th scope="col" class="n">Jaccard</th></tr></thead><tbody>'
        + "".join(
            f"<tr><td><code>{escape(o.a)}</code></td><td><code>{escape(o.b)}</code></td>"
            f'<td class="n">{o.shared:,}</td><td class="n">{o.jaccard:.3f}</td></tr>'
            for o in pairs
        )
        + "</tbody></table>"
    )
