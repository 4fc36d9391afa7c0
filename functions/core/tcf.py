"""What an IAB TCF v2 TC string says about one vendor, read with bounded work.

The TC string ("TC string format", TCF v2.x) is dot-separated base64url segments, each a
bit string, most significant bit first. The core segment comes first: Version 6,
Created 36, LastUpdated 36, CmpId 12, CmpVersion 12, ConsentScreen 6, ConsentLanguage 12,
VendorListVersion 12, TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1,
SpecialFeatureOptIns 12, PurposesConsent 24, PurposesLITransparency 24,
PurposeOneTreatment 1, PublisherCC 12, then three variable-length sections:

- vendor consents and vendor legitimate interests, each MaxVendorId 16, IsRangeEncoding 1,
  then a bitfield of MaxVendorId bits (bit i-1 is vendor i) or NumEntries 12 followed by
  entries of IsARange 1, StartOrOnlyVendorId 16 [, EndVendorId 16];
- publisher restrictions: NumPubRestrictions 12, then per restriction PurposeId 6,
  RestrictionType 2 and a range section (NumEntries 12 and entries as above).

Further segments start with a 3-bit SegmentType: 1 disclosed vendors and 2 allowed
vendors (a vendor section as above), 3 publisher purposes (PubPurposesConsent 24,
PubPurposesLITransparency 24, NumCustomPurposes 6, then two bitfields of that length).

A crafted 4 KB string can hold ~700 ranges of 1..65535, so nothing here builds a set of
vendors: whether one vendor is in a section is a single bit test (bitfield) or one pass
over the entries (ranges), and the whole string is read at most once.

Where the official decoder (@iabtechlabtcf/core) refuses a string, so do we, so that the
reference tests (tests/reference/test_consent_matches_iab.py) can hold us to its answers:
a vendor range starting at 0, a restriction range ending before it starts, a restriction
with entries but purpose 0 or restriction type 3, a CmpId below 2, a PublisherCC letter
past "z" in ASCII, a segment type above 3, an empty segment. We are stricter in three
ways: only version 2 is read (the library also decodes version 1), the core segment must
come first and only once, and a string may hold at most MAX_TC_STRING characters.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum

MAX_TC_STRING = 4096

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD_BASE64 = bytes.maketrans(b"-_", b"+/")

_CMP_ID = 78
_PUBLISHER_CC = 201
_PURPOSES_CONSENT = 152
_PURPOSES_LI = 176
_PURPOSE_ONE_TREATMENT = 200
_VENDOR_CONSENTS = 213
# PublisherCC letters are 6 bits from "A"; the official decoder accepts [A-z] in ASCII.
_LAST_ACCEPTED_LETTER = ord("z") - ord("A")


class InvalidTCString(ValueError):
    """The string is not a TC string we can read (malformed, truncated, too long, not v2)."""


class RestrictionType(IntEnum):
    NOT_ALLOWED = 0
    REQUIRE_CONSENT = 1
    REQUIRE_LEGITIMATE_INTEREST = 2


@dataclass(frozen=True, slots=True)
class VendorSignals:
    """What a TC string says about one vendor: the purpose-level answers that apply to
    everyone, and the vendor-level ones looked up for this vendor alone."""

    vendor_id: int
    version: int
    purposes_consent: frozenset[int]
    purposes_legitimate_interest: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consent: bool
    vendor_legitimate_interest: bool
    # (purpose id, restriction type) of every publisher restriction naming this vendor.
    restrictions: frozenset[tuple[int, RestrictionType]]

    def restriction_types(self, purpose: int) -> frozenset[RestrictionType]:
        return frozenset(kind for restricted, kind in self.restrictions if restricted == purpose)


def base64url_bits(text: str, limit: int | None = None) -> str | None:
    """The bits of a base64url text ("0"/"1", 6 per character, as the IAB libraries read
    them: no padding, trailing bits kept), or None if a character is outside the alphabet.
    With `limit`, every character is still checked but only the characters holding the
    first `limit` bits are decoded (a reader of a few fixed fields needs no more)."""
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if raw.translate(None, _BASE64URL):
        return None
    if limit is not None:
        raw = raw[: -(-limit // 6)]
    if not raw:
        return ""
    # Whole groups of 4 characters decode to whole bytes; "A" pads with zero bits.
    data = binascii.a2b_base64(raw.translate(_TO_STANDARD_BASE64) + b"A" * (-len(raw) % 4))
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")[: 6 * len(raw)]


def read_vendor_signals(tc_string: str, vendor_id: int) -> VendorSignals:
    """Everything the consent decision needs about `vendor_id`; raises InvalidTCString.

    Every segment is checked (as the official decoder checks them), so a string that is
    malformed anywhere is refused rather than half-read."""
    if not tc_string or len(tc_string) > MAX_TC_STRING:
        raise InvalidTCString("TC string is empty or too long")
    core, *others = tc_string.split(".")
    bits = _segment_bits(core)
    version = _field(bits, 0, 6)
    if version != 2:
        raise InvalidTCString(f"TC string version {version} is not 2")
    if _field(bits, _CMP_ID, 12) < 2:
        raise InvalidTCString("TC string has an invalid CmpId")
    publisher_cc = _letters(bits, _PUBLISHER_CC)
    vendor_consent, cursor = _vendor_section(bits, _VENDOR_CONSENTS, vendor_id)
    vendor_li, cursor = _vendor_section(bits, cursor, vendor_id)
    restrictions = _publisher_restrictions(bits, cursor, vendor_id)
    for segment in others:
        _check_other_segment(segment)
    return VendorSignals(
        vendor_id=vendor_id,
        version=version,
        purposes_consent=_purposes(bits, _PURPOSES_CONSENT),
        purposes_legitimate_interest=_purposes(bits, _PURPOSES_LI),
        purpose_one_treatment=bits[_PURPOSE_ONE_TREATMENT] == "1",
        publisher_cc=publisher_cc,
        vendor_consent=vendor_consent,
        vendor_legitimate_interest=vendor_li,
        restrictions=restrictions,
    )


def _segment_bits(segment: str) -> str:
    bits = base64url_bits(segment)
    if not bits:
        raise InvalidTCString("TC string segment is empty or not base64url")
    return bits


def _field(bits: str, offset: int, width: int) -> int:
    end = offset + width
    if end > len(bits):
        raise InvalidTCString("TC string is truncated")
    return int(bits[offset:end], 2)


def _purposes(bits: str, offset: int) -> frozenset[int]:
    field = bits[offset : offset + 24]
    return frozenset(purpose for purpose, bit in enumerate(field, start=1) if bit == "1")


def _letters(bits: str, offset: int) -> str:
    first, second = _field(bits, offset, 6), _field(bits, offset + 6, 6)
    if first > _LAST_ACCEPTED_LETTER or second > _LAST_ACCEPTED_LETTER:
        raise InvalidTCString("TC string has an invalid country code")
    return chr(ord("A") + first) + chr(ord("A") + second)


def _vendor_section(bits: str, offset: int, vendor_id: int) -> tuple[bool, int]:
    """(is `vendor_id` in the vendor section at `offset`, offset just past the section)."""
    max_vendor_id = _field(bits, offset, 16)
    if _field(bits, offset + 16, 1) == 0:
        start = offset + 17
        end = start + max_vendor_id
        if end > len(bits):
            raise InvalidTCString("TC string is truncated in a vendor bitfield")
        return 1 <= vendor_id <= max_vendor_id and bits[start + vendor_id - 1] == "1", end
    entries = _field(bits, offset + 17, 12)
    return _vendor_ranges(bits, offset + 29, entries, vendor_id)


def _vendor_ranges(bits: str, cursor: int, entries: int, vendor_id: int) -> tuple[bool, int]:
    """One pass over range entries. A range whose end is before its start holds no
    vendor (the official decoder reads it so); one starting at vendor 0 is malformed."""
    found = False
    try:
        for _ in range(entries):
            if bits[cursor] == "1":
                both = int(bits[cursor + 1 : cursor + 33], 2)
                start, end = both >> 16, both & 0xFFFF
                cursor += 33
            else:
                start = end = int(bits[cursor + 1 : cursor + 17], 2)
                cursor += 17
            if start == 0:
                raise InvalidTCString("TC string has a vendor range starting at 0")
            if start <= vendor_id <= end:
                found = True
    except InvalidTCString:
        raise
    except (IndexError, ValueError):  # ran off the end of the string
        raise InvalidTCString("TC string is truncated in a vendor range") from None
    if cursor > len(bits):  # the last entry was cut short
        raise InvalidTCString("TC string is truncated in a vendor range")
    return found, cursor


def _publisher_restrictions(bits: str, offset: int, vendor_id: int) -> frozenset[tuple[int, RestrictionType]]:
    """The (purpose, restriction type) pairs naming `vendor_id`, in one pass over the
    section. As the official decoder has it, a restriction may name vendor 0, and a range
    ending before its start, or entries under purpose 0 or type 3, are malformed."""
    found: set[tuple[int, int]] = set()
    cursor = offset + 12
    try:
        for _ in range(_field(bits, offset, 12)):
            header = int(bits[cursor : cursor + 20], 2)  # PurposeId 6, RestrictionType 2, NumEntries 12
            cursor += 20
            entries = header & 0xFFF
            if not entries:
                continue
            purpose, kind = header >> 14, (header >> 12) & 0b11
            if purpose == 0 or kind == 3:
                raise InvalidTCString("TC string has an invalid publisher restriction")
            for _ in range(entries):
                if bits[cursor] == "1":
                    both = int(bits[cursor + 1 : cursor + 33], 2)
                    start, end = both >> 16, both & 0xFFFF
                    cursor += 33
                    if end < start:
                        raise InvalidTCString("TC string has a restriction range ending before it starts")
                else:
                    start = end = int(bits[cursor + 1 : cursor + 17], 2)
                    cursor += 17
                if start <= vendor_id <= end:
                    found.add((purpose, kind))
    except InvalidTCString:
        raise
    except (IndexError, ValueError):  # ran off the end of the string
        raise InvalidTCString("TC string is truncated in the publisher restrictions") from None
    if cursor > len(bits):  # the last field read was cut short
        raise InvalidTCString("TC string is truncated in the publisher restrictions")
    return frozenset((purpose, RestrictionType(kind)) for purpose, kind in found)


def _check_other_segment(segment: str) -> None:
    """Segments after the core one are not needed for the decision, but a malformed one
    makes the whole string malformed."""
    bits = _segment_bits(segment)
    kind = _field(bits, 0, 3)
    if kind in (1, 2):  # disclosed vendors, allowed vendors
        _vendor_section(bits, 3, 0)
    elif kind == 3:  # publisher purposes, then two bitfields of NumCustomPurposes bits
        custom = _field(bits, 3 + 24 + 24, 6)
        if 3 + 24 + 24 + 6 + 2 * custom > len(bits):
            raise InvalidTCString("TC string is truncated in the publisher purposes segment")
    else:
        raise InvalidTCString(f"TC string has a segment of type {kind} where it may not")
