"""A seeded, generated audience for comparing the rule engine with the DuckDB reference.

Events are spread over roughly 120 days around `now`, with the cases the semantics turn
on: events after now, expired events (retention ends exactly at now, one second before,
one after), events exactly at window boundaries and one millisecond either side, gaps
of exactly 30 minutes and 30 minutes plus or minus 1 ms, URLs and geo in mixed case,
props, changing locations and devices, and traits with several values over time (some
after now, some expired). Some visitors have only traits; some have only events that
no longer exist at `now`.

The data is held column-wise (numpy codes into small vocabularies), so the same
population can be turned into the engine's `VisitorHistory` objects and into Arrow
tables for DuckDB, and a million events take seconds to generate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from functions.core.records import EventRecord, Record, TraitRecord, VisitorHistory, group_by_visitor
from functions.core.times import DAY_MS, DAY_SECONDS

SECOND = 1000
MINUTE = 60 * SECOND
DAY = DAY_MS
RETENTION_S = 90 * DAY_SECONDS

NAMES = ["page_view", "click", "add_to_cart", "purchase", "signup"]
NAME_WEIGHTS = [0.55, 0.15, 0.12, 0.10, 0.08]

URLS: list[str | None] = [
    None,
    "https://shop.example/",
    "https://shop.example/pricing",
    "https://shop.example/PRICING/Plans",
    "https://shop.example/pricing/plans?tier=pro",
    "https://shop.example/prices",
    "https://shop.example/fr/Été/PRICING",
    "https://shop.example/blog/",
    "https://shop.example/blog/how-to-choose",
    "https://shop.example/Blog/Holiday-Gifts",
    "https://Shop.example/blog/caps-host",
    "https://shop.example/checkout?step=2",
    "https://shop.example/CheckOut/done",
    "https://shop.example/en/order/12345",
    "https://shop.example/order/42?utm_source=mail",
    "https://shop.example/en/ORDER/777",
    "https://shop.example/order/12a",
    "https://shop.example/order/99#receipt",
    "https://news.example/?next=https://shop.example/blog/",
    "https://shop.example/cart",
]
REFS: list[str | None] = [
    None,
    None,
    "https://www.GOOGLE.com/search?q=gifts",
    "https://google.co.uk/",
    "https://www.bing.com/search?q=google",
    "https://news.example/?from=google",
    "https://shop.example/pricing",
]
PROPS: list[dict[str, str]] = [
    {},
    {},
    {},
    {"plan": "pro", "seats": "5"},
    {"plan": "Pro", "seats": "5"},
    {"plan": "pro", "seats": "05"},
    {"plan": "pro"},
    {"plan": "basic", "seats": "5"},
    {"price": "19.5"},
    {"price": "19.50"},
    {"paid": "true"},
    {"paid": "True"},
    {"paid": "false"},
    {"plan": "pro", "seats": "5", "paid": "true", "price": "19.5"},
]
# country, region, city; index 0 is "no location on this event"
PLACES: list[tuple[str | None, str | None, str | None]] = [
    (None, None, None),
    ("GB", "ENG", "London"),
    ("GB", "ENG", "LONDON"),
    ("GB", "SCT", "Edinburgh"),
    ("gb", "sct", "Glasgow"),
    ("GB", None, None),
    ("CA", "ON", "London"),
    ("FR", "IDF", "Paris"),
    ("FR", None, "PARIS"),
    (None, None, "london"),
    ("US", "CA", "San Francisco"),
    ("DE", "BE", "Berlin"),
]
DEVICES: list[str | None] = [None, "desktop", "mobile", "tablet"]

TRAIT_VALUES: dict[str, list[object]] = {
    "tier": ["gold", "silver", "platinum", "Gold", "bronze"],
    "age": [17, 18, 18.0, 25, 30, 34, 34.5, 35, 17.5, "42", "17", "unknown", True, 12.0],
    "email_hash": ["ab12", "cd34"],
    "children": [2, 2.0, "2", 3, 0],
    "homeowner": [True, False, "true", "yes"],
    # imported traits, named `<source>.<trait>` as the importer stores them
    "harbor-crm.tier": ["gold", "silver", "bronze", "Gold"],
    "interest-graph.in_market_travel": [True, False, "true"],
}
TRAIT_NAMES = list(TRAIT_VALUES)

# Window lengths (days) used by the reference catalogue, plus the retention: events are
# put exactly on these boundaries, and 1 ms either side.
BOUNDARY_DAYS = [0, 0.5, 1.5, 3, 7, 14, 30, 45.25, 60, 90]


def _pick(rng: np.random.Generator, choices: list[int], weights: list[float], size: int) -> np.ndarray:
    return rng.choice(np.asarray(choices, dtype=np.int64), size=size, p=np.asarray(weights) / sum(weights))


@dataclass
class Population:
    now_ms: int
    visitor_ids: list[str]
    # events, column-wise; one row per event, grouped by visitor and in time order
    ev_visitor: np.ndarray
    ev_ts: np.ndarray
    ev_name: np.ndarray
    ev_url: np.ndarray
    ev_ref: np.ndarray
    ev_props: np.ndarray
    ev_place: np.ndarray
    ev_device: np.ndarray
    ev_expires: np.ndarray  # epoch seconds, -1 for "never expires"
    # traits, column-wise, grouped by visitor
    tr_visitor: np.ndarray
    tr_name: np.ndarray
    tr_value: np.ndarray  # index into TRAIT_VALUES[name]
    tr_ts: np.ndarray
    tr_expires: np.ndarray

    @property
    def event_count(self) -> int:
        return len(self.ev_ts)

    # --- the engine's view: records as a scan returns them, one visitor after another

    def records(self) -> list[tuple[str, Record]]:
        """(visitor_id, record) in scan order: each visitor's events, then their traits."""
        ids = self.visitor_ids
        events = [
            (
                ids[v],
                EventRecord(
                    ts_ms=ts,
                    name=NAMES[name],
                    url=URLS[url],
                    ref=REFS[ref],
                    props=PROPS[props],
                    country=PLACES[place][0],
                    region=PLACES[place][1],
                    city=PLACES[place][2],
                    device=DEVICES[device],
                    expires_at=None if expires < 0 else expires,
                ),
            )
            for v, ts, name, url, ref, props, place, device, expires in zip(
                self.ev_visitor.tolist(),
                self.ev_ts.tolist(),
                self.ev_name.tolist(),
                self.ev_url.tolist(),
                self.ev_ref.tolist(),
                self.ev_props.tolist(),
                self.ev_place.tolist(),
                self.ev_device.tolist(),
                self.ev_expires.tolist(),
                strict=True,
            )
        ]
        traits = [
            (
                ids[v],
                TraitRecord(
                    name=TRAIT_NAMES[name],
                    value=TRAIT_VALUES[TRAIT_NAMES[name]][value],
                    ts_ms=ts,
                    expires_at=None if expires < 0 else expires,
                ),
            )
            for v, name, value, ts, expires in zip(
                self.tr_visitor.tolist(),
                self.tr_name.tolist(),
                self.tr_value.tolist(),
                self.tr_ts.tolist(),
                self.tr_expires.tolist(),
                strict=True,
            )
        ]
        # a stable sort by visitor keeps each visitor's events before their traits
        order = np.argsort(np.concatenate([self.ev_visitor, self.tr_visitor]), kind="stable")
        both = events + traits
        return [both[i] for i in order.tolist()]

    def histories(self, *, shuffle_seed: int | None = None) -> list[VisitorHistory]:
        """Every visitor's history; with `shuffle_seed`, records in a random order inside each."""
        return [_shuffled(history, shuffle_seed) for history in group_by_visitor(self.records())]

    # --- DuckDB's view: two Arrow tables

    @cached_property
    def events_table(self) -> pa.Table:
        """events(visitor_id, ts_ms, name, url, ref, props MAP, country, region, city, device, expires_at)."""
        places = PLACES

        def column(values: list[str | None], codes: np.ndarray) -> pa.Array:
            return pa.array(values, pa.string()).take(pa.array(codes))

        props_type = pa.map_(pa.string(), pa.string())
        return pa.table(
            {
                "visitor_id": column(list(self.visitor_ids), self.ev_visitor),
                "ts_ms": pa.array(self.ev_ts, pa.int64()),
                "name": column(list(NAMES), self.ev_name),
                "url": column(URLS, self.ev_url),
                "ref": column(REFS, self.ev_ref),
                "props": pa.array([list(p.items()) for p in PROPS], props_type).take(pa.array(self.ev_props)),
                "country": column([p[0] for p in places], self.ev_place),
                "region": column([p[1] for p in places], self.ev_place),
                "city": column([p[2] for p in places], self.ev_place),
                "device": column(DEVICES, self.ev_device),
                "expires_at": pa.array(self.ev_expires, pa.int64(), mask=self.ev_expires < 0),
            }
        )

    @cached_property
    def traits_table(self) -> pa.Table:
        """traits(visitor_id, name, value JSON text, ts_ms, expires_at)."""
        values = [json.dumps(TRAIT_VALUES[TRAIT_NAMES[n]][i]) for n, i in zip(self.tr_name, self.tr_value, strict=True)]
        return pa.table(
            {
                "visitor_id": pa.array(self.visitor_ids, pa.string()).take(pa.array(self.tr_visitor)),
                "name": pa.array(TRAIT_NAMES, pa.string()).take(pa.array(self.tr_name)),
                "value": pa.array(values, pa.string()),
                "ts_ms": pa.array(self.tr_ts, pa.int64()),
                "expires_at": pa.array(self.tr_expires, pa.int64(), mask=self.tr_expires < 0),
            }
        )


def _shuffled(history: VisitorHistory, seed: int | None) -> VisitorHistory:
    if seed is not None:
        rng = np.random.default_rng([seed, len(history.events), len(history.traits)])
        history.events = [history.events[i] for i in rng.permutation(len(history.events))]
        history.traits = [history.traits[i] for i in rng.permutation(len(history.traits))]
    return history


def generate(seed: int, visitors: int, *, events_per_visitor: float = 10.0, now_ms: int | None = None) -> Population:
    """A population of `visitors` (about `events_per_visitor` events each on average)."""
    rng = np.random.default_rng(seed)
    if now_ms is None:
        # a whole second for some seeds, not for others: expiry is in epoch seconds
        now_ms = 1_733_140_800_000 + int(rng.integers(0, 30)) * DAY + (0 if seed % 2 else int(rng.integers(1, 1000)))
    now_s = now_ms // 1000

    # --- events: how many per visitor, then the gaps between a visitor's events
    counts = rng.geometric(1.0 / events_per_visitor, size=visitors)
    counts[rng.random(visitors) < 0.06] = 0  # visitors known from traits alone (or not at all)
    ev_visitor = np.repeat(np.arange(visitors), counts)
    n = len(ev_visitor)
    first = np.ones(n, dtype=bool)
    first[1:] = ev_visitor[1:] != ev_visitor[:-1]

    gap_kind = _pick(rng, [0, 1, 2, 3, 4, 5], [8, 6, 4, 42, 25, 15], n)
    gaps = np.select(
        [gap_kind == 0, gap_kind == 1, gap_kind == 2, gap_kind == 3, gap_kind == 4],
        [
            np.full(n, 30 * MINUTE),
            np.full(n, 30 * MINUTE + 1),
            np.full(n, 30 * MINUTE - 1),
            rng.integers(SECOND, 25 * MINUTE, n),
            rng.integers(31 * MINUTE, 3 * DAY, n),
        ],
        rng.integers(3 * DAY, 25 * DAY, n),
    ).astype(np.int64)
    gaps[first] = 0
    offset = np.cumsum(gaps)
    starts = np.flatnonzero(first)
    visitor_of_start = ev_visitor[starts]
    base = np.zeros(visitors, dtype=np.int64)
    base[visitor_of_start] = offset[starts]
    last = np.zeros(visitors, dtype=np.int64)
    ends = np.append(starts[1:] - 1, n - 1) if n else starts
    last[visitor_of_start] = offset[ends]
    # each visitor's last event falls somewhere between 110 days ago and 3 days after now
    end_at = now_ms - rng.integers(-3 * DAY, 110 * DAY, visitors)
    ts = end_at[ev_visitor] - (last[ev_visitor] - base[ev_visitor]) + (offset - base[ev_visitor])

    # shift a third of the visitors so one of their events lies on a window boundary
    snapped = np.flatnonzero((rng.random(visitors) < 0.35) & (counts > 0))
    if len(snapped):
        pick = starts[np.searchsorted(visitor_of_start, snapped)] + (
            rng.integers(0, 1 << 30, len(snapped)) % counts[snapped]
        )
        boundary = np.array([round(d * DAY) for d in BOUNDARY_DAYS])[rng.integers(0, len(BOUNDARY_DAYS), len(snapped))]
        target = now_ms - boundary + rng.integers(-1, 2, len(snapped))
        shift = np.zeros(visitors, dtype=np.int64)
        shift[snapped] = target - ts[pick]
        ts = ts + shift[ev_visitor]

    home = rng.integers(1, len(PLACES), visitors)
    place_roll = rng.random(n)
    ev_place = np.where(
        place_roll < 0.55, home[ev_visitor], np.where(place_roll < 0.8, 0, rng.integers(0, len(PLACES), n))
    )
    usual_device = rng.integers(1, len(DEVICES), visitors)
    device_roll = rng.random(n)
    ev_device = np.where(
        device_roll < 0.7, usual_device[ev_visitor], np.where(device_roll < 0.8, 0, rng.integers(0, len(DEVICES), n))
    )

    expiry_kind = _pick(rng, [0, 1, 2, 3, 4, 5], [65, 12, 6, 6, 6, 5], n)
    ev_expires = np.select(
        [expiry_kind == 0, expiry_kind == 1, expiry_kind == 2, expiry_kind == 3, expiry_kind == 4],
        [ts // 1000 + RETENTION_S, np.full(n, -1), np.full(n, now_s), np.full(n, now_s + 1), np.full(n, now_s - 1)],
        ts // 1000 + 30 * DAY_SECONDS,
    ).astype(np.int64)

    # --- traits: a few records per visitor, several values of one trait over time
    trait_counts = rng.poisson(2.0, visitors) * (rng.random(visitors) < 0.7)
    tr_visitor = np.repeat(np.arange(visitors), trait_counts)
    m = len(tr_visitor)
    tr_name = rng.integers(0, len(TRAIT_NAMES), m)
    sizes = np.array([len(TRAIT_VALUES[name]) for name in TRAIT_NAMES])
    tr_value = rng.integers(0, 1 << 30, m) % sizes[tr_name]
    tr_ts = now_ms - rng.integers(-3 * DAY, 100 * DAY, m)
    tr_expiry_kind = _pick(rng, [0, 1, 2, 3, 4], [75, 7, 6, 6, 6], m)
    tr_expires = np.select(
        [tr_expiry_kind == 0, tr_expiry_kind == 1, tr_expiry_kind == 2, tr_expiry_kind == 3],
        [np.full(m, -1), np.full(m, now_s), np.full(m, now_s + 1), np.full(m, now_s - DAY_SECONDS)],
        tr_ts // 1000 + RETENTION_S,
    ).astype(np.int64)
    # "latest value wins" needs a latest: no two records of one trait at the same time
    _, keep = np.unique(np.stack([tr_visitor, tr_name, tr_ts]), axis=1, return_index=True)
    keep.sort()

    return Population(
        now_ms=now_ms,
        visitor_ids=[f"visitor-{seed:03d}-{i:07d}" for i in range(visitors)],
        ev_visitor=ev_visitor,
        ev_ts=ts,
        ev_name=_pick(rng, list(range(len(NAMES))), NAME_WEIGHTS, n),
        ev_url=rng.integers(0, len(URLS), n),
        ev_ref=rng.integers(0, len(REFS), n),
        ev_props=rng.integers(0, len(PROPS), n),
        ev_place=ev_place,
        ev_device=ev_device,
        ev_expires=ev_expires,
        tr_visitor=tr_visitor[keep],
        tr_name=tr_name[keep],
        tr_value=tr_value[keep],
        tr_ts=tr_ts[keep],
        tr_expires=tr_expires[keep],
    )
