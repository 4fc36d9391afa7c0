"""Validation of one tracked event, shared by the pixel, `/collect` and `dmp ingest`.

Pure functions over plain values: no AWS, no pydantic, so the pixel path stays light.
A rejected event raises `InvalidEvent` whose `reason` is a short metric-friendly code.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from functools import lru_cache
from typing import Any, Literal, get_args

from functions.core.identity import VISITOR_ID_CHARS, is_visitor_id

EVENT_NAME = re.compile(r"[a-z0-9_]{1,40}")
PROP_NAME = EVENT_NAME
MAX_CLIENT_EVENT_ID = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Limits count UTF-8 bytes, as DynamoDB does: characters would let one multi-byte event
# store tens of KB.
MAX_URL = 2048
MAX_PROPS = 20
MAX_PROP_VALUE = 256
MAX_GEO = 64
# A stored event is one write unit: DynamoDB bills writes per started 1 KB of the item.
MAX_ITEM_BYTES = 1024
# What a stored item adds beyond its text values: attribute names (at most 10 bytes
# each, 13 of them), numbers (time, expiry, client time: at most 21 bytes each), and
# 3 bytes for the props map. `stored_bytes` is an upper bound of the item's real size
# (tests/unit/test_hits.py checks it against the stored form).
_ITEM_OVERHEAD = 13 * 10 + 3 * 21 + 3
# The device of a hit, from its user agent; segment rules name the same three.
DeviceType = Literal["desktop", "mobile", "tablet"]
DEVICE_TYPES: tuple[DeviceType, ...] = get_args(DeviceType)
DEFAULT_EVENT = "page_view"


class InvalidEvent(ValueError):
    """An event that must not be stored; `reason` names the rule it broke."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Geo:
    country: str | None = None
    region: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class TrackedEvent:
    """An accepted event, ready to be stored for `visitor_id` at server time `ts_ms`."""

    visitor_id: str
    event_id: str
    ts_ms: int
    name: str
    url: str | None = None
    ref: str | None = None
    props: dict[str, str] = field(default_factory=dict)
    geo: Geo = Geo()
    device: str | None = None
    client_ts_ms: int | None = None


def event_id_for(ts_ms: int, client_event_id: str | None) -> str:
    """The sort key of an event: deterministic for a client event id, so a retried hit
    lands on the same item and is stored once; otherwise time-ordered and unique."""
    if client_event_id is not None:
        return f"eid:{client_event_id}"
    return f"{ts_ms:013d}:{secrets.token_hex(8)}"


def as_text(value: str | int | float | bool) -> str:
    """The one text form of a scalar, used both when an event is stored and when a rule
    compares against it, so `1`, `1.0` and `"1"` all mean the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def utf8_length(value: str) -> int | None:
    """The UTF-8 size of `value`; None when it has no UTF-8 form (a lone surrogate, which
    JSON's `\\ud800` escapes can carry): DynamoDB would refuse it."""
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _text(value: object, *, field_name: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"invalid_{field_name}", f"{field_name} must be a string")
    size = utf8_length(value)
    if size is None:
        raise InvalidEvent(f"invalid_{field_name}", f"{field_name} is not valid Unicode text")
    if size > limit:
        raise InvalidEvent(f"{field_name}_too_long", f"{field_name} is longer than {limit} bytes (UTF-8)")
    if _CONTROL.search(value):
        raise InvalidEvent(f"invalid_{field_name}", f"{field_name} contains control characters")
    return value


def clean_geo_value(value: str | None) -> str | None:
    """Geo header values are informative only: drop what is malformed rather than the hit."""
    if not value or _CONTROL.search(value):
        return None
    size = utf8_length(value)
    if size is None or size > MAX_GEO:
        return None
    return value.strip() or None


def stored_bytes(event: TrackedEvent) -> int:
    """An upper bound of the size of `event` as a stored item (DynamoDB's measure: UTF-8
    bytes of names and values)."""
    texts = [event.visitor_id, event.event_id, event.name, event.url, event.ref, event.device]
    texts += [event.geo.country, event.geo.region, event.geo.city]
    size = _ITEM_OVERHEAD + sum(utf8_length(t) or 0 for t in texts if t)
    # Each prop: its name and value, and a byte of the map's own overhead.
    return size + sum(len(name) + (utf8_length(value) or 0) + 1 for name, value in event.props.items())


def validate_event(
    *,
    visitor_id: str,
    ts_ms: int,
    name: object = None,
    url: object = None,
    ref: object = None,
    eid: object = None,
    props: object = None,
    geo: Geo = Geo(),
    device: str | None = None,
    client_ts_ms: int | None = None,
) -> TrackedEvent:
    """Check every limit of the contract and return the event to store."""
    if not is_visitor_id(visitor_id):
        raise InvalidEvent("invalid_uid", f"visitor id must match {VISITOR_ID_CHARS}")
    if name is None or name == "":
        name = DEFAULT_EVENT
    if not isinstance(name, str) or EVENT_NAME.fullmatch(name) is None:
        raise InvalidEvent("invalid_event_name", "event name must match [a-z0-9_]{1,40}")
    client_event_id = _text(eid, field_name="eid", limit=MAX_CLIENT_EVENT_ID)
    clean_props = validate_props(props)
    if device is not None and device not in DEVICE_TYPES:
        device = None
    event = TrackedEvent(
        visitor_id=visitor_id,
        event_id=event_id_for(ts_ms, client_event_id),
        ts_ms=ts_ms,
        name=name,
        url=_text(url, field_name="url", limit=MAX_URL),
        ref=_text(ref, field_name="ref", limit=MAX_URL),
        props=clean_props,
        geo=geo,
        device=device,
        client_ts_ms=client_ts_ms,
    )
    size = stored_bytes(event)
    if size > MAX_ITEM_BYTES:
        raise InvalidEvent("event_too_large", f"the event would be {size} bytes stored; at most {MAX_ITEM_BYTES}")
    return event


def validate_props(props: object) -> dict[str, str]:
    if props is None:
        return {}
    if not isinstance(props, Mapping):
        raise InvalidEvent("invalid_props", "props must be an object of name -> value")
    if len(props) > MAX_PROPS:
        raise InvalidEvent("too_many_props", f"at most {MAX_PROPS} custom properties")
    clean: dict[str, str] = {}
    for key, value in props.items():
        if not isinstance(key, str) or PROP_NAME.fullmatch(key) is None:
            raise InvalidEvent("invalid_prop_name", "property names must match [a-z0-9_]{1,40}")
        if isinstance(value, (bool, int, float)):
            value = as_text(value)
        text = _text(value, field_name="prop_value", limit=MAX_PROP_VALUE)
        if text is not None:
            clean[key] = text
    return clean


@lru_cache(maxsize=4096)
def device_type(user_agent: str | None) -> DeviceType | None:
    """desktop, mobile or tablet from the User-Agent, by the maintained ua-parser rules
    (user-agents-ng); None when there is none or it is none of the three (a TV, a console).

    The parser's rules take ~0.1 s to load, so they load on the first hit that needs
    them rather than at import, and a warm function remembers each user agent it saw."""
    if not user_agent:
        return None
    import user_agents

    parsed = user_agents.parse(user_agent)
    # ua-parser names some tablets (Firefox's documented "Android; Tablet" form) only in
    # the device family, which user-agents' is_tablet does not look at.
    if parsed.is_tablet or "Tablet" in (parsed.device.family or ""):
        return "tablet"
    if parsed.is_mobile:
        return "mobile"
    if parsed.is_pc:
        return "desktop"
    return None


@lru_cache(maxsize=4096)  # a warm function sees the same few browsers again and again
def is_bot(user_agent: str | None) -> bool:
    """Known crawlers are not visitors, by the maintained crawler-user-agents pattern list.
    A missing user agent is not a crawler: server-side and app callers send hits with
    `uid` and often no browser user agent."""
    if not user_agent:
        return False
    import crawleruseragents  # its patterns compile on first use, not at import

    return crawleruseragents.is_crawler(user_agent)


def load_user_agent_rules() -> None:
    """Load and compile the crawler patterns and the ua-parser rules now (~0.1 s), for a
    function Lambda initialises ahead of its requests, so no hit waits for them."""
    sample = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
    )
    is_bot(sample)
    device_type(sample)


def to_epoch_ms(value: Any) -> int:
    """An ISO 8601 string or epoch milliseconds as epoch milliseconds."""
    from datetime import datetime

    if isinstance(value, bool):
        raise InvalidEvent("invalid_ts", "ts must be ISO 8601 or epoch milliseconds")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            if value.isdigit():
                return int(value)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent("invalid_ts", f"ts {value!r} is not ISO 8601 or epoch milliseconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    raise InvalidEvent("invalid_ts", "ts must be ISO 8601 or epoch milliseconds")
