"""A shop's week of traffic as `dmp ingest` lines, at any size: for the local stack's
load test, the `local` benchmark, and by hand:

    .venv/bin/python -m tests.site_traffic 100000 > week.jsonl   # 100 k events, 7,500 visitors

Every visitor has at least one event, all within the last seven days, from one city and
one device: so each visitor in the UK is a member of `new-uk-visitors` (first seen this
week, in GB), whatever else it did. Lines carry an `eid`, so ingesting a file twice
stores its events once."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator

from functions.core.times import DAY_MS

SHOP = "https://shop.example"
CITIES = [  # country, region, city: a visitor's city is CITIES[number % len(CITIES)]
    ("GB", "ENG", "London"),
    ("GB", "ENG", "Manchester"),
    ("FR", "IDF", "Paris"),
    ("GB", "SCT", "Edinburgh"),
    ("DE", "BE", "Berlin"),
    ("US", "NY", "New York"),
]
DEVICES = ["desktop", "mobile", "tablet"]
PAGES = ["/", "/pricing", "/products/wool-scarf", "/products/gift-box", "/blog/gift-guide-2026", "/cart", "/checkout"]
# About 13 events a visitor: 20 k events come from 1,500 visitors, 100 k from 7,500.
EVENTS_PER_VISITOR = 40 / 3
# Events this long before the build at most, so "first seen within 7 days" holds an hour on.
WINDOW_MS = 7 * DAY_MS - 3_600_000


def visitor_id(number: int) -> str:
    return f"week-visitor-{number:06d}"


def visitors_for(events: int) -> int:
    return max(1, round(events / EVENTS_PER_VISITOR))


def uk_visitors(visitors: int) -> set[str]:
    """The visitors the lines of `visitors` place in the UK."""
    return {visitor_id(n) for n in range(visitors) if CITIES[n % len(CITIES)][0] == "GB"}


def week_lines(events: int, *, now_ms: int | None = None, seed: int = 1) -> Iterator[str]:
    """`events` backfill lines of `visitors_for(events)` visitors, ending at `now_ms`."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    visitors = visitors_for(events)
    rng = random.Random(seed)
    for index in range(events):
        # the first line of each visitor first, so none is left without events
        number = index if index < visitors else rng.randrange(visitors)
        country, region, city = CITIES[number % len(CITIES)]
        roll = rng.random()
        name = "purchase" if roll < 0.02 else "add_to_cart" if roll < 0.08 else "page_view"
        line = {
            "uid": visitor_id(number),
            "ts": now_ms - rng.randrange(WINDOW_MS),
            "e": name,
            "url": SHOP + ("/checkout" if name == "purchase" else rng.choice(PAGES)),
            "ref": "https://www.google.com/" if roll > 0.7 else None,
            "eid": f"week-{seed}-{index:08d}",
            "geo": {"country": country, "region": region, "city": city},
            "device": DEVICES[number % len(DEVICES)],
        }
        yield json.dumps({k: v for k, v in line.items() if v is not None})


if __name__ == "__main__":
    for text in week_lines(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000):
        sys.stdout.write(text + "\n")
