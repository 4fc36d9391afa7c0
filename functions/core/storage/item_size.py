"""The size DynamoDB counts for an item (and so bills: a write unit per 1 KB), computed
from its low-level attribute form, by the rules of
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
and read-write-operations.html. Used where a store keeps an item within one write unit,
and by the benchmarks to bill what they measure."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

WRITE_UNIT_BYTES = 1024


def number_bytes(raw: str) -> int:
    """A DynamoDB number's size: one byte per two significant digits (leading and trailing
    zeros trimmed), plus one."""
    digits = raw.lower().split("e")[0].lstrip("+-").replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def _binary_bytes(raw: bytes | str) -> int:
    """A binary value's raw length (given as bytes, or as the base64 text some clients and
    emulators keep)."""
    return len(raw) if isinstance(raw, bytes | bytearray) else len(base64.b64decode(raw))


def attribute_bytes(value: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value, in its `{type: value}` form."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return number_bytes(raw)
    if kind == "B":
        return _binary_bytes(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in raw)
    if kind == "NS":
        return sum(number_bytes(v) for v in raw)
    if kind == "BS":
        return sum(_binary_bytes(v) for v in raw)
    # A list or map: 3 bytes, and 1 more an element (a map's element: its name too).
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_bytes(v) for name, v in raw.items())
    raise ValueError(f"not a DynamoDB attribute type: {kind}")


def item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size by DynamoDB's rules: each attribute's name in UTF-8 and its value
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())
