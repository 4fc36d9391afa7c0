"""Reading IAB GPP strings (functions/core/gpp.py).

GPP strings are built by tests/unit/gpp_builder.py from the published layout; the US
section layouts and the official library's answers are checked in tests/reference.
"""

from __future__ import annotations

import pytest

from functions.core.gpp import (
    MAX_GPP_SECTIONS,
    MAX_GPP_STRING,
    US_SECTIONS,
    InvalidGPPString,
    decode_gpp,
    parse_gpp_sid,
    us_opted_out,
)
from tests.unit.gpp_builder import base64url_of_bits, fibonacci, gpp_string, us_section
from tests.unit.tcf_builder import tc_string

USNAT = 7
USCA = 8
USVA = 9
USIN = 25


def usnat(gpc: bool | None = None, **values: int) -> str:
    return us_section(US_SECTIONS[USNAT].fields, values, gpc=gpc, version=2)


# --- the header ----------------------------------------------------------------------


@pytest.mark.parametrize("value, code", [(1, "11"), (2, "011"), (3, "0011"), (4, "1011"), (12, "101011")])
def test_fibonacci_integers_are_written_as_the_spec_shows(value, code):
    assert fibonacci(value) == code


@pytest.mark.parametrize("section_ids", [[], [7], [2, 7], [2, 6, 7, 8, 9, 10, 27], [7, 8, 9], [3, 50, 300]])
def test_the_header_lists_the_section_ids_in_order(section_ids):
    # GIVEN a GPP string with a section per id (single ids and ranges in its header)
    gpp = gpp_string((section_id, f"A{section_id}") for section_id in section_ids)

    # THEN each section is found under its id
    assert decode_gpp(gpp).sections == tuple((section_id, f"A{section_id}") for section_id in section_ids)


def test_the_header_of_the_spec_example_reads_as_tcf_eu_and_us_privacy():
    # "DBACNY~...~1YNN": sections 2 and 6 (GPP String spec, encoding examples)
    assert [
        section_id for section_id, _ in decode_gpp("DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN").sections
    ] == [2, 6]


@pytest.mark.parametrize(
    "gpp",
    [
        "DB",  # no section count
        "DBA",
        gpp_string([(7, "x")]).split("~")[0],  # a section listed, none given
        gpp_string([(7, "x")]) + "~y",  # a section given, not listed
        gpp_string([(7, "x"), (8, "y")]).replace("~y", "~"),  # a blank section
        gpp_string([(7, "x")]).replace("~x", "~ "),
        "CB" + gpp_string([(7, "x")])[2:],  # Type 2
        "DC" + gpp_string([(7, "x")])[2:],  # Version 2
        tc_string(vendors={1}),  # a bare TC string
        "DB%A~x",
        base64url_of_bits(format(3, "06b") + format(1, "06b") + format(1, "012b") + "0" + "0" * 12) + "~x",
    ],
)
def test_malformed_headers_are_refused(gpp):
    with pytest.raises(InvalidGPPString):
        decode_gpp(gpp)


def test_a_header_range_larger_than_the_sections_is_refused_without_listing_it():
    # GIVEN a header range of 1..F(35)-ish ids over one section
    bits = format(3, "06b") + format(1, "06b") + format(1, "012b") + "1" + fibonacci(1) + fibonacci(10**7)
    with pytest.raises(InvalidGPPString):
        decode_gpp(base64url_of_bits(bits) + "~x")


def test_limits_on_length_and_sections():
    # GIVEN the most sections allowed, then one more
    most = gpp_string((100 + i, "x") for i in range(MAX_GPP_SECTIONS))
    assert len(decode_gpp(most).sections) == MAX_GPP_SECTIONS
    with pytest.raises(InvalidGPPString):
        decode_gpp(gpp_string((100 + i, "x") for i in range(MAX_GPP_SECTIONS + 1)))

    # AND a string longer than MAX_GPP_STRING
    with pytest.raises(InvalidGPPString):
        decode_gpp(gpp_string([(7, usnat()), (100, "x" * MAX_GPP_STRING)]))


def test_tcf_sections_with_a_segment_of_no_known_type_are_refused_whether_read_or_not():
    # GIVEN a TCF EU (2) and a TCF Canada (5) section whose second segment starts with "g"
    for section_id in (2, 5):
        with pytest.raises(InvalidGPPString):
            decode_gpp(gpp_string([(section_id, tc_string(vendors={1}) + ".gAAA"), (7, usnat())]))
    # AND "Q" (allowed vendors) exists in the EU framework but not in Canada's
    assert decode_gpp(gpp_string([(2, tc_string(vendors={1}) + ".QAAA")]))
    with pytest.raises(InvalidGPPString):
        decode_gpp(gpp_string([(5, tc_string(vendors={1}) + ".QAAA")]))


def test_sections_are_picked_by_gpp_sid():
    gpp = decode_gpp(gpp_string([(2, "CPtcf"), (7, "nat"), (8, "ca")]))
    assert gpp.applicable(None) == gpp.sections
    assert gpp.applicable(frozenset({7, 8, 99})) == ((7, "nat"), (8, "ca"))
    assert gpp.applicable(frozenset({-1})) == ()
    assert gpp.section(2) == "CPtcf"
    assert gpp.section(6) is None


# --- gpp_sid -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gpp_sid, ids",
    [(None, None), ("", None), (" ", None), ("7", {7}), ("2,7", {2, 7}), ("2_7", {2, 7}), ("-1", {-1})],
)
def test_gpp_sid_lists_section_ids(gpp_sid, ids):
    assert parse_gpp_sid(gpp_sid) == (None if ids is None else frozenset(ids))


@pytest.mark.parametrize("gpp_sid", ["x", "2,,7", "2;7", "7,", "0x7", "\u0667", "7" + ",1" * 200])
def test_malformed_gpp_sid_is_refused(gpp_sid):
    with pytest.raises(InvalidGPPString):
        parse_gpp_sid(gpp_sid)


# --- US sections ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"])
@pytest.mark.parametrize("value, opted_out", [(0, False), (1, True), (2, False), (3, True)])
def test_usnat_opt_outs(field, value, opted_out):
    # GIVEN every other opt-out "did not opt out" and the notices and MSPA fields set
    others = {name: 2 for name in ("SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut")}
    section = usnat(**{**others, "SaleOptOutNotice": 1, "MspaCoveredTransaction": 1, field: value})
    assert us_opted_out(USNAT, section) is opted_out


def test_fields_other_than_the_opt_outs_do_not_count():
    # GIVEN every field but the three opt-outs set to 1
    values = {name: 1 for name, bits in US_SECTIONS[USNAT].fields if bits == 2}
    values.update(SaleOptOut=2, SharingOptOut=2, TargetedAdvertisingOptOut=2)
    assert us_opted_out(USNAT, usnat(**values)) is False


@pytest.mark.parametrize("gpc, opted_out", [(None, False), (False, False), (True, True)])
def test_global_privacy_control_counts_as_an_opt_out(gpc, opted_out):
    assert us_opted_out(USNAT, usnat(gpc=gpc)) is opted_out
    assert us_opted_out(USCA, us_section(US_SECTIONS[USCA].fields, {}, gpc=gpc)) is opted_out


@pytest.mark.parametrize("section_id", sorted(US_SECTIONS))
def test_every_us_section_reads_its_sale_opt_out(section_id):
    fields = US_SECTIONS[section_id].fields
    assert us_opted_out(section_id, us_section(fields, {"SaleOptOut": 1})) is True
    assert us_opted_out(section_id, us_section(fields, {"SaleOptOut": 2})) is False


OPT_OUTS = [
    (section_id, name)
    for section_id, section in sorted(US_SECTIONS.items())
    for name, _ in section.fields
    if name in ("SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut")
]


@pytest.mark.parametrize(("section_id", "field"), OPT_OUTS)
def test_every_opt_out_of_every_us_section_is_read_where_it_is(section_id, field):
    # GIVEN a section whose other opt-outs are "did not opt out" (the fields are read from
    # the characters holding them, each at its own place in a 6-bit character)
    fields = US_SECTIONS[section_id].fields
    others = {name: 2 for other_id, name in OPT_OUTS if other_id == section_id}

    # THEN the field alone decides
    assert us_opted_out(section_id, us_section(fields, {**others, field: 1})) is True
    assert us_opted_out(section_id, us_section(fields, {**others, field: 3})) is True
    assert us_opted_out(section_id, us_section(fields, {**others, field: 2})) is False
    assert us_opted_out(section_id, us_section(fields, {**others, field: 0})) is False


def test_usnat_of_version_1_is_read_in_its_shorter_layout():
    # GIVEN version 1's 60 bits: the same fields up to SensitiveDataProcessing (12 of them)
    fields = [(name, bits) for name, bits in US_SECTIONS[USNAT].fields]
    short = [
        (n, 24 if n == "SensitiveDataProcessing" else 4 if n == "KnownChildSensitiveDataConsents" else b)
        for n, b in fields
    ]
    assert us_opted_out(USNAT, us_section(short, {"SharingOptOut": 1})) is True
    assert us_opted_out(USNAT, us_section(short, {"SharingOptOut": 2})) is False


@pytest.mark.parametrize(
    "section_id, encoded",
    [
        (USNAT, usnat()[:9]),  # core segment truncated
        (USNAT, usnat() + "!"),
        (USNAT, usnat() + "."),  # an empty GPC segment
        (USNAT, usnat() + ".%"),
        (USIN, us_section(US_SECTIONS[USIN].fields, {}) + ".AA"),  # 12 of 16 sensitive-data bits
        (USVA, us_section(US_SECTIONS[USVA].fields, {})[:4]),
        (6, "1YN"),
        (6, "1YNNN"),
    ],
)
def test_malformed_us_sections_are_refused(section_id, encoded):
    with pytest.raises(InvalidGPPString):
        us_opted_out(section_id, encoded)


def test_segments_a_us_section_does_not_have_are_not_read():
    # GIVEN Virginia's section (no GPC segment) followed by junk after a "."
    assert us_opted_out(USVA, us_section(US_SECTIONS[USVA].fields, {}) + ".%%%") is False


@pytest.mark.parametrize(
    "encoded, opted_out",
    [("1YNN", False), ("1NYN", True), ("1-Y-", True), ("1---", False), ("1N?N", True), ("1NNN.x", False)],
)
def test_us_privacy_opt_out_of_sale(encoded, opted_out):
    assert us_opted_out(6, encoded) is opted_out
