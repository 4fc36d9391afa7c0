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

Cost. Every character is checked to be base64url (one C call), but only the bits that are
read are decoded (binascii, int, into a string of "0"/"1" where a field is one slice):
the header, the bit of our vendor in a bitfield, range entries, restrictions. Turning 4 KB
into bits would cost ~3x a typical decision by itself. A bitfield answers for one vendor with one bit test, whatever its
length, so an ordinary string (bitfields, a few restrictions) costs little more than its
header. What can cost is what must be walked one at a time to find where the next section
starts: range entries, publisher restrictions and segments. Each entry is two slices and
two string comparisons (no int, no set), and the limits below cap how many there can be,
at what a conforming string can hold, so that a crafted string costs about what an
ordinary one does:

- MAX_RANGE_ENTRIES range entries in the whole string (all vendor sections and
  restrictions together). The spec has encoders pick whichever of bitfield and ranges is
  shorter ("Encoding logic should choose the encoding scheme that results in the smaller
  output size"), so a range-encoded vendor section has fewer entries than MaxVendorId / 17
  (the smallest entry is 17 bits): under 90 with today's vendor ids (below ~1,500). A
  string has at most three such sections (consents, legitimate interests, disclosed
  vendors; allowed vendors only in CMP API answers) and a handful of restriction entries,
  so a conforming string stays below the cap (all three sections at the break-even
  would be ~250, and they are not: disclosed vendors is the dense list every CMP shows,
  a bitfield). Without it a 4 KB string holds ~1,400.
- MAX_PUB_RESTRICTIONS restrictions: a restriction is a (PurposeId, RestrictionType) pair
  with the list of vendors it applies to, so a conforming string writes each pair once
  (the official encoder keys them so), for purposes 1..24 (the width of PurposesConsent)
  and types 0..2: at most 72.
- Segments: "There are 4 distinct TC string segments" (core, disclosed vendors, allowed
  vendors, publisher TC), so after the core each kind may come once, at most three more.

A string past a limit is malformed (no consent), never half-read. The limits are checked
from the count fields before any entry is walked, so refusing costs nothing either.

Where the official decoder (@iabtechlabtcf/core) refuses a string, so do we, so that the
reference tests (tests/reference/test_consent_matches_iab.py) can hold us to its answers:
a vendor range starting at 0, a restriction range ending before it starts, a restriction
with entries but purpose 0 or restriction type 3, a CmpId below 2, a PublisherCC letter
past "z" in ASCII, a segment type above 3, an empty segment. We are stricter: only
version 2 is read (the library also decodes version 1), the core segment must come first
and each other kind at most once, a string may hold at most MAX_TC_STRING characters, and
the limits above hold (the library has none, and expands every range vendor by vendor).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum

MAX_TC_STRING = 4096
# See "Cost" above: more than three vendor sections at the break-even of ranges and
# bitfield (~85 entries each with today's vendor ids) and a few restrictions.
MAX_RANGE_ENTRIES = 256
# One restriction per (purpose 1..24, restriction type 0..2).
MAX_PUB_RESTRICTIONS = 24 * 3
# Core, disclosed vendors, allowed vendors, publisher TC.
MAX_SEGMENTS = 4

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
# Enough of a publisher TC segment to read its fixed fields: SegmentType 3,
# PubPurposesConsent 24, PubPurposesLITransparency 24, NumCustomPurposes 6.
_OTHER_SEGMENT_HEAD = 57

# Vendor ids as 16-bit strings: for strings of "0"/"1" of one length, comparing the
# strings compares the numbers, so an entry is tested without converting it.
_VENDOR_0 = "0" * 16
# An id no entry can name (above every 16-bit string, so never <= an entry's end).
_NEVER_NAMED = "2"


class InvalidTCString(ValueError):
    """The string is not a TC string we can read (malformed, truncated, too long, not v2,
    past a limit)."""


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
    raw = _base64url_bytes(text)
    if raw is None:
        return None
    return _bits(raw, 0, 6 * len(raw) if limit is None else limit)[0]


def _base64url_bytes(text: str) -> bytes | None:
    """`text` as ASCII bytes, or None if a character is outside the base64url alphabet."""
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    return None if raw.translate(None, _BASE64URL) else raw


def _bits(raw: bytes, start: int, length: int) -> tuple[str, int]:
    """(bits, offset of the first): the bits of base64url `raw` from bit `start` (rounded
    down to a whole group of 4 characters) to `start + length` or the end, whichever comes
    first. Only these characters are decoded: a reader never pays for bits it skips."""
    first = start // 24 * 4
    chunk = raw[first : -(-(start + length) // 6)]
    if not chunk:
        return "", 6 * first
    # Whole groups of 4 characters decode to whole bytes; "A" pads with zero bits.
    data = binascii.a2b_base64(chunk.translate(_TO_STANDARD_BASE64) + b"A" * (-len(chunk) % 4))
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")[: 6 * len(chunk)], 6 * first


def read_vendor_signals(tc_string: str, vendor_id: int) -> VendorSignals:
    """Everything the consent decision needs about `vendor_id`; raises InvalidTCString.

    Every segment is checked (as the official decoder checks them), so a string that is
    malformed anywhere is refused rather than half-read."""
    if not tc_string or len(tc_string) > MAX_TC_STRING:
        raise InvalidTCString("TC string is empty or too long")
    core, *others = tc_string.split(".", MAX_SEGMENTS)
    if len(others) >= MAX_SEGMENTS:
        raise InvalidTCString("TC string has more segments than there are kinds")
    raw = _segment_bytes(core)
    bits, _ = _bits(raw, 0, _VENDOR_CONSENTS + 29)  # the header and the first section's
    version = _field(bits, 0, 6)
    if version != 2:
        raise InvalidTCString(f"TC string version {version} is not 2")
    if _field(bits, _CMP_ID, 12) < 2:
        raise InvalidTCString("TC string has an invalid CmpId")
    publisher_cc = _letters(bits, _PUBLISHER_CC)
    purposes_consent = _purposes(bits, _PURPOSES_CONSENT)
    purposes_li = _purposes(bits, _PURPOSES_LI)
    purpose_one_treatment = _field(bits, _PURPOSE_ONE_TREATMENT, 1) == 1
    vendor = format(vendor_id, "016b") if 0 <= vendor_id <= 0xFFFF else _NEVER_NAMED
    entries_left = MAX_RANGE_ENTRIES
    vendor_consent, cursor, entries_left = _vendor_section(raw, _VENDOR_CONSENTS, vendor_id, vendor, entries_left)
    vendor_li, cursor, entries_left = _vendor_section(raw, cursor, vendor_id, vendor, entries_left)
    restrictions, entries_left = _publisher_restrictions(raw, cursor, vendor, entries_left)
    kinds: set[int] = set()
    for segment in others:
        kind, entries_left = _check_other_segment(segment, entries_left)
        if kind in kinds:
            raise InvalidTCString(f"TC string has two segments of type {kind}")
        kinds.add(kind)
    return VendorSignals(
        vendor_id=vendor_id,
        version=version,
        purposes_consent=purposes_consent,
        purposes_legitimate_interest=purposes_li,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
        vendor_consent=vendor_consent,
        vendor_legitimate_interest=vendor_li,
        restrictions=restrictions,
    )


def _segment_bytes(segment: str) -> bytes:
    raw = _base64url_bytes(segment)
    if not raw:
        raise InvalidTCString("TC string segment is empty or not base64url")
    return raw


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


def _take_entries(entries: int, entries_left: int) -> int:
    """What is left of the MAX_RANGE_ENTRIES budget once `entries` more are read."""
    if entries > entries_left:
        raise InvalidTCString(f"TC string has more than {MAX_RANGE_ENTRIES} range entries")
    return entries_left - entries


def _vendor_section(raw: bytes, offset: int, vendor_id: int, vendor: str, entries_left: int) -> tuple[bool, int, int]:
    """(is the vendor in the vendor section at bit `offset` of segment `raw`, offset just
    past the section, range entries left). `vendor` is `vendor_id` as a 16-bit string.
    A bitfield is not decoded: only the bit of the vendor is."""
    bits, base = _bits(raw, offset, 29)  # MaxVendorId 16, IsRangeEncoding 1, NumEntries 12
    max_vendor_id = _field(bits, offset - base, 16)
    if _field(bits, offset - base + 16, 1) == 0:
        start = offset + 17
        end = start + max_vendor_id
        if end > 6 * len(raw):
            raise InvalidTCString("TC string is truncated in a vendor bitfield")
        if not 1 <= vendor_id <= max_vendor_id:
            return False, end, entries_left
        bit, base = _bits(raw, start + vendor_id - 1, 1)
        return bit[start + vendor_id - 1 - base] == "1", end, entries_left
    entries = _field(bits, offset - base + 17, 12)
    entries_left = _take_entries(entries, entries_left)
    found, cursor = _vendor_ranges(raw, offset + 29, entries, vendor)
    return found, cursor, entries_left


def _vendor_ranges(raw: bytes, offset: int, entries: int, vendor: str) -> tuple[bool, int]:
    """One pass over the range entries at bit `offset`: (is `vendor` named, offset past
    them). A range whose end is before its start holds no vendor (the official decoder
    reads it so); one starting at vendor 0 is malformed."""
    bits, base = _bits(raw, offset, 33 * entries)  # at most 33 bits an entry
    cursor = offset - base
    found = False
    try:
        for _ in range(entries):
            start = bits[cursor + 1 : cursor + 17]
            if bits[cursor] == "0":
                end = start
                cursor += 17
            else:
                end = bits[cursor + 17 : cursor + 33]
                cursor += 33
            if start == _VENDOR_0:
                raise InvalidTCString("TC string has a vendor range starting at 0")
            if start <= vendor <= end:
                found = True
    except IndexError:  # ran off the end of the string
        raise InvalidTCString("TC string is truncated in a vendor range") from None
    if cursor > len(bits):  # the last entry was cut short (its slices were short)
        raise InvalidTCString("TC string is truncated in a vendor range")
    return found, cursor + base


def _publisher_restrictions(
    raw: bytes, offset: int, vendor: str, entries_left: int
) -> tuple[frozenset[tuple[int, RestrictionType]], int]:
    """The (purpose, restriction type) pairs naming `vendor` (a 16-bit string) and the
    range entries left, in one pass over the section. As the official decoder has it, a
    restriction may name vendor 0, and a range ending before its start, or entries under
    purpose 0 or type 3, are malformed."""
    # Decoded as far as the headers and the entries allowed can reach, never further into
    # what a crafted string may pad the segment with.
    bits, base = _bits(raw, offset, 12 + 20 * MAX_PUB_RESTRICTIONS + 33 * entries_left)
    count = _field(bits, offset - base, 12)
    if count > MAX_PUB_RESTRICTIONS:
        raise InvalidTCString(f"TC string has more than {MAX_PUB_RESTRICTIONS} publisher restrictions")
    cursor = offset - base + 12
    found: set[tuple[int, int]] = set()
    try:
        for _ in range(count):
            header = int(bits[cursor : cursor + 20], 2)  # PurposeId 6, RestrictionType 2, NumEntries 12
            cursor += 20
            entries = header & 0xFFF
            if not entries:
                continue
            purpose, kind = header >> 14, (header >> 12) & 0b11
            if purpose == 0 or kind == 3:
                raise InvalidTCString("TC string has an invalid publisher restriction")
            entries_left = _take_entries(entries, entries_left)
            named = False
            for _ in range(entries):
                start = bits[cursor + 1 : cursor + 17]
                if bits[cursor] == "0":
                    end = start
                    cursor += 17
                else:
                    end = bits[cursor + 17 : cursor + 33]
                    cursor += 33
                    if end < start:
                        raise InvalidTCString("TC string has a restriction range ending before it starts")
                if start <= vendor <= end:
                    named = True
            if named:
                found.add((purpose, kind))
    except (IndexError, ValueError) as error:  # ran off the end of the string
        if isinstance(error, InvalidTCString):
            raise
        raise InvalidTCString("TC string is truncated in the publisher restrictions") from None
    if cursor > len(bits):  # the last field read was cut short
        raise InvalidTCString("TC string is truncated in the publisher restrictions")
    return frozenset((purpose, RestrictionType(kind)) for purpose, kind in found), entries_left


def _check_other_segment(segment: str, entries_left: int) -> tuple[int, int]:
    """(segment type, range entries left) of a segment after the core one. They are not
    needed for the decision, but a malformed one makes the whole string malformed."""
    raw = _segment_bytes(segment)
    kind = _BASE64URL.index(raw[0]) >> 3  # SegmentType: the top 3 bits of the first letter
    if kind in (1, 2):  # disclosed vendors, allowed vendors
        _, _, entries_left = _vendor_section(raw, 3, 0, _NEVER_NAMED, entries_left)
    elif kind == 3:  # publisher purposes, then two bitfields of NumCustomPurposes bits
        bits, _ = _bits(raw, 0, _OTHER_SEGMENT_HEAD)
        custom = _field(bits, 3 + 24 + 24, 6)
        if 3 + 24 + 24 + 6 + 2 * custom > 6 * len(raw):
            raise InvalidTCString("TC string is truncated in the publisher purposes segment")
    else:
        raise InvalidTCString(f"TC string has a segment of type {kind} where it may not")
    return kind, entries_left
