"""Reading an IAB Global Privacy Platform (GPP) string, as far as consent needs it.

A GPP string is "~"-separated: a header, then one encoded section per section id the
header lists. The header (base64url, 6 bits a character) is Type 6 (= 3), Version 6
(= 1), then the section ids as a Fibonacci-coded range: NumEntries 12 and per entry
IsARange 1 and one (single id) or two (start, end) Fibonacci integers, each the
distance from the previous id ("GPP String", Global Privacy Platform v1).

Sections read here (the field layouts are those of the official @iabgpp/cmpapi library,
which tests/reference/test_consent_matches_iab.py compares with `US_SECTIONS`):

- 2, TCF EU v2: a TC string, returned as is for functions.core.tcf to judge;
- 6, US Privacy (uspv1): four characters, the third "Y" when the visitor opted out of sale;
- 7 (usnat) and the US state sections: a core segment of 2-bit fields (0 not applicable,
  1 opted out, 2 did not opt out) and, for most, a "." and a GPC segment (GpcSegmentType
  2, Gpc 1).

Other sections (Canada's TCF, ids not registered yet) are passed over unread, as the
library does. Work is bounded: at most MAX_GPP_STRING characters and MAX_GPP_SECTIONS
sections, and each section is read once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from functions.core.tcf import base64url_bits, base64url_values

MAX_GPP_STRING = 8192
# 24 section ids are registered today; a string listing more is not one a CMP wrote.
MAX_GPP_SECTIONS = 64
MAX_GPP_SID = 256

TCF_EU_V2 = 2
US_PRIVACY = 6

OPT_OUT_FIELDS = ("SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut")

# A Fibonacci code of more bits than this is above any registered id or section count.
_LONGEST_FIBONACCI_CODE = 40
_FIBONACCI = [1, 2]
while len(_FIBONACCI) < _LONGEST_FIBONACCI_CODE:
    _FIBONACCI.append(_FIBONACCI[-1] + _FIBONACCI[-2])


class InvalidGPPString(ValueError):
    """The string (or gpp_sid) is not one we can read: malformed, truncated or too long."""


class SecondSegment(Enum):
    """What may follow a US section's core segment after a "."."""

    NONE = 0  # anything after a "." is not read
    GPC = 3  # GpcSegmentType 2, Gpc 1
    SENSITIVE_DATA = 16  # SensitiveDataProcessing, 8 fields of 2 bits


@dataclass(frozen=True, slots=True)
class UsSection:
    name: str
    fields: tuple[tuple[str, int], ...]  # the core segment: (field, bits), in order
    second: SecondSegment

    @property
    def core_bits(self) -> int:
        return sum(bits for _, bits in self.fields)

    @property
    def opt_out_offsets(self) -> tuple[int, ...]:
        offsets, offset = [], 0
        for name, bits in self.fields:
            if name in OPT_OUT_FIELDS:
                offsets.append(offset)
            offset += bits
        return tuple(offsets)


def _us(name: str, layout: str, second: SecondSegment) -> UsSection:
    fields = tuple((field, int(bits)) for field, bits in (item.split(":") for item in layout.split()))
    return UsSection(name, fields, second)


_GPC, _SENSITIVE = SecondSegment.GPC, SecondSegment.SENSITIVE_DATA
_STATE = "Version:6 ProcessingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2 TargetedAdvertisingOptOut:2"
_MSPA = "MspaCoveredTransaction:2 MspaOptOutOptionMode:2 MspaServiceProviderMode:2"
_MSPA_FIRST = "MspaVersion:6 MspaCoveredTransaction:2 MspaMode:2 ProcessingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2 TargetedAdvertisingOptOut:2"

US_SECTIONS: Mapping[int, UsSection] = {
    7: _us(
        "usnat",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 SharingOptOutNotice:2 TargetedAdvertisingOptOutNotice:2"
        " SensitiveDataProcessingOptOutNotice:2 SensitiveDataLimitUseNotice:2 SaleOptOut:2 SharingOptOut:2"
        f" TargetedAdvertisingOptOut:2 SensitiveDataProcessing:32 KnownChildSensitiveDataConsents:6 PersonalDataConsents:2 {_MSPA}",
        _GPC,
    ),
    8: _us(
        "usca",
        "Version:6 SaleOptOutNotice:2 SharingOptOutNotice:2 SensitiveDataLimitUseNotice:2 SaleOptOut:2 SharingOptOut:2"
        f" SensitiveDataProcessing:18 KnownChildSensitiveDataConsents:4 PersonalDataConsents:2 {_MSPA}",
        _GPC,
    ),
    9: _us(
        "usva",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2"
        f" TargetedAdvertisingOptOut:2 SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 {_MSPA}",
        SecondSegment.NONE,
    ),
    10: _us(
        "usco",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2"
        f" TargetedAdvertisingOptOut:2 SensitiveDataProcessing:14 KnownChildSensitiveDataConsents:2 {_MSPA}",
        _GPC,
    ),
    11: _us(
        "usut",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2"
        " SensitiveDataProcessingOptOutNotice:2 SaleOptOut:2 TargetedAdvertisingOptOut:2"
        f" SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 {_MSPA}",
        SecondSegment.NONE,
    ),
    12: _us(
        "usct",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2"
        f" TargetedAdvertisingOptOut:2 SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:6 {_MSPA}",
        _GPC,
    ),
    13: _us(
        "usfl",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:6 AdditionalDataProcessingConsent:2 {_MSPA}",
        SecondSegment.NONE,
    ),
    14: _us(
        "usmt",
        "Version:6 SharingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2 SaleOptOut:2"
        " TargetedAdvertisingOptOut:2 SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:6"
        f" AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    15: _us(
        "usor",
        f"{_STATE} SensitiveDataProcessing:22 KnownChildSensitiveDataConsents:6 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    16: _us(
        "ustx",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    17: _us(
        "usde",
        f"{_STATE} SensitiveDataProcessing:18 KnownChildSensitiveDataConsents:10 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    18: _us(
        "usia",
        "Version:6 ProcessingNotice:2 SaleOptOutNotice:2 TargetedAdvertisingOptOutNotice:2"
        " SensitiveDataOptOutNotice:2 SaleOptOut:2 TargetedAdvertisingOptOut:2"
        f" SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 {_MSPA}",
        _GPC,
    ),
    19: _us(
        "usne",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    20: _us(
        "usnh",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:6 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    21: _us(
        "usnj",
        f"{_STATE} SensitiveDataProcessing:20 KnownChildSensitiveDataConsents:10 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    22: _us(
        "ustn",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    23: _us(
        "usmn",
        f"{_STATE} SensitiveDataProcessing:16 KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2 {_MSPA}",
        _GPC,
    ),
    24: _us("usmd", f"{_MSPA_FIRST} AdditionalDataProcessingConsent:2", _GPC),
    25: _us("usin", f"{_MSPA_FIRST} KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2", _SENSITIVE),
    26: _us("usky", f"{_MSPA_FIRST} KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2", _SENSITIVE),
    27: _us("usri", f"{_MSPA_FIRST} KnownChildSensitiveDataConsents:2 AdditionalDataProcessingConsent:2", _SENSITIVE),
}
_OPT_OUT_OFFSETS = {section_id: section.opt_out_offsets for section_id, section in US_SECTIONS.items()}
_CORE_BITS = {section_id: section.core_bits for section_id, section in US_SECTIONS.items()}
# usnat core segments of 10 or 11 characters are version 1's shorter layout, which the
# library still reads: the same fields up to SensitiveDataProcessing, then fewer bits.
_CORE_BITS[7] = 60
# 2-bit answers that are not an opt-out: 0 (not applicable) and 2 (did not opt out);
# 1 is an opt-out and 3 is not defined, so it is taken as one too.
_NOT_OPTED_OUT = frozenset({0, 2})


# The library sorts the segments of the TCF sections by their first letter (the top 3 bits
# of the first one are the segment type) while splitting the GPP string, so a segment of
# no known type makes the whole string malformed, whether or not the section applies.
_TCF_SEGMENT_FIRST_LETTERS = {
    TCF_EU_V2: frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"),  # core, disclosed, allowed, publisher
    5: frozenset("ABCDEFGHIJKLMNOPYZabcdef"),  # TCF Canada: core, disclosed, publisher
}


@dataclass(frozen=True, slots=True)
class GppString:
    """A GPP string whose header is well-formed: its sections, still encoded."""

    sections: tuple[tuple[int, str], ...]  # (section id, encoded section), header order

    def section(self, section_id: int) -> str | None:
        return next((encoded for found, encoded in self.sections if found == section_id), None)

    def applicable(self, section_ids: frozenset[int] | None) -> tuple[tuple[int, str], ...]:
        """The sections that apply: those `gpp_sid` names, or all when it is absent."""
        if section_ids is None:
            return self.sections
        return tuple(section for section in self.sections if section[0] in section_ids)


def decode_gpp(gpp: str) -> GppString:
    """The header checked and the sections split off; raises InvalidGPPString."""
    if len(gpp) > MAX_GPP_STRING:
        raise InvalidGPPString("GPP string is too long")
    # Type 3, Version 1. (The library also takes a bare TC string, "C...", for a GPP
    # string; Prebid and the tag pass that in gdpr_consent, so here it is malformed.)
    if not gpp.startswith("DB"):
        raise InvalidGPPString("GPP string does not start with a version 1 header")
    header, *encoded = gpp.split("~", MAX_GPP_SECTIONS + 1)
    if len(encoded) > MAX_GPP_SECTIONS:
        raise InvalidGPPString("GPP string has too many sections")
    # The library reads the header's first "."-segment only.
    bits = base64url_bits(header.split(".", 1)[0])
    if bits is None:
        raise InvalidGPPString("GPP header is not base64url")
    section_ids = _section_ids(bits, len(encoded))
    if len(section_ids) != len(encoded):
        raise InvalidGPPString("GPP header lists a different number of sections")
    sections = tuple(zip(section_ids, encoded, strict=True))
    for section_id, section in sections:
        if not section.strip():
            raise InvalidGPPString("GPP string has a blank section")
        first_letters = _TCF_SEGMENT_FIRST_LETTERS.get(section_id)
        if first_letters and any(segment[:1] not in first_letters for segment in section.split(".") if segment):
            raise InvalidGPPString(f"GPP section {section_id} has a segment of an unknown type")
    return GppString(sections)


def _section_ids(bits: str, at_most: int) -> list[int]:
    """The ids of the header's Fibonacci range, stopping as soon as there are more than
    `at_most` (the string is then malformed whatever follows)."""
    if len(bits) < 24:
        raise InvalidGPPString("GPP header is truncated")
    ids: list[int] = []
    previous, cursor = 0, 24
    for _ in range(int(bits[12:24], 2)):
        if cursor >= len(bits):
            raise InvalidGPPString("GPP header is truncated")
        is_range = bits[cursor] == "1"
        first, cursor = _fibonacci(bits, cursor + 1)
        if is_range:
            span, cursor = _fibonacci(bits, cursor)
            if len(ids) + span + 1 > at_most:
                raise InvalidGPPString("GPP header lists a different number of sections")
            ids.extend(range(previous + first, previous + first + span + 1))
            previous += first + span
        else:
            previous += first
            ids.append(previous)
        if len(ids) > at_most:
            raise InvalidGPPString("GPP header lists a different number of sections")
    return ids


def _fibonacci(bits: str, cursor: int) -> tuple[int, int]:
    """(value, offset past it) of the Fibonacci code at `cursor`: bits for 1, 2, 3, 5, ...
    ended by an extra "1" (so the code ends at the first "11")."""
    end = bits.find("11", cursor)
    if end < 0:
        raise InvalidGPPString("GPP header has an unterminated Fibonacci integer")
    code = bits[cursor : end + 1]
    if len(code) > _LONGEST_FIBONACCI_CODE:
        return 1 << 40, end + 2  # larger than any id or count that can matter
    return sum(value for value, bit in zip(_FIBONACCI, code, strict=False) if bit == "1"), end + 2


def parse_gpp_sid(gpp_sid: str | None) -> frozenset[int] | None:
    """The applicable section ids of `gpp_sid` ("2,7" or "2_7", as Prebid sends them;
    -1 means none), or None when it is absent; raises InvalidGPPString."""
    if gpp_sid is None or not gpp_sid.strip():
        return None
    if len(gpp_sid) > MAX_GPP_SID or not gpp_sid.isascii():
        raise InvalidGPPString("gpp_sid is too long or not ASCII")
    try:
        return frozenset(int(item) for item in gpp_sid.replace("_", ",").split(","))
    except ValueError:
        raise InvalidGPPString("gpp_sid is not a list of section ids") from None


def us_opted_out(section_id: int, encoded: str) -> bool:
    """Whether a US section (US Privacy, usnat or a state) says the visitor opted out of
    sale, sharing or targeted advertising, or sent Global Privacy Control; raises
    InvalidGPPString when the section is malformed."""
    segments = encoded.split(".")
    if section_id == US_PRIVACY:
        if len(segments[0]) != 4:
            raise InvalidGPPString("US Privacy section is not 4 characters")
        return segments[0][2] not in "N-"
    core = base64url_values(segments[0], _CORE_BITS[section_id])
    if core is None or 6 * len(core) < _CORE_BITS[section_id]:
        raise InvalidGPPString(f"GPP section {section_id} is malformed or truncated")
    opted_out = False
    for offset in _OPT_OUT_OFFSETS[section_id]:
        if _two_bits(core, offset) not in _NOT_OPTED_OUT:
            opted_out = True
            break
    second = US_SECTIONS[section_id].second
    if second is not SecondSegment.NONE and len(segments) > 1:
        values = base64url_values(segments[1], second.value)
        if values is None or 6 * len(values) < second.value:
            raise InvalidGPPString(f"GPP section {section_id} has a malformed second segment")
        if second is SecondSegment.GPC and values[0] & 0b001000:  # Gpc: the third bit
            opted_out = True
    return opted_out


def _two_bits(values: bytes, offset: int) -> int:
    """The 2-bit field at bit `offset` of a text's 6-bit `values` (see base64url_values)."""
    at, bit = divmod(offset, 6)
    if bit < 5:
        return values[at] >> (4 - bit) & 0b11
    return (values[at] & 1) << 1 | values[at + 1] >> 5


def is_us_section(section_id: int) -> bool:
    return section_id == US_PRIVACY or section_id in US_SECTIONS
