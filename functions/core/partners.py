"""Partner keys: random, shown once, stored only as their SHA-256.

A key carries 256 bits of randomness, so a fast hash is enough: nothing can be guessed
from it, and a stolen table does not give out usable keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "dmp_"
PARTNER_NAME_CHARS = r"[a-z0-9][a-z0-9_-]{0,63}"
PARTNER_NAME = re.compile(PARTNER_NAME_CHARS)
# The same, anchored, for pydantic fields (segment destinations).
PARTNER_NAME_PATTERN = f"^{PARTNER_NAME_CHARS}$"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > 256:
        return None
    return key


def same_hash(stored: str, presented: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about stored hashes."""
    return hmac.compare_digest(stored.encode(), presented.encode())


def is_partner_name(name: str) -> bool:
    return PARTNER_NAME.fullmatch(name) is not None


def usage_key(key_hash: str) -> str:
    """The value of a partner key's API Gateway API key (in the lookup usage plan): the
    key's hash. The API takes API keys only from the authorizer (key source AUTHORIZER),
    never from callers, so the value names a partner key for throttling and quotas and is
    not a credential. Being the stored hash, it costs the authorizer no secret and no
    read, and the CLI can give an API key to a partner key issued before usage plans."""
    return key_hash
