"""Visitor ids: what one is (the contract's `[A-Za-z0-9_-]{8,64}`) and how a new one is made;
and what a partner's own user id is (`[A-Za-z0-9._~:-]{1,128}`).

Plain Python, imported by the pixel, the lookup's fast path, the API models and the CLI."""

from __future__ import annotations

import re
import secrets

# A cookie `dmp_uid`, a `uid` parameter, a lookup path: anything else is malformed.
VISITOR_ID_CHARS = r"[A-Za-z0-9_-]{8,64}"
VISITOR_ID = re.compile(VISITOR_ID_CHARS)
# The same, anchored, as the JSON Schema of the OpenAPI document shows it.
VISITOR_ID_PATTERN = f"^{VISITOR_ID_CHARS}$"

# A partner's own user id (ID sync's `puid`, a lookup with `id_type=partner`).
PARTNER_UID_CHARS = r"[A-Za-z0-9._~:-]{1,128}"
PARTNER_UID = re.compile(PARTNER_UID_CHARS)
PARTNER_UID_PATTERN = f"^{PARTNER_UID_CHARS}$"


def is_visitor_id(value: object) -> bool:
    return isinstance(value, str) and VISITOR_ID.fullmatch(value) is not None


def is_partner_uid(value: object) -> bool:
    return isinstance(value, str) and PARTNER_UID.fullmatch(value) is not None


def new_visitor_id() -> str:
    """A random 128-bit id, hex."""
    return secrets.token_hex(16)
