"""Decoding of the core segment of IAB TCF v2 TC strings (functions/core/tcf.py).

Every TC string is built here, field by field, by tests/unit/tcf_builder.py.
"""

from __future__ import annotations

import pytest

from functions.core.tcf import InvalidTCString, decode_core
from tests.unit.tcf_builder import CoreSegment, publisher_tc_segment, tc_string

OUR_VENDOR = 755


# --- purposes -----------------------------------------------------------------------


def test_purposes_consented_are_decoded_from_the_purposes_consent_field():
    # GIVEN consent for purposes 1, 3, 10 and 24 (and legitimate interest for all 24)
    tc = tc_string(purposes_consent={1, 3, 10, 24}, purposes_li_transparency=set(range(1, 25)))

    # WHEN it is decoded
    consent = decode_core(tc)

    # THEN exactly the consented purposes are reported, not the legitimate-interest ones
    assert consent.purposes == {1, 3, 10, 24}
    assert consent.version == 2


def test_no_purposes_consented_decodes_to_no_purposes():
    assert decode_core(tc_string(purposes_consent=set(), vendors={1, 2})).purposes == frozenset()


def test_all_purposes_consented_decodes_to_all_24():
    assert decode_core(tc_string(purposes_consent=set(range(1, 25)))).purposes == set(range(1, 25))


def test_purposes_do_not_depend_on_the_header_fields_before_them():
    # GIVEN two strings that differ only in the fields before the purposes
    plain = CoreSegment(purposes_consent={2, 7}, vendors={5})
    noisy = CoreSegment(
        purposes_consent={2, 7},
        vendors={5},
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

    # THEN both decode to the same purposes and vendors
    for segment in (plain, noisy):
        consent = decode_core(segment.encode())
        assert consent.purposes == {2, 7}
        assert consent.vendors == {5}


# --- vendors ------------------------------------------------------------------------


def test_vendors_in_a_bitfield_are_decoded():
    # GIVEN a bitfield vendor section with vendors 1, 2, 8, 9 and 755 consented
    tc = tc_string(purposes_consent={1}, vendors={1, 2, 8, 9, OUR_VENDOR})

    # THEN exactly those vendors are consented
    assert decode_core(tc).vendors == {1, 2, 8, 9, OUR_VENDOR}


def test_bitfield_with_max_vendor_beyond_the_last_consented_vendor():
    tc = tc_string(purposes_consent={1}, vendors={3}, max_vendor_id=1000)
    assert decode_core(tc).vendors == {3}


def test_bitfield_with_max_vendor_zero_has_no_vendors():
    tc = tc_string(purposes_consent={1}, vendors=set(), max_vendor_id=0)
    assert decode_core(tc).vendors == frozenset()


def test_vendors_as_single_id_range_entries_are_decoded():
    # GIVEN a range-encoded vendor section of single ids
    tc = tc_string(purposes_consent={1}, vendor_ranges=[4, OUR_VENDOR, 1000])

    # THEN exactly those ids are consented
    assert decode_core(tc).vendors == {4, OUR_VENDOR, 1000}


def test_vendors_as_inclusive_ranges_are_decoded():
    # GIVEN ranges 10-12 and 750-760 and the single id 2
    tc = tc_string(purposes_consent={1}, vendor_ranges=[(10, 12), 2, (750, 760)])

    # THEN both ends of each range are included
    assert decode_core(tc).vendors == {2, 10, 11, 12, *range(750, 761)}


def test_range_encoding_with_no_entries_has_no_vendors():
    tc = tc_string(purposes_consent={1}, vendor_ranges=[], max_vendor_id=500)
    assert decode_core(tc).vendors == frozenset()


def test_range_whose_end_is_before_its_start_is_rejected():
    with pytest.raises(InvalidTCString):
        decode_core(tc_string(purposes_consent={1}, vendor_ranges=[(20, 10)], max_vendor_id=30))


def test_range_beyond_max_vendor_id_is_rejected():
    with pytest.raises(InvalidTCString):
        decode_core(tc_string(purposes_consent={1}, vendor_ranges=[(10, 40)], max_vendor_id=30))


def test_segments_after_the_core_segment_are_ignored():
    # GIVEN a core segment followed by a publisher TC segment
    core_only = tc_string(purposes_consent={1, 2}, vendors={OUR_VENDOR})
    with_more = tc_string(publisher_tc_segment(), purposes_consent={1, 2}, vendors={OUR_VENDOR})
    assert with_more != core_only

    # THEN the result is that of the core segment alone
    assert decode_core(with_more).purposes == {1, 2}
    assert decode_core(with_more).vendors == {OUR_VENDOR}


# --- allows_storage -----------------------------------------------------------------


def test_storage_allowed_with_purpose_one_and_our_vendor_in_a_bitfield():
    consent = decode_core(tc_string(purposes_consent={1, 2}, vendors={OUR_VENDOR}))
    assert consent.allows_storage(OUR_VENDOR) is True


def test_storage_allowed_with_purpose_one_and_our_vendor_inside_a_range():
    consent = decode_core(tc_string(purposes_consent={1}, vendor_ranges=[(700, 800)]))
    assert consent.allows_storage(OUR_VENDOR) is True


def test_storage_refused_without_purpose_one_even_for_our_vendor():
    # GIVEN every purpose but 1 consented (and purpose 1 only as legitimate interest)
    consent = decode_core(
        tc_string(purposes_consent=set(range(2, 25)), purposes_li_transparency={1}, vendors={OUR_VENDOR})
    )
    assert consent.allows_storage(OUR_VENDOR) is False


def test_storage_refused_when_our_vendor_is_missing():
    # GIVEN purpose 1 consented to the neighbours of our vendor id only
    consent = decode_core(tc_string(purposes_consent={1}, vendors={OUR_VENDOR - 1, OUR_VENDOR + 1}))
    assert consent.allows_storage(OUR_VENDOR) is False


def test_storage_refused_when_our_vendor_is_just_outside_a_range():
    consent = decode_core(tc_string(purposes_consent={1}, vendor_ranges=[(1, OUR_VENDOR - 1), (OUR_VENDOR + 1, 900)]))
    assert consent.allows_storage(OUR_VENDOR) is False


# --- malformed strings --------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3, 63])
def test_versions_other_than_2_are_rejected(version):
    with pytest.raises(InvalidTCString):
        decode_core(tc_string(version=version, purposes_consent={1}, vendors={OUR_VENDOR}))


def test_string_truncated_inside_the_purposes_is_rejected():
    # GIVEN a valid string cut off before its purposes end (bit 176 = character 29)
    tc = tc_string(purposes_consent={1}, vendors={OUR_VENDOR})
    with pytest.raises(InvalidTCString):
        decode_core(tc[:28])


def test_string_truncated_inside_the_vendor_bitfield_is_rejected():
    # GIVEN a bitfield of 755 vendors cut off half-way through
    tc = tc_string(purposes_consent={1}, vendors={OUR_VENDOR})
    with pytest.raises(InvalidTCString):
        decode_core(tc[: len(tc) // 2 // 4 * 4])


def test_string_truncated_inside_the_vendor_ranges_is_rejected():
    # GIVEN a range section announcing more entries than it holds
    # (cut to whole base64 quanta, so what is left is valid base64url of fewer bits)
    tc = tc_string(purposes_consent={1}, vendor_ranges=[(1, 10), 20, (30, 40)])
    with pytest.raises(InvalidTCString):
        decode_core(tc[: (len(tc) - 1) // 4 * 4])


def test_header_only_string_is_rejected():
    # GIVEN only the first 8 characters (48 bits: version and part of Created)
    with pytest.raises(InvalidTCString):
        decode_core(tc_string(purposes_consent={1}, vendors={1})[:8])


@pytest.mark.parametrize("garbage", ["not a tc string!", "!!!!", "%%%%%%%%", "Ünïcödé-консент", "\x00\x01\x02"])
def test_non_base64_garbage_is_rejected(garbage):
    with pytest.raises(InvalidTCString):
        decode_core(garbage)


def test_empty_string_is_rejected():
    with pytest.raises(InvalidTCString):
        decode_core("")


def test_string_of_only_other_segments_is_rejected():
    with pytest.raises(InvalidTCString):
        decode_core("." + publisher_tc_segment())
