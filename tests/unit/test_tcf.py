"""Reading IAB TCF v2 TC strings for one vendor (functions/core/tcf.py).

Every TC string is built here, field by field, by tests/unit/tcf_builder.py. The official
decoder's answers on a large corpus are checked in tests/reference.
"""

from __future__ import annotations

import pytest

from functions.core.tcf import (
    MAX_TC_STRING,
    InvalidTCString,
    RestrictionType,
    VendorSignals,
    read_vendor_signals,
)
from tests.unit.gpp_builder import base64url_of_bits
from tests.unit.tcf_builder import CoreSegment, Restriction, publisher_tc_segment, tc_string, vendors_segment

OUR_VENDOR = 755


def signals(*segments: str, **fields: object) -> VendorSignals:
    """What a string with core segment `fields` and then `segments` says about our vendor."""
    return read_vendor_signals(tc_string(*segments, **fields), OUR_VENDOR)


# --- purposes and header -------------------------------------------------------------


def test_purposes_consented_are_read_from_the_purposes_consent_field():
    # GIVEN consent for purposes 1, 3, 10 and 24, and legitimate interest for 2 and 7
    read = signals(purposes_consent={1, 3, 10, 24}, purposes_li_transparency={2, 7})

    # THEN the two fields are read apart
    assert read.purposes_consent == {1, 3, 10, 24}
    assert read.purposes_legitimate_interest == {2, 7}
    assert read.version == 2


def test_purposes_do_not_depend_on_the_header_fields_before_them():
    # GIVEN two strings that differ only in the fields before the purposes
    plain = CoreSegment(purposes_consent={2, 7}, vendors={OUR_VENDOR})
    noisy = CoreSegment(
        purposes_consent={2, 7},
        vendors={OUR_VENDOR},
        created_ds=2**36 - 1,
        last_updated_ds=2**36 - 1,
        cmp_id=4095,
        cmp_version=4095,
        consent_screen=63,
        consent_language="ZZ",
        vendor_list_version=4095,
        tcf_policy_version=63,
        special_feature_opt_ins=set(range(1, 13)),
    )

    # THEN both read the same
    for segment in (plain, noisy):
        read = read_vendor_signals(segment.encode(), OUR_VENDOR)
        assert read.purposes_consent == {2, 7}
        assert read.vendor_consent is True


def test_purpose_one_treatment_and_publisher_country_are_read():
    read = signals(purpose_one_treatment=1, publisher_cc="DE")
    assert read.purpose_one_treatment is True
    assert read.publisher_cc == "DE"
    assert signals(purpose_one_treatment=0).purpose_one_treatment is False


# --- the vendor consent section ------------------------------------------------------


@pytest.mark.parametrize(
    ("vendors", "max_vendor_id", "consented"),
    [
        ({OUR_VENDOR}, None, True),
        ({1, 2, 8, 9, OUR_VENDOR, 1200}, None, True),
        ({OUR_VENDOR - 1, OUR_VENDOR + 1}, None, False),
        ({3}, OUR_VENDOR, False),
        ({OUR_VENDOR}, OUR_VENDOR, True),
        ({3}, OUR_VENDOR - 1, False),
        (set(), 0, False),
    ],
)
def test_our_vendor_in_a_bitfield_is_one_bit(vendors, max_vendor_id, consented):
    assert signals(vendors=vendors, max_vendor_id=max_vendor_id).vendor_consent is consented


@pytest.mark.parametrize(
    ("ranges", "consented"),
    [
        ([OUR_VENDOR], True),
        ([4, OUR_VENDOR, 1000], True),
        ([(OUR_VENDOR, OUR_VENDOR)], True),
        ([(700, OUR_VENDOR)], True),
        ([(OUR_VENDOR, 800)], True),
        ([2, (10, 12), (750, 760)], True),
        ([(1, OUR_VENDOR - 1), (OUR_VENDOR + 1, 900)], False),
        ([OUR_VENDOR - 1, OUR_VENDOR + 1], False),
        ([], False),
    ],
)
def test_our_vendor_in_range_entries(ranges, consented):
    assert signals(vendor_ranges=ranges).vendor_consent is consented


def test_a_range_ending_before_it_starts_holds_no_vendor():
    # GIVEN a range from 760 down to 750, as the official decoder reads it: empty
    assert signals(vendor_ranges=[(760, 750)], max_vendor_id=800).vendor_consent is False
    assert signals(vendor_ranges=[(760, 750), OUR_VENDOR]).vendor_consent is True


def test_a_range_beyond_max_vendor_id_still_counts():
    # GIVEN MaxVendorId 10 and a range naming our vendor (the official decoder reads it)
    assert signals(vendor_ranges=[(700, 800)], max_vendor_id=10).vendor_consent is True


@pytest.mark.parametrize("ranges", [[0], [(0, OUR_VENDOR)], [OUR_VENDOR, (0, 3)]])
def test_a_vendor_range_starting_at_0_is_malformed(ranges):
    with pytest.raises(InvalidTCString):
        signals(vendor_ranges=ranges)


# --- the vendor legitimate interest section ------------------------------------------


def test_legitimate_interest_is_read_apart_from_consent():
    # GIVEN our vendor with legitimate interest only
    read = signals(vendors={1}, li_vendors={OUR_VENDOR})

    # THEN it has no consent
    assert read.vendor_consent is False
    assert read.vendor_legitimate_interest is True


def test_legitimate_interest_ranges_are_read_to_reach_the_restrictions():
    # GIVEN a range-encoded legitimate interest section, then a restriction naming us
    read = signals(
        vendors={OUR_VENDOR},
        li_vendor_ranges=[(1, 100), OUR_VENDOR, (2000, 3000)],
        restrictions=[Restriction(3, 0, [OUR_VENDOR])],
    )

    # THEN the restriction after it is found
    assert read.vendor_legitimate_interest is True
    assert read.restrictions == {(3, RestrictionType.NOT_ALLOWED)}


def test_a_legitimate_interest_range_starting_at_0_is_malformed():
    with pytest.raises(InvalidTCString):
        signals(vendors={OUR_VENDOR}, li_vendor_ranges=[(0, 5)])


# --- publisher restrictions ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(RestrictionType))
@pytest.mark.parametrize("entries", [[OUR_VENDOR], [(700, 800)], [1, (OUR_VENDOR, OUR_VENDOR)]])
def test_a_restriction_naming_our_vendor_is_reported_with_its_purpose_and_type(kind, entries):
    read = signals(vendors={OUR_VENDOR}, restrictions=[Restriction(4, kind, entries)])
    assert read.restrictions == {(4, kind)}
    assert read.restriction_types(4) == {kind}
    assert read.restriction_types(1) == frozenset()


def test_restrictions_naming_other_vendors_are_not_reported():
    read = signals(
        vendors={OUR_VENDOR},
        restrictions=[Restriction(1, 0, [OUR_VENDOR - 1, (OUR_VENDOR + 1, 65535)]), Restriction(3, 2, [])],
    )
    assert read.restrictions == frozenset()


def test_every_restriction_naming_our_vendor_is_reported():
    read = signals(
        vendors={OUR_VENDOR},
        restrictions=[
            Restriction(1, 1, [OUR_VENDOR]),
            Restriction(2, 0, [(1, 10)]),
            Restriction(3, 2, [(1, 65535)]),
            Restriction(1, 0, [(OUR_VENDOR, 900)]),
        ],
    )
    assert read.restrictions == {
        (1, RestrictionType.REQUIRE_CONSENT),
        (3, RestrictionType.REQUIRE_LEGITIMATE_INTEREST),
        (1, RestrictionType.NOT_ALLOWED),
    }


def test_a_restriction_may_name_vendor_0():
    assert signals(vendors={OUR_VENDOR}, restrictions=[Restriction(3, 1, [0])]).restrictions == frozenset()


@pytest.mark.parametrize(
    "restriction",
    [
        Restriction(3, 0, [(OUR_VENDOR + 10, OUR_VENDOR)]),  # ends before it starts
        Restriction(0, 0, [OUR_VENDOR]),  # purpose 0
        Restriction(1, 3, [12]),  # restriction type 3
    ],
)
def test_malformed_restrictions_make_the_string_malformed(restriction):
    with pytest.raises(InvalidTCString):
        signals(vendors={OUR_VENDOR}, restrictions=[restriction])


@pytest.mark.parametrize("restriction", [Restriction(0, 0, []), Restriction(1, 3, [])])
def test_a_restriction_without_entries_is_not_read(restriction):
    assert signals(vendors={OUR_VENDOR}, restrictions=[restriction]).restrictions == frozenset()


# --- segments after the core one -----------------------------------------------------


@pytest.mark.parametrize(
    "segments",
    [
        [vendors_segment(1, vendors={1, 2, OUR_VENDOR})],
        [vendors_segment(2, ranges=[(1, 65535)])],
        [publisher_tc_segment()],
        [publisher_tc_segment(custom_purposes=5)],
        [vendors_segment(1, vendors={OUR_VENDOR}), publisher_tc_segment(2), vendors_segment(2)],
    ],
)
def test_other_segments_are_checked_but_change_nothing(segments):
    # GIVEN the same core segment with and without further segments
    core_only = read_vendor_signals(tc_string(purposes_consent={1, 2}, vendors={OUR_VENDOR}), OUR_VENDOR)
    with_more = read_vendor_signals(tc_string(*segments, purposes_consent={1, 2}, vendors={OUR_VENDOR}), OUR_VENDOR)

    # THEN they read the same
    assert with_more == core_only


@pytest.mark.parametrize(
    "segment",
    [
        "",  # a trailing "."
        publisher_tc_segment(custom_purposes=5)[:8],  # truncated
        vendors_segment(1, vendors={1200})[:4],
        vendors_segment(1, ranges=[0]),  # vendor 0
        "gAAA",  # SegmentType 4
        "_AAA",  # SegmentType 7
        "CAAA",  # SegmentType 0: a second core segment
        "YA%A",  # not base64url
    ],
)
def test_a_malformed_other_segment_makes_the_string_malformed(segment):
    with pytest.raises(InvalidTCString):
        signals(segment, vendors={OUR_VENDOR})


def test_a_string_of_only_other_segments_is_malformed():
    with pytest.raises(InvalidTCString):
        read_vendor_signals("." + publisher_tc_segment(), OUR_VENDOR)


# --- malformed strings ---------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3, 63])
def test_versions_other_than_2_are_malformed(version):
    with pytest.raises(InvalidTCString):
        signals(version=version, vendors={OUR_VENDOR})


@pytest.mark.parametrize("cmp_id", [0, 1])
def test_cmp_ids_below_2_are_malformed_as_the_official_decoder_has_it(cmp_id):
    with pytest.raises(InvalidTCString):
        signals(cmp_id=cmp_id)


def test_publisher_country_letters_past_z_in_ascii_are_malformed():
    # GIVEN letters written as 6 bits from "A": 57 is "z", 58 is "{"
    def with_country(first: int) -> str:
        bits = CoreSegment(vendors={OUR_VENDOR}).bits().bit_string()
        return base64url_of_bits(bits[:201] + format(first, "06b") + bits[207:])

    assert read_vendor_signals(with_country(57), OUR_VENDOR).publisher_cc.startswith("z")
    with pytest.raises(InvalidTCString):
        read_vendor_signals(with_country(58), OUR_VENDOR)


def test_a_string_truncated_anywhere_is_malformed():
    # GIVEN a string with every section in use, and the number of bits it needs
    core = CoreSegment(
        vendors={OUR_VENDOR},
        li_vendor_ranges=[(1, 100), (2000, 3000)],
        restrictions=[Restriction(2, 1, [(1, 400), 9])],
    )
    tc, needed = core.encode(), len(core.bits().bit_string())

    # THEN a cut losing any of those bits is refused, and one keeping them all is not
    # (base64url carries 6 bits a character; what follows the last field is padding)
    for cut in range(1, len(tc) + 1):
        if 6 * cut < needed:
            with pytest.raises(InvalidTCString):
                read_vendor_signals(tc[:cut], OUR_VENDOR)
        else:
            assert read_vendor_signals(tc[:cut], OUR_VENDOR).vendor_consent is True


@pytest.mark.parametrize(
    "garbage", ["not a tc string!", "!!!!", "%%%%%%%%", "Ünïcödé-консент", "\x00\x01\x02", "CPzHq4A==", ""]
)
def test_non_base64url_or_empty_strings_are_malformed(garbage):
    with pytest.raises(InvalidTCString):
        read_vendor_signals(garbage, OUR_VENDOR)


def test_strings_longer_than_the_limit_are_malformed():
    # GIVEN a well-formed string padded past MAX_TC_STRING by a long bitfield
    tc = tc_string(vendors={OUR_VENDOR}, max_vendor_id=6 * MAX_TC_STRING)
    assert len(tc) > MAX_TC_STRING

    with pytest.raises(InvalidTCString):
        read_vendor_signals(tc, OUR_VENDOR)


# --- bounded work --------------------------------------------------------------------


def test_the_most_ranges_that_fit_are_answered_without_building_the_vendor_set():
    # GIVEN as many ranges of nearly all of 1..65535 as fit in MAX_TC_STRING, none naming us
    around_us = [(1, OUR_VENDOR - 1), (OUR_VENDOR + 1, 65535)]
    entries = around_us * 368
    crafted = tc_string(purposes_consent=set(range(1, 25)), vendor_ranges=entries)
    assert len(crafted) <= MAX_TC_STRING

    # THEN our vendor is not in any; and once one range names it, it is found
    assert read_vendor_signals(crafted, OUR_VENDOR).vendor_consent is False
    named = tc_string(vendor_ranges=[*entries[:367], (OUR_VENDOR, OUR_VENDOR), *entries[367:-1]])
    assert len(named) <= MAX_TC_STRING
    assert read_vendor_signals(named, OUR_VENDOR).vendor_consent is True
    assert read_vendor_signals(named, 1).vendor_consent is True
    assert read_vendor_signals(named, 65535).vendor_consent is True


def test_the_most_restrictions_that_fit_are_all_read():
    # GIVEN as many one-vendor restrictions as fit, the last one naming us
    restrictions = [Restriction(1 + i % 24, 0, [1 + i]) for i in range(600)]
    restrictions.append(Restriction(4, 2, [OUR_VENDOR]))
    crafted = tc_string(vendors={OUR_VENDOR}, restrictions=restrictions)
    assert len(crafted) <= MAX_TC_STRING

    # THEN the last restriction is found
    assert read_vendor_signals(crafted, OUR_VENDOR).restrictions == {(4, RestrictionType.REQUIRE_LEGITIMATE_INTEREST)}
