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
read are decoded, a window at a time (binascii, int, into a string of "0"/"1" where a
field is one slice): the header, our vendor's bit in a bitfield, range sections,
restrictions. Turning 4 KB into bits would cost ~3x a typical decision by itself. A
bitfield answers for one vendor with one bit test, whatever its length, so an ordinary
string (bitfields, a few restrictions) costs little more than its header. What must be
walked one at a time, to find where the next section starts, is range entries,
publisher restrictions and segments:

- a vendor range section (consents, legitimate interests, disclosed or allowed vendors)
  is walked by one match of _vendor_ranges(), whatever its length: the expression reads
  NumEntries itself and takes that many entries (no Python per entry), refusing a range
  that starts at vendor 0. Only the vendor consents are then searched for our vendor
  (legitimate interest is not what the decision needs), by a second expression built for
  it (_names_vendor);
- restrictions are a loop in Python: each range in them must be compared with its own
  start (one ending before it is malformed) and, in the kinds of restriction the caller
  asks about, with our vendor. Comparing two 16-bit fields is one slice comparison here
  but up to sixteen steps of an expression, so a compiled walk gains nothing there (nor
  does exporting the entries for integer arithmetic: both were measured).

So the work grows with the number of range entries and restrictions, and the limits
below cap them, at what a conforming string can hold. The costliest string is then
MAX_RANGE_ENTRIES ranges in restrictions of the kinds asked about, each compared twice:
~5x an ordinary decision (tests/bench/bench_consent.py), where vendor ranges cost ~3x.

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
- MAX_PUB_RESTRICTIONS restrictions. A restriction is a (PurposeId, RestrictionType) pair
  with the list of vendors it applies to, PurposeId being "the Vendor's declared Purpose
  ID" (TC string format), so one of the 11 purposes of the Global Vendor List (v3, TCF
  v2.2): the only ones a vendor can declare. The official encoder writes one record per
  pair (it keys them so), cannot encode without a vendor list, and drops any restriction
  the list does not let the vendor have (PurposeRestrictionVector.isOkToHave): at most
  11 purposes x 3 types = 33. (Should the vendor list ever define more purposes, this is
  the limit to raise.)
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
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from itertools import compress

MAX_TC_STRING = 4096
# See "Cost" above: more than three vendor sections at the break-even of ranges and
# bitfield (~85 entries each with today's vendor ids) and a few restrictions.
MAX_RANGE_ENTRIES = 256
# One restriction per (purpose 1..11, restriction type 0..2): see "Cost" above.
MAX_PUB_RESTRICTIONS = 11 * 3
# Core, disclosed vendors, allowed vendors, publisher TC.
MAX_SEGMENTS = 4

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD_BASE64 = bytes.maketrans(b"-_", b"+/")
_SEXTET_VALUES = bytes.maketrans(_BASE64URL, bytes(range(64)))

_CMP_ID = 78
_PUBLISHER_CC = 201
_PURPOSES_CONSENT = 152
_PURPOSE_ONE_TREATMENT = 200
_VENDOR_CONSENTS = 213
# PublisherCC letters are 6 bits from "A"; the official decoder accepts [A-z] in ASCII.
_LAST_ACCEPTED_LETTER = ord("z") - ord("A")
# Enough of a publisher TC segment to read its fixed fields: SegmentType 3,
# PubPurposesConsent 24, PubPurposesLITransparency 24, NumCustomPurposes 6.
_OTHER_SEGMENT_HEAD = 57


class InvalidTCString(ValueError):
    """The string is not a TC string we can read (malformed, truncated, too long, not v2,
    past a limit)."""


class RestrictionType(IntEnum):
    NOT_ALLOWED = 0
    REQUIRE_CONSENT = 1
    REQUIRE_LEGITIMATE_INTEREST = 2


# A kind of publisher restriction: (purpose id, restriction type).
RestrictionKind = tuple[int, RestrictionType]


@dataclass(frozen=True, slots=True)
class VendorSignals:
    """What a TC string says about one vendor, as far as the consent decision reads it:
    the purpose-level answers that apply to everyone, and the vendor-level ones looked up
    for this vendor alone. (Legitimate interest is not read: consent is what is needed.)"""

    vendor_id: int
    version: int
    purposes_consent: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consent: bool
    # Whether a publisher restriction of one of the kinds asked about names this vendor.
    restricted: bool


def base64url_bits(text: str, limit: int | None = None) -> str | None:
    """The bits of a base64url text ("0"/"1", 6 per character, as the IAB libraries read
    them: no padding, trailing bits kept), or None if a character is outside the alphabet.
    With `limit`, every character is still checked but only the characters holding the
    first `limit` bits are decoded (a reader of a few fixed fields needs no more)."""
    raw = _base64url_bytes(text)
    if raw is None:
        return None
    return _bits(raw, 0, 6 * len(raw) if limit is None else limit)[0]


def base64url_values(text: str, limit: int) -> bytes | None:
    """The 6-bit values of the characters of base64url `text` that hold its first `limit`
    bits (fewer if it is shorter), or None if any character is outside the alphabet. For
    a reader of a few fields at known offsets: no bits string is made."""
    raw = _base64url_bytes(text)
    return None if raw is None else raw[: -(-limit // 6)].translate(_SEXTET_VALUES)


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


class _Segment:
    """A segment's characters and the last window of bits decoded from them. Sections are
    read in order, so a window decoded for one often holds the start of the next (this
    beats decoding a real CMP's core segment at once, bitfields and all)."""

    __slots__ = ("base", "bits", "raw", "size")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.size = 6 * len(raw)
        self.bits, self.base = "", 0

    def window(self, start: int, length: int) -> tuple[str, int]:
        """(bits, offset of the first) holding bits `start` to `start + length` (fewer at
        the end of the segment)."""
        end = min(start + length, self.size)
        if not (self.base <= start and end <= self.base + len(self.bits)):
            self.bits, self.base = _bits(self.raw, start, end - start)
        return self.bits, self.base


def read_vendor_signals(
    tc_string: str, vendor_id: int, restriction_kinds: Collection[RestrictionKind] = ()
) -> VendorSignals:
    """Everything the consent decision needs about `vendor_id`; raises InvalidTCString.
    Publisher restrictions are looked up for the `restriction_kinds` given (the decision
    needs only those that forbid it something); all of them are checked all the same.

    Every segment is checked (as the official decoder checks them), so a string that is
    malformed anywhere is refused rather than half-read."""
    if not tc_string or len(tc_string) > MAX_TC_STRING:
        raise InvalidTCString("TC string is empty or too long")
    core, *others = tc_string.split(".", MAX_SEGMENTS)
    if len(others) >= MAX_SEGMENTS:
        raise InvalidTCString("TC string has more segments than there are kinds")
    segment = _Segment(_segment_bytes(core))
    bits, _ = segment.window(0, _VENDOR_CONSENTS + 29)  # the header and the first section's
    version = _field(bits, 0, 6)
    if version != 2:
        raise InvalidTCString(f"TC string version {version} is not 2")
    if _field(bits, _CMP_ID, 12) < 2:
        raise InvalidTCString("TC string has an invalid CmpId")
    publisher_cc = _letters(bits, _PUBLISHER_CC)
    purposes_consent = _purposes(bits, _PURPOSES_CONSENT)
    purpose_one_treatment = _field(bits, _PURPOSE_ONE_TREATMENT, 1) == 1
    nameable = vendor_id if 0 <= vendor_id <= 0xFFFF else None  # a 16-bit id, or none to look for
    vendor_consent, cursor, budget = _vendor_section(segment, _VENDOR_CONSENTS, nameable, MAX_RANGE_ENTRIES)
    _, cursor, budget = _vendor_section(segment, cursor, None, budget)  # legitimate interests
    kinds = _kind_values(frozenset(restriction_kinds)) if nameable is not None else frozenset()
    vendor = f"{vendor_id:016b}" if nameable is not None else ""
    restricted, budget = _publisher_restrictions(segment, cursor, kinds, vendor, budget)
    kinds_seen: set[int] = set()
    for other in others:
        kind, budget = _check_other_segment(other, budget)
        if kind in kinds_seen:
            raise InvalidTCString(f"TC string has two segments of type {kind}")
        kinds_seen.add(kind)
    return VendorSignals(
        vendor_id=vendor_id,
        version=version,
        purposes_consent=purposes_consent,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
        vendor_consent=vendor_consent,
        restricted=restricted,
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
    return frozenset(compress(_PURPOSE_IDS, map(_IS_SET, bits[offset : offset + 24])))


_PURPOSE_IDS = range(1, 25)
_IS_SET = "1".__eq__


def _letters(bits: str, offset: int) -> str:
    first, second = _field(bits, offset, 6), _field(bits, offset + 6, 6)
    if first > _LAST_ACCEPTED_LETTER or second > _LAST_ACCEPTED_LETTER:
        raise InvalidTCString("TC string has an invalid country code")
    return chr(ord("A") + first) + chr(ord("A") + second)


# --- vendor sections -----------------------------------------------------------------


def _vendor_section(segment: _Segment, offset: int, vendor_id: int | None, budget: int) -> tuple[bool, int, int]:
    """(is `vendor_id` (None: none is looked for) in the vendor section at bit `offset`,
    offset just past the section, range entries left). A bitfield is not decoded: only the
    vendor's bit is; range entries are walked by one match of _vendor_ranges(), whatever
    their number, then searched for the vendor by _names_vendor."""
    bits, base = segment.window(offset, 29)  # MaxVendorId 16, IsRangeEncoding 1[, NumEntries 12]
    max_vendor_id = _field(bits, offset - base, 16)
    if _field(bits, offset - base + 16, 1) == 0:
        end = offset + 17 + max_vendor_id
        if end > segment.size:
            raise InvalidTCString("TC string is truncated in a vendor bitfield")
        if vendor_id is None or not 1 <= vendor_id <= max_vendor_id:
            return False, end, budget
        bit, base = segment.window(offset + 16 + vendor_id, 1)
        return bit[offset + 16 + vendor_id - base] == "1", end, budget
    count_at = offset + 17
    count = _field(bits, count_at - base, 12)
    budget = _take_entries(count, budget)
    first = count_at + 12
    limit = min(segment.size, first + 33 * count)  # as far as its entries can reach
    bits, base = segment.window(count_at, limit - count_at)
    walked = _vendor_ranges().match(bits, count_at - base, limit - base)
    if walked is None:
        raise InvalidTCString("TC string has a vendor range section that is truncated or has a range starting at 0")
    end = walked.end() + base
    named = vendor_id is not None and _names_vendor(vendor_id)(bits[first - base : end - base])
    return named, end, budget


def _take_entries(entries: int, budget: int) -> int:
    """What is left of the MAX_RANGE_ENTRIES budget once `entries` more are read."""
    if entries > budget:
        raise InvalidTCString(f"TC string has more than {MAX_RANGE_ENTRIES} range entries")
    return budget - entries


# --- publisher restrictions ----------------------------------------------------------


def _publisher_restrictions(
    segment: _Segment, offset: int, kinds: frozenset[int], vendor: str, budget: int
) -> tuple[bool, int]:
    """(does a restriction of one of `kinds` (see _kind_values) name `vendor` (16 bits, or
    "" when none is asked about), range entries left), in one pass over the section. As
    the official decoder has it, a restriction may name vendor 0, and a range ending
    before its start, or entries under purpose 0 or type 3, are malformed."""
    # Decoded as far as the headers and the entries allowed can reach, never further into
    # what a crafted string may pad the segment with.
    bits, base = segment.window(offset, 12 + 20 * MAX_PUB_RESTRICTIONS + 33 * budget)
    count = _field(bits, offset - base, 12)
    if count > MAX_PUB_RESTRICTIONS:
        raise InvalidTCString(f"TC string has more than {MAX_PUB_RESTRICTIONS} publisher restrictions")
    cursor = offset + 12 - base
    restricted = False
    try:
        for _ in range(count):
            header = int(bits[cursor : cursor + 20], 2)  # PurposeId 6, RestrictionType 2, NumEntries 12
            cursor += 20
            entries = header & 0xFFF
            if not entries:
                continue
            kind = header >> 12
            if kind < 4 or kind & 3 == 3:  # purpose 0, type 3
                raise InvalidTCString("TC string has an invalid publisher restriction")
            if entries > budget:
                raise InvalidTCString(f"TC string has more than {MAX_RANGE_ENTRIES} range entries")
            budget -= entries
            asked = not restricted and kind in kinds
            for _ in range(entries):
                if bits[cursor] == "1":
                    start, end = bits[cursor + 1 : cursor + 17], bits[cursor + 17 : cursor + 33]
                    cursor += 33
                    if end < start:
                        raise InvalidTCString("TC string has a restriction range ending before it starts")
                    if asked and start <= vendor <= end:
                        restricted = asked = True
                else:
                    if asked and bits.startswith(vendor, cursor + 1):
                        restricted = asked = True
                    cursor += 17
    except (IndexError, ValueError) as error:  # ran off the end of the string
        if isinstance(error, InvalidTCString):
            raise
        raise InvalidTCString("TC string is truncated in the publisher restrictions") from None
    if cursor > len(bits):  # the last field read was cut short
        raise InvalidTCString("TC string is truncated in the publisher restrictions")
    return restricted, budget


@lru_cache(maxsize=16)
def _kind_values(kinds: frozenset[RestrictionKind]) -> frozenset[int]:
    """PurposeId and RestrictionType of each kind, as the 8-bit number they make."""
    return frozenset(purpose << 2 | kind for purpose, kind in kinds if 0 <= purpose < 64)


# --- other segments ------------------------------------------------------------------


def _check_other_segment(text: str, budget: int) -> tuple[int, int]:
    """(segment type, range entries left) of a segment after the core one. They are not
    needed for the decision, but a malformed one makes the whole string malformed."""
    raw = _segment_bytes(text)
    kind = _BASE64URL.index(raw[0]) >> 3  # SegmentType: the top 3 bits of the first letter
    if kind in (1, 2):  # disclosed vendors, allowed vendors
        _, _, budget = _vendor_section(_Segment(raw), 3, None, budget)
    elif kind == 3:  # publisher purposes, then two bitfields of NumCustomPurposes bits
        bits, _ = _bits(raw, 0, _OTHER_SEGMENT_HEAD)
        custom = _field(bits, 3 + 24 + 24, 6)
        if 3 + 24 + 24 + 6 + 2 * custom > 6 * len(raw):
            raise InvalidTCString("TC string is truncated in the publisher purposes segment")
    else:
        raise InvalidTCString(f"TC string has a segment of type {kind} where it may not")
    return kind, budget


# --- the expressions -----------------------------------------------------------------
# Over "0"/"1" strings. DOTALL: "." is any character, and ".{n}" a skip of n bits at C speed.


def _num_entries_then(entry: str) -> str:
    """NumEntries (12 bits) and that many `entry`s, in one match whatever their number:
    each of its low nine bits that is set sets a group, whose conditional then takes 2**i
    entries. (The count is checked against MAX_RANGE_ENTRIES before, so the top three bits
    are 0.) Possessive: sre then keeps no backtracking state for each entry."""
    count = "000" + "".join(f"(?:0|1(?P<n{i}>))" for i in range(8, -1, -1))
    return count + "".join(f"(?(n{i})(?:{entry}){{{1 << i}}}+)" for i in range(8, -1, -1))


@lru_cache(maxsize=1)
def _vendor_ranges() -> re.Pattern[str]:
    """A vendor section's NumEntries and entries: a range may not start at vendor 0.
    (Compiled when first needed: a real CMP's string is bitfields.)"""
    return re.compile(_num_entries_then("0(?!0{16}).{16}|1(?!0{16}).{32}"), re.DOTALL)


def _at_most(value: str) -> str:
    """An expression for the bit strings of value's length that are <= `value`, as a
    trie: at each 1 of `value`, a 0 decides (smaller), a 1 follows on."""
    if not value:
        return ""
    rest = value[1:]
    return f"0{_at_most(rest)}" if value[0] == "0" else f"(?:0.{{{len(rest)}}}|1{_at_most(rest)})"


def _at_least(value: str) -> str:
    """The bit strings of value's length that are >= `value` (see _at_most)."""
    if not value:
        return ""
    rest = value[1:]
    return f"1{_at_least(rest)}" if value[0] == "1" else f"(?:1.{{{len(rest)}}}|0{_at_least(rest)})"


@lru_cache(maxsize=16)
def _names_vendor(vendor_id: int) -> Callable[[str], bool]:
    """Whether range entries ("0"/"1", already walked and well-formed) name `vendor_id`:
    one possessive walk over the entries that do not, which stops short of the end at the
    first that does."""
    vendor = f"{vendor_id:016b}"
    not_naming = re.compile(f"(?:0(?!{vendor}).{{16}}|1(?!{_at_most(vendor)}{_at_least(vendor)}).{{32}})*+", re.DOTALL)
    return lambda entries: not_naming.fullmatch(entries) is None
