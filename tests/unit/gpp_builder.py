"""Builds IAB GPP strings for tests from the published layout ("GPP String", Global Privacy
Platform v1), so the decoder is checked against the standard rather than against itself.

Header: Type 6 (= 3), Version 6 (= 1), then the section ids as a Fibonacci range:
NumEntries 12, and per entry IsARange 1 and one (single) or two (start, end) Fibonacci
integers, each counted from the previous id. A Fibonacci integer is its Zeckendorf bits
for 1, 2, 3, 5, 8, ... (smallest first) followed by a "1", so it ends in "11". Sections
follow the header, "~"-separated, in increasing id order. Bits are base64url-encoded,
6 to a character, zero-padded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tests.unit.tcf_builder import BitWriter

_DICT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def base64url_of_bits(bits: str) -> str:
    bits += "0" * (-len(bits) % 6)
    return "".join(_DICT[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def fibonacci(value: int) -> str:
    if value < 1:
        raise ValueError("Fibonacci integers start at 1")
    numbers = [1, 2]
    while numbers[-1] <= value:
        numbers.append(numbers[-1] + numbers[-2])
    bits = ["0"] * len(numbers)
    for index in range(len(numbers) - 1, -1, -1):
        if numbers[index] <= value:
            bits[index] = "1"
            value -= numbers[index]
    return "".join(bits).rstrip("0") + "1"


def header_bits(section_ids: Iterable[int]) -> str:
    ids = sorted(section_ids)
    groups: list[list[int]] = []
    for section_id in ids:
        if groups and groups[-1][-1] + 1 == section_id:
            groups[-1].append(section_id)
        else:
            groups.append([section_id])
    bits = format(3, "06b") + format(1, "06b") + format(len(groups), "012b")
    previous = 0
    for group in groups:
        if len(group) == 1:
            bits += "0" + fibonacci(group[0] - previous)
        else:
            bits += "1" + fibonacci(group[0] - previous) + fibonacci(group[-1] - group[0])
        previous = group[-1]
    return bits


def gpp_string(sections: Iterable[tuple[int, str]]) -> str:
    """A GPP string of (section id, encoded section) pairs."""
    ordered = sorted(sections)
    return "~".join([base64url_of_bits(header_bits(i for i, _ in ordered)), *(text for _, text in ordered)])


def us_section(
    layout: Iterable[tuple[str, int]], values: Mapping[str, int], *, gpc: bool | None = None, version: int = 1
) -> str:
    """A US section's core segment with `values` (other 2-bit fields 0, Version `version`),
    then, unless `gpc` is None, a GPC segment (GpcSegmentType 1, Gpc)."""
    writer = BitWriter()
    for name, width in layout:
        value = values.get(name, version if name in ("Version", "MspaVersion") else 0)
        writer.write(value, width)
    core = base64url_of_bits(writer.bit_string())
    if gpc is None:
        return core
    return core + "." + base64url_of_bits(format(1, "02b") + ("1" if gpc else "0"))
