"""Builds IAB TCF v2 TC strings for tests, field by field, from the published layout
("TC string format", TCF v2.x), so the decoder is checked against the standard rather
than against blobs copied from somewhere.

Core segment, in order: Version 6, Created 36, LastUpdated 36, CmpId 12, CmpVersion 12,
ConsentScreen 6, ConsentLanguage 12 (two 6-bit letters, A=0), VendorListVersion 12,
TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1, SpecialFeatureOptIns 12,
PurposesConsent 24, PurposesLITransparency 24, PurposeOneTreatment 1, PublisherCC 12,
then two vendor sections (consents, then legitimate interests), each MaxVendorId 16,
IsRangeEncoding 1, and either a bitfield of MaxVendorId bits (bit i-1 is vendor i) or
NumEntries 12 followed by entries of IsARange 1, StartOrOnlyVendorId 16 [, EndVendorId 16];
then the publisher restrictions: NumPubRestrictions 12 and per restriction PurposeId 6,
RestrictionType 2 and range entries as above.
Other segments start with SegmentType 3: 1 disclosed vendors and 2 allowed vendors (a
vendor section), 3 publisher purposes (PubPurposesConsent 24, PubPurposesLITransparency
24, NumCustomPurposes 6, two bitfields of that many bits).
The bits are packed MSB first, zero-padded to whole bytes, and base64url-encoded
without padding; segments are joined with ".".
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

# A vendor entry of the range encoding: a single vendor id, or an inclusive (start, end).
VendorEntry = int | tuple[int, int]


class BitWriter:
    def __init__(self) -> None:
        self._bits: list[str] = []

    def write(self, value: int, width: int) -> BitWriter:
        if value < 0 or value >= 1 << width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self._bits.append(format(value, f"0{width}b") if width else "")
        return self

    def flags(self, on: Iterable[int], width: int) -> BitWriter:
        """A bitfield of `width` bits where number n (1-based) sets the n-th bit."""
        on = set(on)
        self._bits.append("".join("1" if number in on else "0" for number in range(1, width + 1)))
        return self

    def letters(self, text: str) -> BitWriter:
        """Two-letter codes (languages, countries) as 6 bits per letter, A=0."""
        for letter in text.upper():
            self.write(ord(letter) - ord("A"), 6)
        return self

    def vendors(self, ids: Iterable[int] = (), *, ranges: list[VendorEntry] | None = None, max_id: int | None = None):
        """A vendor section: a bitfield of `ids`, or the range encoding of `ranges`."""
        if ranges is None:
            ids = set(ids)
            top = max(ids, default=0) if max_id is None else max_id
            return self.write(top, 16).write(0, 1).flags(ids, top)
        ends = [entry[1] if isinstance(entry, tuple) else entry for entry in ranges]
        top = max(ends, default=0) if max_id is None else max_id
        return self.write(top, 16).write(1, 1).entries(ranges)

    def entries(self, entries: list[VendorEntry]) -> BitWriter:
        self.write(len(entries), 12)
        for entry in entries:
            if isinstance(entry, tuple):
                self.write(1, 1).write(entry[0], 16).write(entry[1], 16)
            else:
                self.write(0, 1).write(entry, 16)
        return self

    @property
    def bit_length(self) -> int:
        return len(self.bit_string())

    def bit_string(self) -> str:
        return "".join(self._bits)

    def to_bytes(self) -> bytes:
        bits = self.bit_string()
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass
class Restriction:
    """A publisher restriction: purpose, type (0 not allowed, 1 require consent,
    2 require legitimate interest) and the vendors it names."""

    purpose: int
    type: int
    entries: list[VendorEntry]


@dataclass
class CoreSegment:
    """The fields of a core segment, with non-zero defaults where harmless, so that a
    decoder reading from the wrong offset sees noise rather than convenient zeros.
    (PurposeOneTreatment defaults to 0: set, it withholds purpose 1.)"""

    version: int = 2
    created_ds: int = 17_170_000_000  # deciseconds since the epoch
    last_updated_ds: int = 17_172_000_000
    cmp_id: int = 0xABC
    cmp_version: int = 0x5A5
    consent_screen: int = 0b101011
    consent_language: str = "EN"
    vendor_list_version: int = 0xFED
    tcf_policy_version: int = 4
    is_service_specific: int = 1
    use_non_standard_texts: int = 1
    special_feature_opt_ins: set[int] = field(default_factory=lambda: {1, 2, 12})
    purposes_consent: set[int] = field(default_factory=set)
    purposes_li_transparency: set[int] = field(default_factory=lambda: set(range(1, 25)))
    purpose_one_treatment: int = 0
    publisher_cc: str = "ZZ"
    max_vendor_id: int | None = None  # None: the largest consented vendor
    vendors: set[int] = field(default_factory=set)
    vendor_ranges: list[VendorEntry] | None = None  # None: bitfield encoding of `vendors`
    li_max_vendor_id: int | None = None
    li_vendors: set[int] = field(default_factory=set)
    li_vendor_ranges: list[VendorEntry] | None = None
    restrictions: list[Restriction] = field(default_factory=list)

    def bits(self) -> BitWriter:
        writer = (
            BitWriter()
            .write(self.version, 6)
            .write(self.created_ds, 36)
            .write(self.last_updated_ds, 36)
            .write(self.cmp_id, 12)
            .write(self.cmp_version, 12)
            .write(self.consent_screen, 6)
            .letters(self.consent_language)
            .write(self.vendor_list_version, 12)
            .write(self.tcf_policy_version, 6)
            .write(self.is_service_specific, 1)
            .write(self.use_non_standard_texts, 1)
            .flags(self.special_feature_opt_ins, 12)
            .flags(self.purposes_consent, 24)
            .flags(self.purposes_li_transparency, 24)
            .write(self.purpose_one_treatment, 1)
            .letters(self.publisher_cc)
            .vendors(self.vendors, ranges=self.vendor_ranges, max_id=self.max_vendor_id)
            .vendors(self.li_vendors, ranges=self.li_vendor_ranges, max_id=self.li_max_vendor_id)
            .write(len(self.restrictions), 12)
        )
        for restriction in self.restrictions:
            writer.write(restriction.purpose, 6).write(restriction.type, 2).entries(restriction.entries)
        return writer

    def encode(self, *more_segments: str) -> str:
        return ".".join([base64url(self.bits().to_bytes()), *more_segments])


def tc_string(*more_segments: str, **fields: object) -> str:
    """A TC string whose core segment has `fields` (see CoreSegment), then `more_segments`."""
    return CoreSegment(**fields).encode(*more_segments)  # type: ignore[arg-type]


def vendors_segment(segment_type: int, *, vendors: Iterable[int] = (), ranges: list[VendorEntry] | None = None) -> str:
    """A disclosed vendors (SegmentType 1) or allowed vendors (2) segment."""
    return base64url(BitWriter().write(segment_type, 3).vendors(vendors, ranges=ranges).to_bytes())


def publisher_tc_segment(custom_purposes: int = 0) -> str:
    """A publisher purposes segment (SegmentType 3) with some arbitrary content."""
    writer = BitWriter().write(3, 3).flags({1, 3}, 24).flags({2}, 24).write(custom_purposes, 6)
    return base64url(writer.flags({1}, custom_purposes).flags(set(), custom_purposes).to_bytes())
