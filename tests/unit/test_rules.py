"""Semantics of the segment rule language (DESIGN.md, "Segment definitions"), evaluated by
functions/core/engine.py over one visitor's history at the build's time `now`.

Each test builds a history with the helpers below, states a rule as it would be written
in a definition file, and asks whether the visitor is in that segment.
"""

from __future__ import annotations

from collections.abc import Iterable

from functions.core.engine import (
    EventRecord,
    TraitRecord,
    VisitorHistory,
    compile_segments,
    evaluate,
)
from functions.core.segments import SegmentDefinition

MS = 1
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z, the build's evaluation time
NOW_S = NOW // 1000
VISITOR = "visitor-0001"


# --- builders -----------------------------------------------------------------------


def ago(days: float = 0, hours: float = 0, minutes: float = 0, ms: int = 0) -> int:
    """The epoch milliseconds that long before `NOW`."""
    return NOW - round(days * DAY + hours * HOUR + minutes * MINUTE) - ms


def hit(at: int, name: str = "page_view", **fields: object) -> EventRecord:
    """One event at `at` (epoch ms); `fields` are those of EventRecord (url, geo, ...)."""
    return EventRecord(ts_ms=at, name=name, **fields)  # type: ignore[arg-type]


def trait(name: str, value: object, at: int | None = None, expires_at: int | None = None) -> TraitRecord:
    return TraitRecord(name=name, value=value, ts_ms=ago(days=1) if at is None else at, expires_at=expires_at)


def visitor(*events: EventRecord, traits: Iterable[TraitRecord] = (), visitor_id: str = VISITOR) -> VisitorHistory:
    return VisitorHistory(visitor_id=visitor_id, events=list(events), traits=list(traits))


def segment(rule: object, segment_id: str = "the-segment") -> SegmentDefinition:
    """A definition around `rule`, validated exactly as a definition file is."""
    return SegmentDefinition.model_validate({"id": segment_id, "name": segment_id, "rule": rule})


def in_segment(rule: object, history: VisitorHistory, now: int = NOW) -> bool:
    """Whether the build at `now` puts the visitor of `history` in the segment of `rule`."""
    members = dict(evaluate([history], compile_segments([segment(rule)]), now))
    return "the-segment" in members.get(history.visitor_id, [])


PAGE_VIEW_30_DAYS = {"event": {"name": "page_view", "within_days": 30}}


# --- the window (now - within_days, now] --------------------------------------------


def test_event_exactly_at_the_window_start_is_outside_the_window():
    # GIVEN a page view exactly 30 days before now
    history = visitor(hit(ago(days=30)))
    # WHEN the rule asks for a page view within 30 days
    # THEN the visitor is not in the segment: the window is open at its start
    assert not in_segment(PAGE_VIEW_30_DAYS, history)


def test_event_one_millisecond_after_the_window_start_is_inside():
    history = visitor(hit(ago(days=30) + 1 * MS))
    assert in_segment(PAGE_VIEW_30_DAYS, history)


def test_event_exactly_at_now_is_inside_the_window():
    history = visitor(hit(NOW))
    assert in_segment(PAGE_VIEW_30_DAYS, history)


def test_event_after_now_does_not_count():
    # GIVEN an old visit (so the visitor is known) and a page view 1 ms after now
    history = visitor(hit(ago(days=60)), hit(NOW + 1 * MS))
    # THEN there was no page view in the last 30 days as of now
    assert not in_segment(PAGE_VIEW_30_DAYS, history)


def test_event_without_window_counts_over_all_history():
    history = visitor(hit(ago(days=400), name="purchase"))
    assert in_segment({"event": {"name": "purchase"}}, history)


def test_fractional_window_of_half_a_day_is_twelve_hours():
    rule = {"event": {"name": "page_view", "within_days": 0.5}}
    assert not in_segment(rule, visitor(hit(ago(hours=12))))
    assert in_segment(rule, visitor(hit(ago(hours=12) + 1 * MS)))


def test_build_time_is_the_given_now_not_the_clock():
    # GIVEN a page view at NOW, evaluated by a build 31 days later
    history = visitor(hit(NOW))
    assert not in_segment(PAGE_VIEW_30_DAYS, history, now=NOW + 31 * DAY)


# --- expired events -----------------------------------------------------------------


def test_event_expiring_exactly_at_now_is_not_counted():
    # GIVEN a purchase whose retention ends at now (epoch seconds), and a live page view
    history = visitor(hit(ago(days=1), name="purchase", expires_at=NOW_S), hit(ago(days=1)))
    assert not in_segment({"event": {"name": "purchase"}}, history)


def test_event_expired_before_now_is_not_counted():
    history = visitor(hit(ago(days=100), name="purchase", expires_at=NOW_S - 10 * 86_400), hit(ago(days=1)))
    assert not in_segment({"event": {"name": "purchase"}}, history)


def test_event_expiring_one_second_after_now_is_counted():
    history = visitor(hit(ago(days=1), name="purchase", expires_at=NOW_S + 1))
    assert in_segment({"event": {"name": "purchase"}}, history)


def test_visitor_with_only_expired_events_is_in_no_segment_even_for_not_rules():
    # GIVEN a visitor whose every event has expired
    history = visitor(hit(ago(days=100), expires_at=NOW_S - 1), hit(ago(days=95), expires_at=NOW_S))
    # THEN "did not purchase" does not make them an audience member
    assert not in_segment({"not": {"event": {"name": "purchase"}}}, history)


def test_visitor_with_only_expired_events_is_in_no_segment_even_for_max_count_zero():
    history = visitor(hit(ago(days=100), expires_at=NOW_S - 1))
    assert not in_segment({"event": {"name": "purchase", "max_count": 0}}, history)


def test_visitor_with_only_events_after_now_is_in_no_segment_even_for_not_rules():
    history = visitor(hit(NOW + 1 * MS), hit(NOW + DAY))
    assert not in_segment({"not": {"event": {"name": "purchase"}}}, history)


def test_visitor_with_a_live_event_is_in_a_not_segment():
    # the counterpart of the two tests above: a known visitor who did not purchase
    history = visitor(hit(ago(days=100), expires_at=NOW_S - 1), hit(ago(days=1)))
    assert in_segment({"not": {"event": {"name": "purchase"}}}, history)


# --- counts -------------------------------------------------------------------------


def test_min_count_defaults_to_one():
    rule = {"event": {"name": "purchase"}}
    assert not in_segment(rule, visitor(hit(ago(days=1))))
    assert in_segment(rule, visitor(hit(ago(days=1)), hit(ago(days=2), name="purchase")))


def test_min_count_needs_that_many_matching_events():
    rule = {"event": {"name": "purchase", "min_count": 3}}
    two = [hit(ago(days=d), name="purchase") for d in (1, 2)]
    assert not in_segment(rule, visitor(*two, hit(ago(days=3))))
    assert in_segment(rule, visitor(*two, hit(ago(days=3), name="purchase")))


def test_max_count_zero_means_did_not():
    # GIVEN a rule "did not purchase": max_count 0, so min_count defaults to 0
    rule = {"event": {"name": "purchase", "max_count": 0}}
    # THEN a visitor with no purchase is in, and one with a purchase is not
    assert in_segment(rule, visitor(hit(ago(days=1))))
    assert not in_segment(rule, visitor(hit(ago(days=1)), hit(ago(days=2), name="purchase")))


def test_max_count_alone_allows_zero_up_to_max():
    rule = {"event": {"name": "purchase", "max_count": 2}}
    purchases = [hit(ago(days=d), name="purchase") for d in (1, 2, 3)]
    assert in_segment(rule, visitor(hit(ago(days=5))))
    assert in_segment(rule, visitor(*purchases[:2]))
    assert not in_segment(rule, visitor(*purchases))


def test_min_and_max_count_bound_both_sides():
    rule = {"event": {"name": "purchase", "min_count": 2, "max_count": 3}}
    purchases = [hit(ago(days=d), name="purchase") for d in (1, 2, 3, 4)]
    assert not in_segment(rule, visitor(*purchases[:1]))
    assert in_segment(rule, visitor(*purchases[:2]))
    assert in_segment(rule, visitor(*purchases[:3]))
    assert not in_segment(rule, visitor(*purchases[:4]))


def test_events_outside_the_window_do_not_count_against_max_count():
    # GIVEN five purchases 40 days ago and a page view yesterday
    history = visitor(*(hit(ago(days=40), name="purchase") for _ in range(5)), hit(ago(days=1)))
    # THEN the visitor did not purchase in the last 30 days
    assert in_segment({"event": {"name": "purchase", "max_count": 0, "within_days": 30}}, history)


def test_only_events_matching_every_filter_are_counted():
    # GIVEN one event matching name and url, and others matching only one of them
    history = visitor(
        hit(ago(days=1), name="page_view", url="https://shop.example.com/pricing"),
        hit(ago(days=1), name="page_view", url="https://shop.example.com/about"),
        hit(ago(days=1), name="click", url="https://shop.example.com/pricing"),
    )
    assert in_segment({"event": {"name": "page_view", "url_contains": "/pricing", "max_count": 1}}, history)
    assert not in_segment({"event": {"name": "page_view", "url_contains": "/pricing", "min_count": 2}}, history)


def test_event_name_must_match_exactly():
    history = visitor(hit(ago(days=1), name="page_view_2"))
    assert not in_segment({"event": {"name": "page_view"}}, history)


# --- url and ref filters ------------------------------------------------------------


def test_url_contains_is_case_insensitive():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/PRICING/Plans"))
    assert in_segment({"event": {"url_contains": "/Pricing/plans"}}, history)


def test_url_contains_needs_the_text_in_the_url():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/prices"))
    assert not in_segment({"event": {"url_contains": "/pricing"}}, history)


def test_url_filters_never_match_an_event_without_url():
    history = visitor(hit(ago(days=1), ref="https://shop.example.com/pricing"))
    assert not in_segment({"event": {"url_contains": "pricing"}}, history)
    assert not in_segment({"event": {"url_prefix": "https://"}}, history)
    assert not in_segment({"event": {"url_regex": ".*"}}, history)


def test_url_prefix_matches_the_start_of_the_url():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/cart?step=2"))
    assert in_segment({"event": {"url_prefix": "https://shop.example.com/cart"}}, history)


def test_url_prefix_is_case_sensitive():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/Cart"))
    assert not in_segment({"event": {"url_prefix": "https://shop.example.com/cart"}}, history)


def test_url_prefix_does_not_match_elsewhere_in_the_url():
    history = visitor(hit(ago(days=1), url="https://blog.example.com/?next=https://shop.example.com/cart"))
    assert not in_segment({"event": {"url_prefix": "https://shop.example.com/cart"}}, history)


def test_url_regex_searches_anywhere_in_the_url():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/en/order/12345?utm=x"))
    assert in_segment({"event": {"url_regex": r"/order/\d+\?"}}, history)


def test_url_regex_is_case_sensitive():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/en/ORDER/12345"))
    assert not in_segment({"event": {"url_regex": r"/order/\d+"}}, history)


def test_url_regex_anchors_apply_to_the_whole_url():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/order/12345"))
    assert in_segment({"event": {"url_regex": r"/order/\d+$"}}, history)
    assert not in_segment({"event": {"url_regex": r"^/order/"}}, history)


def test_ref_contains_is_case_insensitive():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/", ref="https://www.GOOGLE.com/search?q=x"))
    assert in_segment({"event": {"ref_contains": "Google.COM"}}, history)


def test_ref_contains_looks_at_the_referrer_not_the_url():
    history = visitor(hit(ago(days=1), url="https://shop.example.com/?from=google.com", ref="https://bing.com/"))
    assert not in_segment({"event": {"ref_contains": "google.com"}}, history)


# --- props --------------------------------------------------------------------------


def test_props_equal_as_strings():
    history = visitor(hit(ago(days=1), name="purchase", props={"plan": "pro", "seats": "5"}))
    assert in_segment({"event": {"props": {"plan": "pro"}}}, history)
    assert not in_segment({"event": {"props": {"plan": "Pro"}}}, history)


def test_integer_prop_in_the_definition_matches_its_string_form():
    history = visitor(hit(ago(days=1), name="purchase", props={"seats": "5"}))
    assert in_segment({"event": {"props": {"seats": 5}}}, history)
    assert not in_segment({"event": {"props": {"seats": 6}}}, history)


def test_decimal_prop_in_the_definition_matches_its_string_form():
    history = visitor(hit(ago(days=1), name="purchase", props={"price": "19.5"}))
    assert in_segment({"event": {"props": {"price": 19.5}}}, history)


def test_boolean_props_in_the_definition_match_true_and_false():
    paid = visitor(hit(ago(days=1), name="signup", props={"paid": "true"}))
    free = visitor(hit(ago(days=1), name="signup", props={"paid": "false"}))
    assert in_segment({"event": {"props": {"paid": True}}}, paid)
    assert not in_segment({"event": {"props": {"paid": True}}}, free)
    assert in_segment({"event": {"props": {"paid": False}}}, free)


def test_every_prop_of_the_rule_must_match():
    history = visitor(hit(ago(days=1), name="purchase", props={"plan": "pro", "seats": "5"}))
    assert in_segment({"event": {"props": {"plan": "pro", "seats": "5"}}}, history)
    assert not in_segment({"event": {"props": {"plan": "pro", "seats": "6"}}}, history)


def test_missing_prop_does_not_match():
    history = visitor(hit(ago(days=1), name="purchase", props={"plan": "pro"}))
    assert not in_segment({"event": {"props": {"coupon": "xmas"}}}, history)


# --- visits -------------------------------------------------------------------------


def test_events_exactly_30_minutes_apart_are_one_visit():
    history = visitor(hit(ago(days=2)), hit(ago(days=2) + 30 * MINUTE))
    assert not in_segment({"visits": {"min": 2}}, history)


def test_events_30_minutes_and_1_ms_apart_are_two_visits():
    history = visitor(hit(ago(days=2)), hit(ago(days=2) + 30 * MINUTE + 1 * MS))
    assert in_segment({"visits": {"min": 2}}, history)


def test_a_visit_is_bounded_by_gaps_not_by_length():
    # GIVEN events every 20 minutes for 5 hours
    history = visitor(*(hit(ago(days=2) + i * 20 * MINUTE) for i in range(16)))
    # THEN it is one single visit
    assert in_segment({"visits": {"max": 1}}, history)


def test_visits_min_two_is_returning():
    one_visit = visitor(hit(ago(days=3)), hit(ago(days=3) + 5 * MINUTE))
    two_visits = visitor(hit(ago(days=3)), hit(ago(days=1)))
    assert not in_segment({"visits": {"min": 2}}, one_visit)
    assert in_segment({"visits": {"min": 2}}, two_visits)


def test_visits_max_alone_allows_up_to_max():
    rule = {"visits": {"max": 1}}
    assert in_segment(rule, visitor(hit(ago(days=3))))
    assert not in_segment(rule, visitor(hit(ago(days=3)), hit(ago(days=1))))


def test_visit_counts_when_its_first_event_lies_in_the_window():
    history = visitor(hit(ago(days=1) + 1 * MS), hit(ago(days=1) + 10 * MINUTE))
    assert in_segment({"visits": {"min": 1, "within_days": 1}}, history)


def test_visit_starting_exactly_at_the_window_start_does_not_count():
    history = visitor(hit(ago(days=1)), hit(ago(days=1) + 10 * MINUTE))
    assert not in_segment({"visits": {"min": 1, "within_days": 1}}, history)


def test_visit_starting_before_the_window_and_continuing_into_it_does_not_count():
    # GIVEN one visit that starts 10 minutes before the 1-day window and goes on inside it
    start = ago(days=1, minutes=10)
    history = visitor(*(hit(start + i * 10 * MINUTE) for i in range(6)))
    # THEN there is no visit in the window: a visit counts by its first event
    assert not in_segment({"visits": {"min": 1, "within_days": 1}}, history)


def test_visits_in_the_window_are_counted_apart_from_older_ones():
    # GIVEN three visits 10 days ago and one yesterday
    history = visitor(hit(ago(days=10)), hit(ago(days=10, hours=2)), hit(ago(days=10, hours=4)), hit(ago(days=1)))
    assert in_segment({"visits": {"max": 1, "within_days": 7}}, history)
    assert not in_segment({"visits": {"min": 2, "within_days": 7}}, history)


def test_events_after_now_form_no_visit():
    history = visitor(hit(ago(days=2)), hit(NOW + 2 * HOUR))
    assert not in_segment({"visits": {"min": 2}}, history)


def test_expired_events_form_no_visit():
    history = visitor(hit(ago(days=20), expires_at=NOW_S), hit(ago(days=1)))
    assert not in_segment({"visits": {"min": 2}}, history)


def test_expired_event_does_not_carry_a_visit_into_the_window():
    # GIVEN an expired event 10 minutes before the window and a live one 10 minutes inside
    history = visitor(hit(ago(days=1, minutes=10), expires_at=NOW_S), hit(ago(days=1, minutes=-10)))
    # THEN the live event starts its own visit, inside the window
    assert in_segment({"visits": {"min": 1, "within_days": 1}}, history)


# --- geo ----------------------------------------------------------------------------


def test_geo_matches_city_case_insensitively():
    history = visitor(hit(ago(days=1), country="GB", region="ENG", city="LONDON"))
    assert in_segment({"geo": {"city": "london"}}, history)
    assert in_segment({"geo": {"country": "gb", "region": "eng"}}, history)


def test_geo_needs_every_given_part_to_match():
    history = visitor(hit(ago(days=1), country="CA", region="ON", city="London"))
    assert not in_segment({"geo": {"country": "GB", "city": "London"}}, history)


def test_geo_is_the_most_recent_known_location():
    history = visitor(hit(ago(days=1), country="GB", city="London"), hit(ago(days=5), country="FR", city="Paris"))
    assert in_segment({"geo": {"city": "London"}}, history)
    assert not in_segment({"geo": {"city": "Paris"}}, history)


def test_later_event_without_geo_does_not_erase_the_location():
    history = visitor(hit(ago(days=5), country="GB", city="London"), hit(ago(days=1)))
    assert in_segment({"geo": {"city": "London"}}, history)


def test_location_after_now_is_ignored():
    history = visitor(hit(ago(days=1), country="GB", city="London"), hit(NOW + 1 * MS, country="FR", city="Paris"))
    assert in_segment({"geo": {"city": "London"}}, history)
    assert not in_segment({"geo": {"city": "Paris"}}, history)


def test_location_of_an_expired_event_is_ignored():
    history = visitor(hit(ago(days=100), country="GB", city="London", expires_at=NOW_S - 1), hit(ago(days=1)))
    assert not in_segment({"geo": {"city": "London"}}, history)


def test_visitor_without_any_location_matches_no_geo():
    history = visitor(hit(ago(days=1)))
    assert not in_segment({"geo": {"country": "GB"}}, history)


# --- traits -------------------------------------------------------------------------


def test_trait_latest_value_wins():
    # GIVEN a tier that was silver, then gold (recorded out of order)
    history = visitor(
        hit(ago(days=1)), traits=[trait("tier", "gold", at=ago(days=2)), trait("tier", "silver", at=ago(days=9))]
    )
    assert in_segment({"trait": {"name": "tier", "equals": "gold"}}, history)
    assert not in_segment({"trait": {"name": "tier", "equals": "silver"}}, history)


def test_trait_equals_needs_the_same_value():
    history = visitor(hit(ago(days=1)), traits=[trait("tier", "gold")])
    assert not in_segment({"trait": {"name": "tier", "equals": "platinum"}}, history)
    assert not in_segment({"trait": {"name": "segment", "equals": "gold"}}, history)


def test_trait_equals_compares_numbers_and_booleans():
    history = visitor(hit(ago(days=1)), traits=[trait("children", 2), trait("homeowner", True)])
    assert in_segment({"trait": {"name": "children", "equals": 2}}, history)
    assert in_segment({"trait": {"name": "homeowner", "equals": True}}, history)
    assert not in_segment({"trait": {"name": "homeowner", "equals": False}}, history)


def test_trait_in_holds_for_any_listed_value():
    history = visitor(hit(ago(days=1)), traits=[trait("tier", "silver")])
    assert in_segment({"trait": {"name": "tier", "in": ["gold", "silver"]}}, history)
    assert not in_segment({"trait": {"name": "tier", "in": ["gold", "platinum"]}}, history)


def test_trait_gte_is_inclusive():
    rule = {"trait": {"name": "age", "gte": 18}}
    assert in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 18)]))
    assert not in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 17.9)]))


def test_trait_lte_is_inclusive():
    rule = {"trait": {"name": "age", "lte": 34}}
    assert in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 34)]))
    assert not in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 35)]))


def test_trait_gte_and_lte_together_are_a_range():
    rule = {"trait": {"name": "age", "gte": 18, "lte": 34}}
    assert in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 25)]))
    assert not in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 40)]))
    assert not in_segment(rule, visitor(hit(ago(days=1)), traits=[trait("age", 12)]))


def test_trait_range_reads_numbers_imported_as_text():
    assert in_segment({"trait": {"name": "age", "gte": 18}}, visitor(hit(ago(days=1)), traits=[trait("age", "42")]))


def test_trait_range_never_holds_for_a_value_that_is_not_a_number():
    history = visitor(hit(ago(days=1)), traits=[trait("age", "unknown")])
    assert not in_segment({"trait": {"name": "age", "gte": 0}}, history)


def test_trait_range_does_not_hold_when_the_trait_is_missing():
    assert not in_segment({"trait": {"name": "age", "lte": 99}}, visitor(hit(ago(days=1))))


def test_trait_exists():
    with_trait = visitor(hit(ago(days=1)), traits=[trait("email_hash", "ab12")])
    without = visitor(hit(ago(days=1)))
    assert in_segment({"trait": {"name": "email_hash", "exists": True}}, with_trait)
    assert not in_segment({"trait": {"name": "email_hash", "exists": True}}, without)
    assert in_segment({"trait": {"name": "email_hash", "exists": False}}, without)
    assert not in_segment({"trait": {"name": "email_hash", "exists": False}}, with_trait)


def test_trait_recorded_after_now_is_ignored():
    history = visitor(
        hit(ago(days=1)), traits=[trait("tier", "silver", at=ago(days=3)), trait("tier", "gold", at=NOW + 1 * MS)]
    )
    assert in_segment({"trait": {"name": "tier", "equals": "silver"}}, history)


def test_expired_trait_is_ignored():
    history = visitor(hit(ago(days=1)), traits=[trait("tier", "gold", at=ago(days=100), expires_at=NOW_S)])
    assert not in_segment({"trait": {"name": "tier", "exists": True}}, history)


# --- device -------------------------------------------------------------------------


def test_device_is_that_of_the_most_recent_event():
    # GIVEN a visitor on mobile last week and on desktop yesterday
    history = visitor(hit(ago(days=1), device="desktop"), hit(ago(days=7), device="mobile"))
    assert in_segment({"device": {"type": "desktop"}}, history)
    assert not in_segment({"device": {"type": "mobile"}}, history)


def test_device_of_an_event_after_now_is_ignored():
    history = visitor(hit(ago(days=1), device="tablet"), hit(NOW + 1 * MS, device="mobile"))
    assert in_segment({"device": {"type": "tablet"}}, history)
    assert not in_segment({"device": {"type": "mobile"}}, history)


def test_device_of_an_expired_event_is_ignored():
    history = visitor(hit(ago(days=1), device="tablet", expires_at=NOW_S), hit(ago(days=2), device="desktop"))
    assert in_segment({"device": {"type": "desktop"}}, history)


# --- first_seen and last_seen -------------------------------------------------------


def test_first_seen_in_the_window_is_a_new_visitor():
    rule = {"first_seen": {"within_days": 7}}
    assert in_segment(rule, visitor(hit(ago(days=6)), hit(ago(days=1))))
    assert not in_segment(rule, visitor(hit(ago(days=8)), hit(ago(days=1))))


def test_first_seen_exactly_at_the_window_start_is_outside():
    rule = {"first_seen": {"within_days": 7}}
    assert not in_segment(rule, visitor(hit(ago(days=7))))
    assert in_segment(rule, visitor(hit(ago(days=7) + 1 * MS)))


def test_first_seen_ignores_expired_events():
    history = visitor(hit(ago(days=100), expires_at=NOW_S - 1), hit(ago(days=3)))
    assert in_segment({"first_seen": {"within_days": 7}}, history)


def test_last_seen_in_the_window_is_an_active_visitor():
    rule = {"last_seen": {"within_days": 7}}
    assert in_segment(rule, visitor(hit(ago(days=30)), hit(ago(days=6))))
    assert not in_segment(rule, visitor(hit(ago(days=30)), hit(ago(days=8))))


def test_last_seen_exactly_at_the_window_start_is_outside():
    rule = {"last_seen": {"within_days": 7}}
    assert not in_segment(rule, visitor(hit(ago(days=7))))
    assert in_segment(rule, visitor(hit(ago(days=7) + 1 * MS)))


def test_last_seen_at_now_is_inside():
    assert in_segment({"last_seen": {"within_days": 1}}, visitor(hit(NOW)))


def test_last_seen_ignores_events_after_now():
    history = visitor(hit(ago(days=10)), hit(NOW + 1 * MS))
    assert not in_segment({"last_seen": {"within_days": 7}}, history)


def test_first_seen_ignores_events_after_now():
    # GIVEN an old visitor who also has an event after now
    history = visitor(hit(NOW + HOUR), hit(ago(days=30)))
    assert not in_segment({"first_seen": {"within_days": 7}}, history)
    # AND a visitor first seen 3 days ago, whose later event after now changes nothing
    assert in_segment({"first_seen": {"within_days": 7}}, visitor(hit(ago(days=3)), hit(NOW + HOUR)))


# --- all, any, not ------------------------------------------------------------------

IN_LONDON = {"geo": {"city": "London"}}
ON_MOBILE = {"device": {"type": "mobile"}}
PURCHASED = {"event": {"name": "purchase"}}
LONDON_MOBILE = visitor(hit(ago(days=1), city="London", device="mobile"))
LONDON_DESKTOP = visitor(hit(ago(days=1), city="London", device="desktop"))
PARIS_DESKTOP = visitor(hit(ago(days=1), city="Paris", device="desktop"))


def test_all_holds_when_every_rule_holds():
    assert in_segment({"all": [IN_LONDON, ON_MOBILE]}, LONDON_MOBILE)
    assert not in_segment({"all": [IN_LONDON, ON_MOBILE]}, LONDON_DESKTOP)


def test_any_holds_when_one_rule_holds():
    assert in_segment({"any": [IN_LONDON, ON_MOBILE]}, LONDON_DESKTOP)
    assert not in_segment({"any": [IN_LONDON, ON_MOBILE]}, PARIS_DESKTOP)


def test_single_rule_combinators_are_that_rule():
    assert in_segment({"all": [IN_LONDON]}, LONDON_DESKTOP)
    assert not in_segment({"any": [IN_LONDON]}, PARIS_DESKTOP)


def test_not_inverts_its_rule():
    assert in_segment({"not": IN_LONDON}, PARIS_DESKTOP)
    assert not in_segment({"not": IN_LONDON}, LONDON_DESKTOP)


def test_double_not_is_the_rule():
    assert in_segment({"not": {"not": IN_LONDON}}, LONDON_DESKTOP)
    assert not in_segment({"not": {"not": IN_LONDON}}, PARIS_DESKTOP)


def test_nested_combinators():
    # GIVEN "(in London or on mobile) and not purchased"
    rule = {"all": [{"any": [IN_LONDON, ON_MOBILE]}, {"not": PURCHASED}]}
    paris_mobile = visitor(hit(ago(days=1), city="Paris", device="mobile"))
    london_buyer = visitor(hit(ago(days=1), city="London"), hit(ago(days=2), name="purchase"))

    assert in_segment(rule, LONDON_DESKTOP)
    assert in_segment(rule, paris_mobile)
    assert not in_segment(rule, PARIS_DESKTOP)
    assert not in_segment(rule, london_buyer)


def test_the_design_example_segment():
    # GIVEN "returning London visitors who viewed pricing in the last 30 days"
    rule = {
        "all": [
            {"geo": {"city": "London"}},
            {"visits": {"min": 2, "within_days": 30}},
            {"event": {"name": "page_view", "url_contains": "/pricing", "within_days": 30}},
        ]
    }
    pricing = "https://shop.example.com/pricing"
    returning = visitor(hit(ago(days=20), city="London"), hit(ago(days=2), city="London", url=pricing))
    first_visit = visitor(hit(ago(days=2), city="London", url=pricing))
    old_first_visit = visitor(hit(ago(days=40), city="London"), hit(ago(days=2), city="London", url=pricing))

    assert in_segment(rule, returning)
    assert not in_segment(rule, first_visit)
    assert not in_segment(rule, old_first_visit)


# --- evaluate -----------------------------------------------------------------------


def test_evaluate_lists_each_member_with_its_segments_in_definition_order():
    # GIVEN three visitors and three segments
    segments = compile_segments(
        [
            segment(IN_LONDON, "london"),
            segment(ON_MOBILE, "mobile"),
            segment(PURCHASED, "buyers"),
        ]
    )
    histories = [
        visitor(hit(ago(days=1), city="London", device="mobile"), visitor_id="visitor-a"),
        visitor(hit(ago(days=1), city="Paris", device="desktop"), visitor_id="visitor-b"),
        visitor(hit(ago(days=1), name="purchase", city="London"), visitor_id="visitor-c"),
    ]

    # WHEN they are evaluated
    result = list(evaluate(histories, segments, NOW))

    # THEN only members are listed, with their segments
    assert result == [("visitor-a", ["london", "mobile"]), ("visitor-c", ["london", "buyers"])]
