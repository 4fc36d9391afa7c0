"""An independent statement of the segment semantics in DuckDB SQL, to check the rule
engine (functions/core/engine.py) against.

A fixed catalogue of segment definitions (the demo's five from segments/*.yaml and more
that together use every leaf, option and combinator), each with a query written by hand
from DESIGN.md ("Segment definitions"), not from the engine. The queries read two tables:

    events(visitor_id, ts_ms, name, url, ref, props MAP(VARCHAR, VARCHAR),
           country, region, city, device, expires_at)      -- expires_at in epoch seconds
    traits(visitor_id, name, value, ts_ms, expires_at)     -- value as JSON text

`PREPARE` derives, once per build time `now`, what several rules read:
- `live`: the events that exist at now, i.e. not after now and not expired
  (an event is expired when expires_at * 1000 <= now);
- `trait_now`: the latest live value of each of a visitor's traits, as text (the form
  rules compare with: 2.0 is "2", true is "true") and as a number when it is one;
- `visits`: the first event of each visit, a visit being a run of live events with gaps
  of at most 30 minutes over the visitor's whole live history;
- `audience`: every visitor with a live event or a live trait (nobody else is in any
  segment, not even through `not`), with first and last live event, the device of the
  last one, and the most recent known location (the last live event that has any of
  country, region, city).

Each segment's query then selects `visitor_id` from `audience a`. A window of d days is
`ts_ms > {now} - days(d)`; its upper end is `now` because `live` has nothing later.
Conditions on `audience` columns are wrapped in `coalesce(..., false)` so that `NOT`
keeps meaning "the rule does not hold" when a value is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from functions.core.segments import SegmentDefinition

PREPARE = [
    # a window of d days in milliseconds; d may be fractional
    "CREATE OR REPLACE TEMP MACRO days(d) AS CAST(round(CAST(d AS DOUBLE) * 86400000) AS BIGINT)",
    """
    CREATE OR REPLACE TEMP TABLE live AS
    SELECT visitor_id, ts_ms, name, url, ref, props, country, region, city, device
    FROM events
    WHERE ts_ms <= {now} AND (expires_at IS NULL OR expires_at * 1000 > {now})
    """,
    """
    CREATE OR REPLACE TEMP TABLE trait_now AS
    WITH latest AS (
        SELECT visitor_id, name, CAST(value AS JSON) AS value
        FROM traits
        WHERE ts_ms <= {now} AND (expires_at IS NULL OR expires_at * 1000 > {now})
        QUALIFY row_number() OVER (PARTITION BY visitor_id, name ORDER BY ts_ms DESC) = 1
    )
    SELECT
        visitor_id,
        name,
        CASE json_type(value)
            WHEN 'VARCHAR' THEN value ->> '$'
            -- a whole decimal number reads as the integer: 2.0 is "2"
            WHEN 'DOUBLE' THEN CASE
                WHEN CAST(value AS DOUBLE) = trunc(CAST(value AS DOUBLE))
                THEN CAST(CAST(CAST(value AS DOUBLE) AS BIGINT) AS VARCHAR)
                ELSE CAST(value AS VARCHAR)
            END
            ELSE CAST(value AS VARCHAR)  -- integers, and true / false
        END AS text,
        CASE json_type(value)
            WHEN 'BOOLEAN' THEN NULL
            WHEN 'VARCHAR' THEN TRY_CAST(value ->> '$' AS DOUBLE)
            ELSE CAST(value AS DOUBLE)
        END AS number
    FROM latest
    """,
    """
    CREATE OR REPLACE TEMP TABLE visits AS
    SELECT visitor_id, ts_ms AS start_ms
    FROM (
        SELECT visitor_id, ts_ms, ts_ms - lag(ts_ms) OVER (PARTITION BY visitor_id ORDER BY ts_ms) AS gap
        FROM live
    )
    WHERE gap IS NULL OR gap > 30 * 60 * 1000
    """,
    """
    CREATE OR REPLACE TEMP TABLE audience AS
    WITH seen AS (
        SELECT visitor_id, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms, arg_max_null(device, ts_ms) AS device
        FROM live
        GROUP BY visitor_id
    ),
    located AS (
        SELECT visitor_id, country, region, city
        FROM live
        WHERE country IS NOT NULL OR region IS NOT NULL OR city IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY visitor_id ORDER BY ts_ms DESC) = 1
    )
    SELECT known.visitor_id, seen.first_ms, seen.last_ms, seen.device, located.country, located.region, located.city
    FROM (SELECT visitor_id FROM live UNION SELECT visitor_id FROM trait_now) AS known
    LEFT JOIN seen USING (visitor_id)
    LEFT JOIN located USING (visitor_id)
    """,
]


@dataclass(frozen=True)
class ReferenceSegment:
    definition: SegmentDefinition
    sql: str  # selects the members' visitor_id; `{now}` is the build time in epoch ms

    @property
    def segment_id(self) -> str:
        return self.definition.id


def _segment(document: dict[str, Any], sql: str) -> ReferenceSegment:
    return ReferenceSegment(SegmentDefinition.model_validate(document), sql)


CATALOGUE: list[ReferenceSegment] = [
    # --- the demo's segments (segments/*.yaml) ---------------------------------------
    _segment(
        {
            "id": "cart-abandoners",
            "name": "Cart abandoners (14 days)",
            "description": "Added to cart without checking out; retarget with a reminder",
            "destinations": ["demo-dsp"],
            "rule": {
                "all": [
                    {"event": {"name": "add_to_cart", "within_days": 14}},
                    {"event": {"name": "page_view", "url_contains": "/checkout", "within_days": 14, "max_count": 0}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'add_to_cart' AND e.ts_ms > {now} - days(14)) >= 1
          AND (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'page_view'
                 AND contains(lower(e.url), '/checkout') AND e.ts_ms > {now} - days(14)) = 0
        """,
    ),
    _segment(
        {
            "id": "holiday-returning-london-pricing",
            "name": "Returning London visitors who viewed pricing",
            "description": "Target with the Christmas offer",
            "destinations": ["demo-dsp"],
            "rule": {
                "all": [
                    {"geo": {"city": "London"}},
                    {"visits": {"min": 2, "within_days": 30}},
                    {"event": {"name": "page_view", "url_contains": "/pricing", "within_days": 30}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE coalesce(lower(a.city) = 'london', false)
          AND (SELECT count(*) FROM visits v WHERE v.visitor_id = a.visitor_id AND v.start_ms > {now} - days(30)) >= 2
          AND (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'page_view'
                 AND contains(lower(e.url), '/pricing') AND e.ts_ms > {now} - days(30)) >= 1
        """,
    ),
    _segment(
        {
            "id": "lapsed-buyers",
            "name": "Lapsed buyers",
            "description": "Purchased at some point, no visit in the last 14 days",
            "destinations": ["other-ssp"],
            "rule": {"all": [{"event": {"name": "purchase"}}, {"not": {"last_seen": {"within_days": 14}}}]},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e WHERE e.visitor_id = a.visitor_id AND e.name = 'purchase') >= 1
          AND NOT coalesce(a.last_ms > {now} - days(14), false)
        """,
    ),
    _segment(
        {
            "id": "mobile-blog-readers",
            "name": "Mobile blog readers",
            "description": "Content-engaged visitors on mobile, for native ads",
            "destinations": ["demo-dsp", "other-ssp"],
            "rule": {
                "all": [
                    {"device": {"type": "mobile"}},
                    {"event": {"url_prefix": "https://shop.example/blog/", "min_count": 2, "within_days": 30}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE coalesce(a.device = 'mobile', false)
          AND (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND starts_with(e.url, 'https://shop.example/blog/')
                 AND e.ts_ms > {now} - days(30)) >= 2
        """,
    ),
    _segment(
        {
            "id": "new-uk-visitors",
            "name": "New visitors in the UK (7 days)",
            "description": "Welcome offer for first-week visitors",
            "destinations": ["demo-dsp"],
            "rule": {"all": [{"first_seen": {"within_days": 7}}, {"geo": {"country": "GB"}}]},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE coalesce(a.first_ms > {now} - days(7), false) AND coalesce(lower(a.country) = 'gb', false)
        """,
    ),
    # --- event filters ---------------------------------------------------------------
    _segment(
        {
            "id": "order-confirmations",
            "name": "One or two order pages in 60 days",
            "rule": {
                "event": {
                    "name": "page_view",
                    "url_regex": r"/order/\d+(\?|$)",
                    "min_count": 1,
                    "max_count": 2,
                    "within_days": 60,
                }
            },
        },
        r"""
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'page_view'
                 AND regexp_matches(e.url, '/order/\d+(\?|$)') AND e.ts_ms > {now} - days(60)) BETWEEN 1 AND 2
        """,
    ),
    _segment(
        {
            "id": "search-referred-paid-signups",
            "name": "Came from Google, signed up paying",
            "rule": {
                "all": [
                    {"event": {"ref_contains": "Google.", "within_days": 30}},
                    {"event": {"name": "signup", "props": {"paid": True}}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND contains(lower(e.ref), 'google.')
                 AND e.ts_ms > {now} - days(30)) >= 1
          AND (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'signup' AND e.props['paid'] = 'true') >= 1
        """,
    ),
    _segment(
        {
            "id": "pro-team-buyers",
            "name": "Bought the pro plan for five, or twice at 19.50",
            "rule": {
                "any": [
                    {"event": {"name": "purchase", "props": {"plan": "pro", "seats": 5}}},
                    {"event": {"props": {"price": 19.5}, "min_count": 2}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'purchase'
                 AND e.props['plan'] = 'pro' AND e.props['seats'] = '5') >= 1
           OR (SELECT count(*) FROM live e WHERE e.visitor_id = a.visitor_id AND e.props['price'] = '19.5') >= 2
        """,
    ),
    _segment(
        {
            "id": "plan-comparers",
            "name": "Compared plans twice, or read the blog on the capitalised host",
            "rule": {
                "any": [
                    {"event": {"url_contains": "/Pricing/PLANS", "min_count": 2}},
                    {"event": {"url_prefix": "https://Shop.example/"}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND contains(lower(e.url), '/pricing/plans')) >= 2
           OR (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND starts_with(e.url, 'https://Shop.example/')) >= 1
        """,
    ),
    _segment(
        {
            "id": "light-browsers",
            "name": "At most three page views this week",
            "rule": {"event": {"name": "page_view", "max_count": 3, "within_days": 7}},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'page_view' AND e.ts_ms > {now} - days(7)) <= 3
        """,
    ),
    # --- visits ----------------------------------------------------------------------
    _segment(
        {
            "id": "regulars",
            "name": "Three to six visits in 30 days",
            "rule": {"visits": {"min": 3, "max": 6, "within_days": 30}},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM visits v
               WHERE v.visitor_id = a.visitor_id AND v.start_ms > {now} - days(30)) BETWEEN 3 AND 6
        """,
    ),
    _segment(
        {
            "id": "one-visit-anonymous",
            "name": "At most one visit ever, no e-mail known",
            "rule": {"all": [{"visits": {"max": 1}}, {"not": {"trait": {"name": "email_hash", "exists": True}}}]},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM visits v WHERE v.visitor_id = a.visitor_id) <= 1
          AND NOT EXISTS (SELECT 1 FROM trait_now t WHERE t.visitor_id = a.visitor_id AND t.name = 'email_hash')
        """,
    ),
    _segment(
        {
            "id": "away-this-week",
            "name": "No visit starting this week",
            "rule": {"visits": {"max": 0, "within_days": 7}},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM visits v WHERE v.visitor_id = a.visitor_id AND v.start_ms > {now} - days(7)) = 0
        """,
    ),
    _segment(
        {
            "id": "just-back",
            "name": "Active in the last half day, returning within 36 hours, known for 45 days",
            "rule": {
                "all": [
                    {"event": {"within_days": 0.5}},
                    {"visits": {"min": 2, "within_days": 1.5}},
                    {"not": {"first_seen": {"within_days": 45.25}}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE (SELECT count(*) FROM live e WHERE e.visitor_id = a.visitor_id AND e.ts_ms > {now} - days(0.5)) >= 1
          AND (SELECT count(*) FROM visits v WHERE v.visitor_id = a.visitor_id AND v.start_ms > {now} - days(1.5)) >= 2
          AND NOT coalesce(a.first_ms > {now} - days(45.25), false)
        """,
    ),
    # --- geo, device, first and last seen --------------------------------------------
    _segment(
        {
            "id": "scots-parisians-ontarians",
            "name": "In Scotland, Paris, or London (Ontario)",
            "rule": {
                "any": [
                    {"geo": {"country": "gb", "region": "SCT"}},
                    {"geo": {"city": "paris"}},
                    {"geo": {"country": "CA", "city": "LONDON"}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE coalesce(lower(a.country) = 'gb' AND lower(a.region) = 'sct', false)
           OR coalesce(lower(a.city) = 'paris', false)
           OR coalesce(lower(a.country) = 'ca' AND lower(a.city) = 'london', false)
        """,
    ),
    _segment(
        {
            "id": "active-big-screens",
            "name": "On a desktop or tablet, seen in the last 3 days",
            "rule": {
                "all": [
                    {"any": [{"device": {"type": "desktop"}}, {"device": {"type": "tablet"}}]},
                    {"last_seen": {"within_days": 3}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE coalesce(a.device = 'desktop' OR a.device = 'tablet', false)
          AND coalesce(a.last_ms > {now} - days(3), false)
        """,
    ),
    _segment(
        {
            "id": "uk-non-mobile-non-buyers",
            "name": "Did not buy in 60 days, in the UK, not on mobile",
            "rule": {
                "not": {
                    "any": [
                        {"event": {"name": "purchase", "within_days": 60}},
                        {"not": {"all": [{"geo": {"country": "GB"}}, {"not": {"device": {"type": "mobile"}}}]}},
                    ]
                }
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE NOT (
            (SELECT count(*) FROM live e
             WHERE e.visitor_id = a.visitor_id AND e.name = 'purchase' AND e.ts_ms > {now} - days(60)) >= 1
            OR NOT (coalesce(lower(a.country) = 'gb', false) AND NOT coalesce(a.device = 'mobile', false))
        )
        """,
    ),
    # --- traits ----------------------------------------------------------------------
    _segment(
        {
            "id": "premium-tier",
            "name": "Gold or platinum tier",
            "rule": {"trait": {"name": "tier", "in": ["gold", "platinum"]}},
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'tier' AND t.text IN ('gold', 'platinum'))
        """,
    ),
    _segment(
        {
            "id": "untiered-or-capital-gold",
            "name": "No tier, or the tier spelt Gold",
            "rule": {
                "any": [
                    {"trait": {"name": "tier", "exists": False}},
                    {"trait": {"name": "tier", "equals": "Gold"}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE NOT EXISTS (SELECT 1 FROM trait_now t WHERE t.visitor_id = a.visitor_id AND t.name = 'tier')
           OR EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'tier' AND t.text = 'Gold')
        """,
    ),
    _segment(
        {
            "id": "young-adults-with-email",
            "name": "Aged 18 to 34 with a known e-mail",
            "rule": {
                "all": [
                    {"trait": {"name": "age", "gte": 18, "lte": 34}},
                    {"not": {"trait": {"name": "email_hash", "exists": False}}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'age' AND t.number BETWEEN 18 AND 34)
          AND EXISTS (SELECT 1 FROM trait_now t WHERE t.visitor_id = a.visitor_id AND t.name = 'email_hash')
        """,
    ),
    _segment(
        {
            "id": "families",
            "name": "Two children, or home-owning over-30s, or minors",
            "rule": {
                "any": [
                    {"trait": {"name": "children", "equals": 2}},
                    {"all": [{"trait": {"name": "homeowner", "equals": True}}, {"trait": {"name": "age", "gte": 30}}]},
                    {"trait": {"name": "age", "lte": 17.5}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'children' AND t.text = '2')
           OR (EXISTS (SELECT 1 FROM trait_now t
                       WHERE t.visitor_id = a.visitor_id AND t.name = 'homeowner' AND t.text = 'true')
               AND EXISTS (SELECT 1 FROM trait_now t
                           WHERE t.visitor_id = a.visitor_id AND t.name = 'age' AND t.number >= 30))
           OR EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'age' AND t.number <= 17.5)
        """,
    ),
    # --- imported traits (`<source>.<trait>`) with web behaviour -------------------------
    _segment(
        {
            "id": "gold-loyalty-pricing-viewers",
            "name": "Harbor silver and gold customers who viewed pricing (30 days)",
            "description": "Loyal Harbor Retail customers comparing our prices; target with the loyalty bundle",
            "destinations": ["demo-dsp"],
            "rule": {
                "all": [
                    {"trait": {"name": "harbor-crm.tier", "in": ["silver", "gold"]}},
                    {"event": {"name": "page_view", "url_contains": "/pricing", "within_days": 30}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'harbor-crm.tier'
                        AND t.text IN ('silver', 'gold'))
          AND (SELECT count(*) FROM live e
               WHERE e.visitor_id = a.visitor_id AND e.name = 'page_view'
                 AND contains(lower(e.url), '/pricing') AND e.ts_ms > {now} - days(30)) >= 1
        """,
    ),
    _segment(
        {
            "id": "travel-intenders-never-seen",
            "name": "In market for travel, known from imports alone",
            "rule": {
                "all": [
                    {"trait": {"name": "interest-graph.in_market_travel", "equals": True}},
                    {"event": {"max_count": 0}},
                    {"not": {"visits": {"min": 1}}},
                ]
            },
        },
        """
        SELECT a.visitor_id FROM audience a
        WHERE EXISTS (SELECT 1 FROM trait_now t
                      WHERE t.visitor_id = a.visitor_id AND t.name = 'interest-graph.in_market_travel'
                        AND t.text = 'true')
          AND NOT EXISTS (SELECT 1 FROM live e WHERE e.visitor_id = a.visitor_id)
        """,
    ),
]


def connect(events: pa.Table, traits: pa.Table, *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with `events` and `traits` registered (Arrow, not copied)."""
    con = duckdb.connect()
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.register("events", events)
    con.register("traits", traits)
    return con


def member_tables(
    con: duckdb.DuckDBPyConnection, now_ms: int, catalogue: list[ReferenceSegment] = CATALOGUE
) -> dict[str, pa.Table]:
    """Each segment's members at `now_ms`, as one-column Arrow tables."""
    now = str(int(now_ms))
    for statement in PREPARE:
        con.execute(statement.replace("{now}", now))
    return {s.segment_id: con.sql(s.sql.replace("{now}", now)).to_arrow_table() for s in catalogue}


def members(
    con: duckdb.DuckDBPyConnection, now_ms: int, catalogue: list[ReferenceSegment] = CATALOGUE
) -> dict[str, set[str]]:
    """Each segment's members at `now_ms`, as sets of visitor ids."""
    return {
        segment_id: set(table.column(0).to_pylist())
        for segment_id, table in member_tables(con, now_ms, catalogue).items()
    }
