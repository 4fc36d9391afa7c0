"""Reading IAB TCF v2 TC strings for one vendor (functions/core/tcf.py).

Every TC string is built here, field by field, by tests/unit/tcf_builder.py. The official
decoder's answers on a large corpus are checked in tests/reference.

The decoder reads what the consent decision needs: purposes consented, our vendor's
consent, and whether a restriction of the kinds asked about names it (`named_kinds`
below asks one kind at a time, to tell which do).
"""

from __future__ import annotations

import base64
import random

import pytest

from functions.core.tcf import (
    MAX_PUB_RESTRICTIONS,
    MAX_RANGE_ENTRIES,
    MAX_SEGMENTS,
    MAX_TC_STRING,
    InvalidTCString,
    RestrictionKind,
    RestrictionType,
    VendorSignals,
    base64url_bits,
    base64url_values,
    read_vendor_signals,
)
from tests.unit.gpp_builder import base64url_of_bits
from tests.unit.tcf_builder import CoreSegment, Restriction, publisher_tc_segment, tc_string, vendors_segment

OUR_VENDOR = 755
# The restrictions the consent decision asks about: purposes 1, 3, 4; types 0 and 2.
DECISION_KINDS = frozenset((purpose, RestrictionType(kind)) for purpose in (1, 3, 4) for kind in (0, 2))
# Every kind a restriction can be written as (PurposeId is 6 bits; type 3 never has entries).
EVERY_KIND: frozenset[RestrictionKind] = frozenset(
    (purpose, RestrictionType(kind)) for purpose in range(64) for kind in range(3)
)


def signals(*segments: str, **fields: object) -> VendorSignals:
    """What a string with core segment `fields` and then `segments` says about our vendor."""
    return read_vendor_signals(tc_string(*segments, **fields), OUR_VENDOR)


def named_kinds(tc: str, vendor: int = OUR_VENDOR) -> frozenset[RestrictionKind]:
    """The kinds of the restrictions in `tc` that name `vendor`, asking about every kind at
    once, then (if one does) about each kind alone."""
    if not read_vendor_signals(tc, vendor, EVERY_KIND).restricted:
        return frozenset()
    return frozenset(kind for kind in EVERY_KIND if read_vendor_signals(tc, vendor, {kind}).restricted)


def restrictions_naming_us(*segments: str, **fields: object) -> frozenset[RestrictionKind]:
    return named_kinds(tc_string(*segments, **fields))


# --- purposes and header -------------------------------------------------------------


def test_purposes_consented_are_read_from_the_purposes_consent_field():
    # GIVEN consent for purposes 1, 3, 10 and 24, and legitimate interest for 2 and 7
    read = signals(purposes_consent={1, 3, 10, 24}, purposes_li_transparency={2, 7})

    # THEN only the consents are taken for consents
    assert read.purposes_consent == {1, 3, 10, 24}
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


@pytest.mark.parametrize(
    "fields",
    [{"vendors": {1}, "li_vendors": {OUR_VENDOR}}, {"vendor_ranges": [1], "li_vendor_ranges": [OUR_VENDOR]}],
)
def test_legitimate_interest_is_not_taken_for_consent(fields):
    # GIVEN our vendor with legitimate interest only
    assert signals(**fields).vendor_consent is False


def test_legitimate_interest_ranges_are_walked_to_reach_the_restrictions():
    # GIVEN a range-encoded legitimate interest section, then a restriction naming us
    tc = tc_string(
        vendors={OUR_VENDOR},
        li_vendor_ranges=[(1, 100), OUR_VENDOR, (2000, 3000)],
        restrictions=[Restriction(3, 0, [OUR_VENDOR])],
    )

    # THEN the restriction after it is found
    assert named_kinds(tc) == {(3, RestrictionType.NOT_ALLOWED)}


def test_a_legitimate_interest_range_starting_at_0_is_malformed():
    with pytest.raises(InvalidTCString):
        signals(vendors={OUR_VENDOR}, li_vendor_ranges=[(0, 5)])


# --- publisher restrictions ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(RestrictionType))
@pytest.mark.parametrize("entries", [[OUR_VENDOR], [(700, 800)], [1, (OUR_VENDOR, OUR_VENDOR)]])
def test_a_restriction_naming_our_vendor_is_found_when_its_kind_is_asked_about(kind, entries):
    # GIVEN a restriction of purpose 4 and `kind` naming our vendor
    tc = tc_string(vendors={OUR_VENDOR}, restrictions=[Restriction(4, kind, entries)])

    # THEN it is found when asked about its kind, alone or among others, and not otherwise
    assert read_vendor_signals(tc, OUR_VENDOR, {(4, kind)}).restricted is True
    assert read_vendor_signals(tc, OUR_VENDOR, EVERY_KIND).restricted is True
    other_kinds = EVERY_KIND - {(4, kind)}
    assert read_vendor_signals(tc, OUR_VENDOR, other_kinds).restricted is False
    assert read_vendor_signals(tc, OUR_VENDOR).restricted is False


def test_restrictions_naming_other_vendors_are_not_reported():
    tc = tc_string(
        vendors={OUR_VENDOR},
        restrictions=[Restriction(1, 0, [OUR_VENDOR - 1, (OUR_VENDOR + 1, 65535)]), Restriction(3, 2, [])],
    )
    assert read_vendor_signals(tc, OUR_VENDOR, EVERY_KIND).restricted is False


def test_every_restriction_naming_our_vendor_is_reported():
    assert restrictions_naming_us(
        vendors={OUR_VENDOR},
        restrictions=[
            Restriction(1, 1, [OUR_VENDOR]),
            Restriction(2, 0, [(1, 10)]),
            Restriction(3, 2, [(1, 65535)]),
            Restriction(1, 0, [(OUR_VENDOR, 900)]),
        ],
    ) == {
        (1, RestrictionType.REQUIRE_CONSENT),
        (3, RestrictionType.REQUIRE_LEGITIMATE_INTEREST),
        (1, RestrictionType.NOT_ALLOWED),
    }


def test_a_restriction_may_name_vendor_0():
    tc = tc_string(vendors={OUR_VENDOR}, restrictions=[Restriction(3, 1, [0])])
    assert read_vendor_signals(tc, OUR_VENDOR, EVERY_KIND).restricted is False
    assert read_vendor_signals(tc, 0, EVERY_KIND).restricted is True


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
    tc = tc_string(vendors={OUR_VENDOR}, restrictions=[restriction])
    assert read_vendor_signals(tc, OUR_VENDOR, EVERY_KIND).restricted is False


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


def test_the_most_ranges_allowed_are_answered_without_building_the_vendor_set():
    # GIVEN as many ranges of nearly all of 1..65535 as are allowed, none naming us
    around_us = [(1, OUR_VENDOR - 1), (OUR_VENDOR + 1, 65535)]
    entries = around_us * (MAX_RANGE_ENTRIES // 2)
    crafted = tc_string(purposes_consent=set(range(1, 25)), vendor_ranges=entries)
    assert len(crafted) <= MAX_TC_STRING

    # THEN our vendor is not in any; and once one range names it, it is found
    assert read_vendor_signals(crafted, OUR_VENDOR).vendor_consent is False
    middle = MAX_RANGE_ENTRIES // 2
    named = tc_string(vendor_ranges=[*entries[:middle], (OUR_VENDOR, OUR_VENDOR), *entries[middle:-1]])
    assert read_vendor_signals(named, OUR_VENDOR).vendor_consent is True
    assert read_vendor_signals(named, 1).vendor_consent is True
    assert read_vendor_signals(named, 65535).vendor_consent is True


def test_the_most_restrictions_allowed_are_all_read():
    # GIVEN as many one-vendor restrictions as allowed, the last one naming us
    restrictions = [Restriction(1 + i % 24, i % 3, [1 + i]) for i in range(MAX_PUB_RESTRICTIONS - 1)]
    restrictions.append(Restriction(4, 2, [OUR_VENDOR]))

    # THEN the last restriction is found
    assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=restrictions) == {
        (4, RestrictionType.REQUIRE_LEGITIMATE_INTEREST)
    }


# --- limits (see "Cost" in functions/core/tcf.py) -----------------------------------


def spread(entries: int, sections: int) -> list[int]:
    """`entries` split as evenly as can be over `sections`."""
    return [entries // sections + (i < entries % sections) for i in range(sections)]


def strings_with_range_entries(total: int) -> dict[str, str]:
    """Granting strings (our vendor consented) with `total` range entries, in each place
    entries can be, and spread over all of them at once."""
    others = [(1 + 2 * i, 2 + 2 * i) if i % 2 else 1 + 2 * i for i in range(total)]
    consents, li, restricted, disclosed = spread(total, 4)
    return {
        "consents": tc_string(vendor_ranges=[*others[: total - 1], OUR_VENDOR]),
        "legitimate interests": tc_string(vendors={OUR_VENDOR}, li_vendor_ranges=others),
        "one restriction": tc_string(vendors={OUR_VENDOR}, restrictions=[Restriction(2, 0, others)]),
        "disclosed vendors": tc_string(vendors_segment(1, ranges=others), vendors={OUR_VENDOR}),
        "everywhere": tc_string(
            vendors_segment(1, ranges=others[:disclosed]),
            vendor_ranges=[*others[: consents - 1], OUR_VENDOR],
            li_vendor_ranges=others[:li],
            restrictions=[Restriction(2, 0, others[:share]) for share in spread(restricted, 9)],
        ),
    }


@pytest.mark.parametrize("place", list(strings_with_range_entries(1)))
def test_more_range_entries_than_allowed_are_malformed_wherever_they_are(place):
    # GIVEN strings with as many range entries as allowed, and with one more
    at_the_limit = strings_with_range_entries(MAX_RANGE_ENTRIES)[place]
    past_it = strings_with_range_entries(MAX_RANGE_ENTRIES + 1)[place]

    # THEN the first is read, the second refused
    assert read_vendor_signals(at_the_limit, OUR_VENDOR).vendor_consent is True
    with pytest.raises(InvalidTCString, match="range entries"):
        read_vendor_signals(past_it, OUR_VENDOR)


def test_more_publisher_restrictions_than_purposes_and_types_allow_are_malformed():
    # GIVEN one restriction for each purpose of the vendor list (1..11) and type 0..2, and
    # one more (empty)
    every_pair = [Restriction(purpose, kind, [1]) for purpose in range(1, 12) for kind in range(3)]
    assert len(every_pair) == MAX_PUB_RESTRICTIONS
    one_more = [*every_pair, Restriction(5, 0, [])]

    # THEN the first is read, the second refused from its count alone
    assert signals(vendors={OUR_VENDOR}, restrictions=every_pair).vendor_consent is True
    with pytest.raises(InvalidTCString, match="publisher restrictions"):
        signals(vendors={OUR_VENDOR}, restrictions=one_more)


def test_every_kind_of_segment_once_is_read_but_a_kind_twice_is_malformed():
    # GIVEN the core, disclosed vendors, allowed vendors and publisher TC segments
    kinds = [vendors_segment(1, vendors={OUR_VENDOR}), vendors_segment(2, vendors={1}), publisher_tc_segment(1)]
    assert len(kinds) + 1 == MAX_SEGMENTS
    assert signals(*kinds, vendors={OUR_VENDOR}).vendor_consent is True

    # THEN a second segment of a kind already there is refused, wherever it comes
    for twice in ([kinds[0], kinds[0]], [kinds[2], kinds[1], kinds[2]], [*kinds, kinds[1]]):
        with pytest.raises(InvalidTCString, match="segment"):
            signals(*twice, vendors={OUR_VENDOR})


def test_a_string_of_many_segments_is_refused_before_they_are_read():
    # GIVEN hundreds of tiny (well-formed) disclosed vendors segments
    crafted = tc_string(*[vendors_segment(1)] * 700, vendors={OUR_VENDOR})
    assert len(crafted) <= MAX_TC_STRING

    with pytest.raises(InvalidTCString, match="more segments"):
        read_vendor_signals(crafted, OUR_VENDOR)


# --- long sections ------------------------------------------------------------------

# The first vendor section starts at bit 213 of the core segment.
VENDOR_CONSENTS = 213


def with_field(core: CoreSegment, offset: int, width: int, value: int) -> str:
    """The TC string of `core` with the field at bit `offset` set to `value`."""
    bits = core.bits().bit_string()
    return base64url_of_bits(bits[:offset] + format(value, f"0{width}b") + bits[offset + width :])


def around(vendor: int, i: int) -> tuple[int, int]:
    """Ranges that come as close to `vendor` as possible without holding it."""
    return (1, vendor - 1) if i % 2 else (vendor + 1, 65535)


def test_a_vendor_named_only_by_an_entry_past_num_entries_is_not_found():
    # GIVEN 21 consent entries, vendor 7 the last, then NumEntries said to be 20: the 21st
    # entry (0, then 7 in 16 bits) is then read as the legitimate interest section's
    # MaxVendorId (3) and IsRangeEncoding (1), and the empty bitfield after it as its
    # NumEntries (0) and NumPubRestrictions (0)
    entries = [*range(101, 121), 7]
    core = CoreSegment(vendor_ranges=entries)
    count_offset = VENDOR_CONSENTS + 17  # past MaxVendorId and IsRangeEncoding
    assert read_vendor_signals(core.encode(), 7).vendor_consent is True

    # THEN the vendor is not found, and the string is still well-formed
    assert read_vendor_signals(with_field(core, count_offset, 12, 20), 7, EVERY_KIND) == read_vendor_signals(
        with_field(core, count_offset, 12, 20), 7
    )
    assert read_vendor_signals(with_field(core, count_offset, 12, 20), 7).vendor_consent is False


@pytest.mark.parametrize("position", [0, 1, 3, 4, 127, 128, MAX_RANGE_ENTRIES - 1])
def test_our_vendor_is_found_wherever_it_is_among_many_entries(position):
    # GIVEN the most ranges around our vendor, one of them replaced by our vendor
    entries: list = [around(OUR_VENDOR, i) for i in range(MAX_RANGE_ENTRIES)]
    entries[position] = OUR_VENDOR

    # THEN it is found, as the first entry, the last, or one inside a repeated chunk
    assert signals(vendor_ranges=entries).vendor_consent is True
    entries[position] = (OUR_VENDOR + 1, OUR_VENDOR + 1)
    assert signals(vendor_ranges=entries).vendor_consent is False


@pytest.mark.parametrize("leading", range(8))
@pytest.mark.parametrize("named_by", [OUR_VENDOR, (OUR_VENDOR, OUR_VENDOR), (OUR_VENDOR - 3, OUR_VENDOR + 3)])
def test_our_vendor_is_found_after_any_number_of_entries(leading, named_by):
    # GIVEN entries of 17 and 33 bits before ours, so that it starts at each bit of a nibble
    before = [(1 + i, 2 + i) if i % 3 else 10 + i for i in range(leading)]

    # THEN it is found, and a neighbour is not
    assert signals(vendor_ranges=[*before, named_by, 4000]).vendor_consent is True
    assert signals(vendor_ranges=[*before, OUR_VENDOR + 1, 4000]).vendor_consent is False


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 15, 16, 127, 128, 129, MAX_RANGE_ENTRIES - 1])
@pytest.mark.parametrize("section", ["vendor_ranges", "li_vendor_ranges"])
def test_a_range_section_is_walked_for_exactly_num_entries_entries(count, section):
    # GIVEN `count` entries of both sizes (NumEntries is read by the expression that walks
    # them, bit by bit: counts around each power of two), then a restriction naming us
    entries: list = [(3 + i, 4 + i) if i % 2 else 1 + i for i in range(count)]
    fields: dict = {section: entries, "restrictions": [Restriction(3, 0, [OUR_VENDOR])]}
    if section == "li_vendor_ranges":
        fields["vendors"] = {OUR_VENDOR}
    tc = tc_string(**fields)

    # THEN the section ends where its last entry does: the restriction after it is read
    assert named_kinds(tc) == {(3, RestrictionType.NOT_ALLOWED)}


def test_a_range_section_of_the_most_entries_is_walked_to_its_last():
    # GIVEN MAX_RANGE_ENTRIES entries (NumEntries 256: its ninth bit alone), ours the last
    entries: list = [(3 + i, 4 + i) if i % 2 else 1 + i for i in range(MAX_RANGE_ENTRIES - 1)]
    tc = tc_string(vendor_ranges=[*entries, OUR_VENDOR], li_vendors={1}, restrictions=[Restriction(3, 0, [])] * 3)

    # THEN it is found, and what follows the section is read as such
    assert read_vendor_signals(tc, OUR_VENDOR, EVERY_KIND).vendor_consent is True
    assert read_vendor_signals(tc, OUR_VENDOR + 1).vendor_consent is False


@pytest.mark.parametrize("vendor", [1, 2, 255, 256, 754, 32767, 32768, 65534, 65535])
def test_only_entries_holding_the_vendor_name_it_however_close_the_others_come(vendor):
    # GIVEN entries beside the vendor, one bit away in every way: single ids, one-vendor
    # ranges, ranges ending just before it or starting just after it, one ending before
    # it starts
    below, above = max(vendor - 1, 1), min(vendor + 1, 65535)
    beside: list = [below, above, (below, below), (above, above), (1, below), (above, 65535), (above, below)]
    beside = [entry for entry in beside if vendor not in ([entry] if isinstance(entry, int) else [entry[0]])]
    not_naming = [entry for entry in beside if not (isinstance(entry, tuple) and entry[0] <= vendor <= entry[1])]

    # THEN none of them names it, and each entry that holds it does
    assert read_vendor_signals(tc_string(vendor_ranges=not_naming), vendor).vendor_consent is False
    for naming in [vendor, (vendor, vendor), (below, vendor), (vendor, above), (1, 65535)]:
        tc = tc_string(vendor_ranges=[*not_naming, naming, *not_naming])
        assert read_vendor_signals(tc, vendor).vendor_consent is True


def test_sections_far_apart_in_a_long_core_segment_are_read_through_windows():
    # GIVEN a core segment of ~3,700 characters: a long consent bitfield (read as one bit),
    # then range-encoded legitimate interests and restrictions far after it
    core = CoreSegment(
        vendors={OUR_VENDOR, 18000},
        max_vendor_id=18000,
        li_vendor_ranges=[(1 + 2 * i, 2 + 2 * i) for i in range(100)],
        restrictions=[Restriction(4, 0, [(1, 5), OUR_VENDOR]), Restriction(2, 1, [(6, 7)] * 30)],
    )
    tc = core.encode()
    assert 3000 < len(tc) <= MAX_TC_STRING

    # THEN everything is found where it is, and a cut anywhere past the bitfield is refused
    assert read_vendor_signals(tc, OUR_VENDOR).vendor_consent is True
    assert named_kinds(tc) == {(4, RestrictionType.NOT_ALLOWED)}
    for cut in (len(tc) - 40, len(tc) - 200, len(tc) - 500):
        with pytest.raises(InvalidTCString):
            read_vendor_signals(tc[:cut], OUR_VENDOR)


def test_a_range_starting_at_0_deep_in_a_long_section_is_malformed():
    entries: list = [around(OUR_VENDOR, i) for i in range(MAX_RANGE_ENTRIES)]
    entries[200] = (0, 3)
    with pytest.raises(InvalidTCString, match="starting at 0"):
        signals(vendor_ranges=entries)
    entries[200] = 0
    with pytest.raises(InvalidTCString, match="starting at 0"):
        signals(li_vendor_ranges=entries)


def test_many_restrictions_are_read_wherever_they_name_our_vendor():
    # GIVEN the most restrictions of single ids, three naming our vendor at the start,
    # middle and end
    last = MAX_PUB_RESTRICTIONS - 1
    restrictions = [Restriction(1 + i % 24, i % 3, [1 + i]) for i in range(last + 1)]
    restrictions[0] = Restriction(4, 0, [OUR_VENDOR])
    restrictions[last // 2] = Restriction(3, 2, [5, OUR_VENDOR, 9])
    restrictions[last] = Restriction(1, 1, [OUR_VENDOR])

    # THEN each is reported
    assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=restrictions) == {
        (4, RestrictionType.NOT_ALLOWED),
        (3, RestrictionType.REQUIRE_LEGITIMATE_INTEREST),
        (1, RestrictionType.REQUIRE_CONSENT),
    }


@pytest.mark.parametrize("bad", [Restriction(0, 1, [7]), Restriction(5, 3, [7])])
def test_a_restriction_with_entries_under_purpose_0_or_type_3_among_many_is_malformed(bad):
    # GIVEN the most short restrictions, one with entries under purpose 0 or type 3
    restrictions = [Restriction(1 + i % 24, 0, [1 + i]) for i in range(MAX_PUB_RESTRICTIONS)]
    restrictions[MAX_PUB_RESTRICTIONS // 2] = bad
    with pytest.raises(InvalidTCString):
        signals(vendors={OUR_VENDOR}, restrictions=restrictions)

    # THEN without entries it is not
    restrictions[MAX_PUB_RESTRICTIONS // 2] = Restriction(bad.purpose, bad.type, [])
    assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=restrictions) == frozenset()


@pytest.mark.parametrize("count", [4, 9, 40])
def test_a_restriction_with_many_entries_names_our_vendor_by_a_range(count):
    # GIVEN a restriction of `count` ranges around our vendor, among other restrictions
    entries: list = [around(OUR_VENDOR, i) for i in range(count)]
    others = [Restriction(2, 0, [1, 2]), Restriction(7, 1, [(3, 9)] * 20)]

    # THEN it names our vendor once a range holds it
    assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=[*others, Restriction(4, 2, entries)]) == set()
    entries[count // 2] = (OUR_VENDOR - 1, OUR_VENDOR + 1)
    assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=[*others, Restriction(4, 2, entries)]) == {
        (4, RestrictionType.REQUIRE_LEGITIMATE_INTEREST)
    }


@pytest.mark.parametrize("count", [1, 4, 9, 40])
@pytest.mark.parametrize("among", [1, MAX_PUB_RESTRICTIONS])
def test_a_restriction_range_ending_before_it_starts_is_malformed_wherever_it_is(count, among):
    # GIVEN `among` restrictions, one of `count` entries whose last ends before it starts
    def restrictions(last):
        listed = [Restriction(1 + i % 24, 0, [1 + i]) for i in range(among)]
        listed[among // 2] = Restriction(3, 0, [*([(10, 20)] * (count - 1)), last])
        return listed

    with pytest.raises(InvalidTCString):
        signals(vendors={OUR_VENDOR}, restrictions=restrictions((OUR_VENDOR + 1, OUR_VENDOR)))

    # THEN a range of one vendor, or of two, is fine
    for last in [(OUR_VENDOR, OUR_VENDOR), (OUR_VENDOR - 1, OUR_VENDOR)]:
        assert restrictions_naming_us(vendors={OUR_VENDOR}, restrictions=restrictions(last)) == {
            (3, RestrictionType.NOT_ALLOWED)
        }


@pytest.mark.parametrize("count", [1, 2, 3, 7, 29])
def test_restrictions_past_num_pub_restrictions_are_not_read(count):
    # GIVEN `count` restrictions and one more naming our vendor, then NumPubRestrictions
    # said to be `count`
    restrictions = [Restriction(1 + i % 24, 0, [1 + i]) for i in range(count)]
    core = CoreSegment(vendors={OUR_VENDOR}, restrictions=[*restrictions, Restriction(4, 0, [OUR_VENDOR])])
    count_offset = VENDOR_CONSENTS + 17 + OUR_VENDOR + 17  # past the two bitfields
    assert named_kinds(core.encode()) == {(4, RestrictionType.NOT_ALLOWED)}

    # THEN the last one is trailing bits, not a restriction
    assert named_kinds(with_field(core, count_offset, 12, count)) == frozenset()


def test_a_vendor_id_beyond_16_bits_is_never_named_and_vendor_0_may_be():
    tc = tc_string(vendor_ranges=[(1, 65535)], restrictions=[Restriction(3, 1, [0, (1, 65535)])])
    beyond = read_vendor_signals(tc, 70000, EVERY_KIND)
    assert (beyond.vendor_consent, beyond.restricted) == (False, False)
    assert read_vendor_signals(tc, 0).vendor_consent is False
    assert named_kinds(tc, 0) == {(3, RestrictionType.REQUIRE_CONSENT)}


def test_base64url_bits_up_to_a_limit_still_check_every_character():
    text = "CP_aWiA" + "A" * 60
    assert base64url_bits(text, 18) == base64url_bits(text)[:18]
    assert base64url_bits(text[:2], 18) == base64url_bits(text[:2])  # fewer bits than the limit
    assert base64url_bits(text + "%", 18) is None


def test_base64url_values_are_the_characters_bits_up_to_a_limit_and_check_every_character():
    text = "CP_aWiA-" + "A" * 60
    bits = base64url_bits(text)
    assert bits is not None
    assert base64url_values(text, 48) == bytes(int(bits[i : i + 6], 2) for i in range(0, 48, 6))
    assert base64url_values(text, 13) == base64url_values(text, 18)  # the characters holding the bits
    assert base64url_values(text[:2], 18) == base64url_values(text[:2], 12)  # fewer than the limit
    assert base64url_values(text + "%", 18) is None
    assert base64url_values("é", 6) is None


def reference_reading(tc: str, vendor: int) -> tuple[bool, frozenset] | None:
    """(vendor consent, kinds of the restrictions naming `vendor`) of the core segment
    read one field at a time, as the IAB decoder does; None when malformed
    or past our limits (MAX_RANGE_ENTRIES, MAX_PUB_RESTRICTIONS), counted here apart.
    The header fields are assumed well-formed and other segments are left out."""
    core = tc.split(".")[0]
    raw = base64.urlsafe_b64decode(core + "A" * (-len(core) % 4))
    bits = "".join(f"{byte:08b}" for byte in raw)[: 6 * len(core)]

    def field(offset: int, width: int) -> int:
        if offset + width > len(bits):
            raise InvalidTCString("truncated")
        return int(bits[offset : offset + width], 2)

    read_entries = [0]

    def entries(offset: int, count: int, *, restriction: bool) -> tuple[bool, int]:
        named = False
        for _ in range(count):
            read_entries[0] += 1
            if read_entries[0] > MAX_RANGE_ENTRIES:
                raise InvalidTCString("past the limit")
            is_range, first = field(offset, 1), field(offset + 1, 16)
            last = field(offset + 17, 16) if is_range else first
            offset += 33 if is_range else 17
            if (first == 0 and not restriction) or (last < first and restriction):
                raise InvalidTCString("malformed entry")
            named = named or first <= vendor <= last
        return named, offset

    def vendor_section(offset: int) -> tuple[bool, int]:
        max_vendor_id = field(offset, 16)
        if not field(offset + 16, 1):
            field(offset + 17, max_vendor_id)  # there must be that many bits
            return 1 <= vendor <= max_vendor_id and bits[offset + 16 + vendor] == "1", offset + 17 + max_vendor_id
        return entries(offset + 29, field(offset + 17, 12), restriction=False)

    try:
        consent, offset = vendor_section(VENDOR_CONSENTS)
        _, offset = vendor_section(offset)  # legitimate interests
        found = set()
        count, offset = field(offset, 12), offset + 12
        if count > MAX_PUB_RESTRICTIONS:
            raise InvalidTCString("past the limit")
        for _ in range(count):
            purpose, kind, listed = field(offset, 6), field(offset + 6, 2), field(offset + 8, 12)
            if listed and (purpose == 0 or kind == 3):
                raise InvalidTCString("malformed restriction")
            named, offset = entries(offset + 20, listed, restriction=True)
            if named:
                found.add((purpose, kind))
    except InvalidTCString:
        return None
    return consent, frozenset(found)


def random_core(rng: random.Random, vendor: int) -> CoreSegment:
    """A core segment with long sections of entries near `vendor`, mostly well-formed."""

    def vendor_id() -> int:
        return min(
            65535, max(1, rng.choice([vendor, vendor - 1, vendor + 1, rng.randrange(1, 65536), rng.randrange(1, 3000)]))
        )

    def entry():
        if rng.random() < 0.5:
            return vendor_id()
        first, last = sorted((vendor_id(), vendor_id()))
        return (first, last)

    def section() -> list:
        return [entry() for _ in range(rng.choice([0, 1, 3, 7, 16, 33, 100, 300]))]

    restrictions = []
    for _ in range(rng.choice([0, 2, 9, 40, MAX_PUB_RESTRICTIONS, MAX_PUB_RESTRICTIONS + 1])):
        listed = rng.choice(
            [[], [vendor_id() for _ in range(rng.randrange(1, 16))], [entry() for _ in range(rng.randrange(1, 40))]]
        )
        restrictions.append(Restriction(rng.randrange(1, 64), rng.randrange(0, 3), listed))
    consent, li = section(), section()
    defect = rng.random()
    if defect < 0.1 and consent:
        consent[rng.randrange(len(consent))] = rng.choice([0, (0, 9)])
    elif defect < 0.2 and restrictions:
        at = rng.randrange(len(restrictions))
        restrictions[at] = Restriction(restrictions[at].purpose, 0, [*restrictions[at].entries, (9, 3)])
    elif defect < 0.3 and restrictions:
        at = rng.randrange(len(restrictions))
        restrictions[at] = Restriction(rng.choice([0, 9]), rng.choice([3, 0]), [*restrictions[at].entries, 5])
    return CoreSegment(
        purposes_consent={1, 3, 4}, vendor_ranges=consent, li_vendor_ranges=li, restrictions=restrictions
    )


def test_long_sections_read_the_same_as_field_by_field():
    # GIVEN seeded random strings with long sections near the vendor, some malformed or cut
    rng = random.Random(20251129)
    for _ in range(150):
        vendor = rng.choice([OUR_VENDOR, 1, 255, 4096, 65535, rng.randrange(1, 65536)])
        tc = random_core(rng, vendor).encode()
        if len(tc) > MAX_TC_STRING:
            continue
        if rng.random() < 0.15:
            tc = tc[: rng.randrange(1, len(tc))]

        expected = reference_reading(tc, vendor)
        # (asking about every kind, the consent decision's, and a few at random)
        asked = [EVERY_KIND, DECISION_KINDS, frozenset(rng.sample(sorted(EVERY_KIND), 3))]

        # WHEN read
        try:
            ours = tuple(read_vendor_signals(tc, vendor, kinds) for kinds in asked)
        except InvalidTCString:
            ours = None

        # THEN the answer is the field-by-field one
        if expected is None:
            assert ours is None, tc
        else:
            assert ours is not None, tc
            consent, found = expected
            assert [signals.vendor_consent for signals in ours] == [consent] * len(asked), tc
            assert [signals.restricted for signals in ours] == [bool(found & kinds) for kinds in asked], tc
