"""The rule engine against an independent statement of the semantics in DuckDB SQL.

For generated audiences (tests/reference/population.py) the Python engine's members of
every segment of the reference catalogue must be exactly the visitors the hand-written
SQL of tests/reference/duckdb_reference.py selects. The seeded populations put events
on window boundaries, 30-minute gaps, expiry instants and after `now`; the small
hypothesis-drawn ones shrink a disagreement to a minimal audience.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from functions.core.engine import compile_segments, evaluate
from functions.core.segments import (
    AllRule,
    AnyRule,
    EventRule,
    NotRule,
    TraitRule,
    VisitsRule,
    load_definitions,
)
from tests.reference import duckdb_reference as reference
from tests.reference.population import (
    BOUNDARY_DAYS,
    DAY,
    DEVICES,
    MINUTE,
    NAMES,
    PLACES,
    PROPS,
    REFS,
    TRAIT_NAMES,
    TRAIT_VALUES,
    URLS,
    Population,
    generate,
)

SEEDS = range(1, 9)
VISITORS = 400
SEGMENT_IDS = [s.segment_id for s in reference.CATALOGUE]
SEGMENTS_DIR = Path(__file__).resolve().parents[2] / "segments"


def engine_members(population: Population, *, shuffle_seed: int | None = None) -> dict[str, set[str]]:
    members: dict[str, set[str]] = defaultdict(set)
    segments = compile_segments([s.definition for s in reference.CATALOGUE])
    for visitor_id, found in evaluate(population.histories(shuffle_seed=shuffle_seed), segments, population.now_ms):
        for segment_id in found:
            members[segment_id].add(visitor_id)
    return {segment_id: members[segment_id] for segment_id in SEGMENT_IDS}


def duckdb_members(population: Population) -> dict[str, set[str]]:
    con = reference.connect(population.events_table, population.traits_table, threads=1)
    try:
        return reference.members(con, population.now_ms)
    finally:
        con.close()


@cache
def seeded(seed: int) -> tuple[Population, dict[str, set[str]], dict[str, set[str]]]:
    population = generate(seed, VISITORS)
    # the engine gets each visitor's records in a random order: it must not rely on any
    return population, engine_members(population, shuffle_seed=seed), duckdb_members(population)


def describe(population: Population, visitor_id: str) -> str:
    """A visitor's records relative to now, for a failure message."""
    history = next(h for h in population.histories() if h.visitor_id == visitor_id)
    now = population.now_ms
    lines = [f"{visitor_id} at now={now} (now_s={now // 1000}):"]
    for e in sorted(history.events, key=lambda e: e.ts_ms):
        lines.append(
            f"  event now{e.ts_ms - now:+d}ms {e.name} url={e.url!r} ref={e.ref!r} props={e.props} "
            f"geo={(e.country, e.region, e.city)} device={e.device} expires_at={e.expires_at}"
        )
    for t in sorted(history.traits, key=lambda t: t.ts_ms):
        lines.append(f"  trait now{t.ts_ms - now:+d}ms {t.name}={t.value!r} expires_at={t.expires_at}")
    return "\n".join(lines)


def mismatch(population: Population, segment_id: str, engine: set[str], duckdb: set[str]) -> str:
    only_engine, only_duckdb = sorted(engine - duckdb), sorted(duckdb - engine)
    first = (only_engine or only_duckdb)[0]
    return (
        f"{segment_id}: {len(only_engine)} visitors only in the engine's members {only_engine[:5]}, "
        f"{len(only_duckdb)} only in DuckDB's {only_duckdb[:5]}\n{describe(population, first)}"
    )


# --- the catalogue ------------------------------------------------------------------


def test_catalogue_holds_the_demo_segments_as_deployed():
    # GIVEN the demo's definition files
    files = {path.name: path.read_text() for path in SEGMENTS_DIR.glob("*.yaml")}
    deployed = {d.id: d for d in load_definitions(files)}
    # THEN each is in the catalogue unchanged (so its SQL states the rule that is deployed)
    catalogue = {s.segment_id: s.definition for s in reference.CATALOGUE}
    assert deployed, "no demo segments found"
    assert {i: catalogue.get(i) for i in deployed} == deployed


def _uses(rule: BaseModel, inside_combinator: bool = False) -> set[str]:
    """Every leaf option and combinator a rule uses, e.g. 'event.url_regex', 'nested.not'."""
    kind = next(iter(type(rule).model_fields)).rstrip("_")
    found = {kind}
    children: list[BaseModel] = []
    if isinstance(rule, NotRule):
        children = [rule.not_]
    elif isinstance(rule, (AllRule, AnyRule)):
        children = list(rule.all if isinstance(rule, AllRule) else rule.any)
    if isinstance(rule, (AllRule, AnyRule, NotRule)):
        if inside_combinator:
            found.add(f"nested.{kind}")
        for child in children:
            found |= _uses(child, inside_combinator=True)
        return found
    spec: BaseModel = getattr(rule, kind)
    found |= {f"{kind}.{field}" for field, value in spec if value is not None}
    if isinstance(rule, EventRule) and rule.event.max_count == 0:
        found.add("event.max_count=0")
    if isinstance(rule, VisitsRule) and rule.visits.max == 0:
        found.add("visits.max=0")
    if isinstance(rule, TraitRule) and rule.trait.exists is not None:
        found.add(f"trait.exists={rule.trait.exists}")
    return found


def test_catalogue_uses_every_leaf_option_and_combinator():
    used = set().union(*(_uses(s.definition.rule) for s in reference.CATALOGUE))
    wanted = {
        *(f"event.{o}" for o in ("name", "url_contains", "url_prefix", "url_regex", "ref_contains", "props")),
        *(f"event.{o}" for o in ("min_count", "max_count", "max_count=0", "within_days")),
        *(f"visits.{o}" for o in ("min", "max", "max=0", "within_days")),
        *(f"geo.{o}" for o in ("country", "region", "city")),
        *(f"trait.{o}" for o in ("equals", "in_", "gte", "lte", "exists=True", "exists=False")),
        "device.type",
        "first_seen.within_days",
        "last_seen.within_days",
        *(f"nested.{c}" for c in ("all", "any", "not")),
    }
    assert len(reference.CATALOGUE) >= 15
    assert wanted - used == set()


def test_catalogue_segment_ids_are_unique():
    assert len(set(SEGMENT_IDS)) == len(SEGMENT_IDS)


# --- engine == DuckDB on seeded populations -----------------------------------------


@pytest.mark.parametrize("segment_id", SEGMENT_IDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_engine_members_equal_the_duckdb_reference(seed: int, segment_id: str):
    # GIVEN a generated audience of a few hundred visitors over ~120 days around now
    population, engine, duckdb = seeded(seed)
    # WHEN the engine and the SQL reference each select the segment's members
    # THEN they select the same visitors
    assert engine[segment_id] == duckdb[segment_id], mismatch(
        population, segment_id, engine[segment_id], duckdb[segment_id]
    )


def test_seeded_populations_separate_members_from_non_members_in_every_segment():
    # a segment nobody (or everybody) is in would agree with any engine
    for segment_id in SEGMENT_IDS:
        sizes = [len(seeded(seed)[2][segment_id]) for seed in SEEDS]
        audiences = [len(set(seeded(seed)[0].visitor_ids)) for seed in SEEDS]
        assert sum(sizes) >= 5, f"{segment_id} has almost no members: {sizes}"
        assert all(size < audience for size, audience in zip(sizes, audiences, strict=True)), segment_id


# --- engine == DuckDB on small drawn audiences (shrinks to a minimal case) ----------

# a whole second and half a second later: expiry is in epoch seconds
NOW_S = 1_733_140_800
NOWS = [NOW_S * 1000, NOW_S * 1000 + 500]
# instants that matter: every window boundary and 1 ms either side, now and just after
# it, and the 90-day retention
_EDGES = sorted({-round(d * DAY) + delta for d in BOUNDARY_DAYS for delta in (-1, 0, 1)})
_GAPS = [30 * MINUTE - 1, 30 * MINUTE, 30 * MINUTE + 1, 5 * MINUTE, 2 * DAY]


@st.composite
def small_population(draw: st.DrawFn) -> Population:
    now = draw(st.sampled_from(NOWS))
    visitors = draw(st.integers(1, 4))
    ev: dict[str, list[int]] = defaultdict(list)
    tr: dict[str, list[int]] = defaultdict(list)
    for v in range(visitors):
        anchor = draw(st.sampled_from(_EDGES) | st.integers(-100 * DAY, 2 * DAY))
        offsets = draw(st.lists(st.sampled_from(_GAPS), max_size=5))
        times = [now + anchor + sum(offsets[:i]) for i in range(len(offsets) + 1)]
        times = times[: draw(st.integers(0, len(times)))]
        for ts in times:
            ev["visitor"].append(v)
            ev["ts"].append(ts)
            ev["name"].append(draw(st.integers(0, len(NAMES) - 1)))
            ev["url"].append(draw(st.integers(0, len(URLS) - 1)))
            ev["ref"].append(draw(st.integers(0, len(REFS) - 1)))
            ev["props"].append(draw(st.integers(0, len(PROPS) - 1)))
            ev["place"].append(draw(st.integers(0, len(PLACES) - 1)))
            ev["device"].append(draw(st.integers(0, len(DEVICES) - 1)))
            ev["expires"].append(draw(st.sampled_from([-1, NOW_S - 1, NOW_S, NOW_S + 1, ts // 1000 + 90 * 86_400])))
        trait_times = draw(st.lists(st.integers(-100 * DAY, DAY), max_size=3, unique=True))
        for ts in trait_times:
            name = draw(st.integers(0, len(TRAIT_NAMES) - 1))
            tr["visitor"].append(v)
            tr["name"].append(name)
            tr["value"].append(draw(st.integers(0, len(TRAIT_VALUES[TRAIT_NAMES[name]]) - 1)))
            tr["ts"].append(now + ts)
            tr["expires"].append(draw(st.sampled_from([-1, -1, NOW_S, NOW_S + 1])))

    def col(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    return Population(
        now_ms=now,
        visitor_ids=[f"drawn-visitor-{v}" for v in range(visitors)],
        ev_visitor=col(ev["visitor"]),
        ev_ts=col(ev["ts"]),
        ev_name=col(ev["name"]),
        ev_url=col(ev["url"]),
        ev_ref=col(ev["ref"]),
        ev_props=col(ev["props"]),
        ev_place=col(ev["place"]),
        ev_device=col(ev["device"]),
        ev_expires=col(ev["expires"]),
        tr_visitor=col(tr["visitor"]),
        tr_name=col(tr["name"]),
        tr_value=col(tr["value"]),
        tr_ts=col(tr["ts"]),
        tr_expires=col(tr["expires"]),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=small_population())
def test_engine_matches_duckdb_on_small_drawn_audiences(population: Population):
    engine, duckdb = engine_members(population), duckdb_members(population)
    for segment_id in SEGMENT_IDS:
        assert engine[segment_id] == duckdb[segment_id], mismatch(
            population, segment_id, engine[segment_id], duckdb[segment_id]
        )
