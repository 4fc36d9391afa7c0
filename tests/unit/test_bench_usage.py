"""The benchmarks' DynamoDB billing rules (tests/bench/common.py): item sizes, units, and
the usage arithmetic the cost figures extrapolate with, so a slip (a number's digits, a
map's overhead, a unit rounded per item instead of per page) fails here."""

from __future__ import annotations

from typing import Any

import pytest

from functions.core.storage.item_size import item_bytes, number_bytes
from tests.bench.common import Usage, extrapolate, read_units, write_units


def test_a_string_attribute_counts_its_name_and_its_utf8_bytes():
    # GIVEN an attribute `city` holding "Zürich" (ü is two bytes)
    # THEN it is 4 + 7 bytes
    assert item_bytes({"city": {"S": "Zürich"}}) == 4 + 7


@pytest.mark.parametrize(
    ("number", "size"),
    [("1764324000000", 5), ("12345", 4), ("-0.00120", 2), ("0", 1), ("100", 2)],
)
def test_a_number_is_one_byte_per_two_significant_digits_plus_one(number: str, size: int):
    # GIVEN a number WHEN its leading and trailing zeros, sign and point are dropped
    # THEN it takes a byte per two of the digits left, rounded up, and one more
    assert number_bytes(number) == size


def test_maps_and_lists_cost_three_bytes_and_one_per_element():
    # GIVEN a map of two strings and a list of one number
    item: dict[str, Any] = {"props": {"M": {"a": {"S": "xy"}, "bc": {"S": "z"}}}, "l": {"L": [{"N": "7"}]}}
    # THEN the map is 3 + (1 + 1 + 2) + (1 + 2 + 1) and the list 3 + (1 + 2), each with its name
    assert item_bytes(item) == (5 + 3 + 4 + 4) + (1 + 3 + 3)


def test_binary_counts_its_raw_bytes_even_as_base64_text():
    assert item_bytes({"b": {"B": b"\x00\x01\x02"}}) == 1 + 3
    assert item_bytes({"b": {"B": "AAEC"}}) == 1 + 3  # moto keeps some binaries as base64


def test_a_read_is_billed_per_started_4_kb_and_halved_when_eventually_consistent():
    assert read_units(0, consistent=False) == 0.5  # a missing item still costs a read
    assert read_units(4096, consistent=False) == 0.5
    assert read_units(4097, consistent=True) == 2


def test_a_write_is_billed_per_started_kb_and_at_least_one_unit():
    assert write_units(0) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2


def test_usages_add_subtract_and_scale_by_table_and_request():
    # GIVEN two usages
    a = Usage({"events": 10.0}, {"due": 2.0}, {"dynamodb:Query": 4.0})
    b = Usage({"events": 4.0, "catalog": 0.5}, {}, {"dynamodb:Query": 1.0, "s3:GetObject": 2.0})
    # THEN they combine key by key, and what nets to nothing is dropped
    assert (a + b).read_units == {"events": 14.0, "catalog": 0.5}
    assert (a - a).read_units == {} and (a - a).requests == {}
    assert (b * 2).requests_of("s3") == {"GetObject": 4.0}
    assert (a + b).total_read_units == 14.5


def test_figures_measured_at_two_sizes_extrapolate_on_their_straight_line():
    # GIVEN 3 units at 1,000 events and 7 at 3,000 (a fixed 1 and 2 a thousand)
    # THEN 1 M events take 2,001
    assert extrapolate(3.0, 7.0, measured=(1_000, 3_000), to=1_000_000) == pytest.approx(2_001.0)
    # AND a usage extrapolates the same way, key by key
    small, large = Usage({"events": 3.0}), Usage({"events": 7.0})
    assert extrapolate(small, large, measured=(1_000, 3_000), to=1_000_000).read_units == {
        "events": pytest.approx(2_001.0)
    }
