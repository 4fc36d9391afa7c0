"""Decoding of the core segment of an IAB TCF v2 TC string, as far as consent needs it.

The TC string is base64url (no padding) of a bit string; the core segment is the first
of its dot-separated segments. Layout (TCF v2.x, "TC string format"): Version 6 bits,
Created 36, LastUpdated 36, CmpId 12, CmpVersion 12, ConsentScreen 6, ConsentLanguage 12,
VendorListVersion 12, TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1,
SpecialFeatureOptIns 12, PurposesConsent 24, PurposesLITransparency 24,
PurposeOneTreatment 1, PublisherCC 12, then the vendor consent section: MaxVendorId 16,
IsRangeEncoding 1, and either a bitfield of MaxVendorId bits or NumEntries 12 followed
by entries of IsARange 1, StartOrOnlyVendorId 16 [, EndVendorId 16].
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

_PURPOSES_OFFSET = 6 + 36 + 36 + 12 + 12 + 6 + 12 + 12 + 6 + 1 + 1 + 12  # 152
_VENDORS_OFFSET = _PURPOSES_OFFSET + 24 + 24 + 1 + 12  # 213
MAX_TC_STRING = 4096


class InvalidTCString(ValueError):
    pass


@dataclass(frozen=True)
class CoreConsent:
    version: int
    purposes: frozenset[int]
    vendors: frozenset[int]

    def allows_storage(self, vendor_id: int) -> bool:
        """Purpose 1 ("store and/or access information on a device") granted to us."""
        return 1 in self.purposes and vendor_id in self.vendors


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._length = len(data) * 8

    def read(self, offset: int, width: int) -> int:
        if offset + width > self._length:
            raise InvalidTCString("TC string is truncated")
        shift = self._length - offset - width
        return (self._value >> shift) & ((1 << width) - 1)


def decode_core(tc_string: str) -> CoreConsent:
    """Purposes and vendors consented in the core segment; raises InvalidTCString."""
    if not tc_string or len(tc_string) > MAX_TC_STRING:
        raise InvalidTCString("TC string is empty or too long")
    core = tc_string.split(".", 1)[0]
    try:
        data = base64.b64decode(core + "=" * (-len(core) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTCString("TC string is not base64url") from None
    bits = _Bits(data)
    version = bits.read(0, 6)
    if version != 2:
        raise InvalidTCString(f"TC string version {version} is not 2")
    purpose_bits = bits.read(_PURPOSES_OFFSET, 24)
    purposes = frozenset(p for p in range(1, 25) if purpose_bits & (1 << (24 - p)))
    max_vendor = bits.read(_VENDORS_OFFSET, 16)
    is_range = bits.read(_VENDORS_OFFSET + 16, 1)
    cursor = _VENDORS_OFFSET + 17
    vendors: set[int] = set()
    if not is_range:
        field = bits.read(cursor, max_vendor) if max_vendor else 0
        vendors = {v for v in range(1, max_vendor + 1) if field & (1 << (max_vendor - v))}
    else:
        entries = bits.read(cursor, 12)
        cursor += 12
        for _ in range(entries):
            is_a_range = bits.read(cursor, 1)
            start = bits.read(cursor + 1, 16)
            cursor += 17
            end = start
            if is_a_range:
                end = bits.read(cursor, 16)
                cursor += 16
            if start < 1 or end < start or end > max_vendor:
                raise InvalidTCString("TC string has an invalid vendor range")
            vendors.update(range(start, end + 1))
    return CoreConsent(version=version, purposes=frozenset(purposes), vendors=frozenset(vendors))
