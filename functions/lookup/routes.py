"""The lookup API's routes (DESIGN.md), named once: the validated API (api.py), the
bidding fast path, the REST API's resources (infra/lookup.py) and the local gateway all
take them from here. Plain Python: infra and the fast path import it."""

from __future__ import annotations

import re

from functions.core.identity import PARTNER_UID_CHARS, VISITOR_ID_CHARS

# The API Gateway resource paths, `{name}` for a path parameter.
USER_SEGMENTS = "/v1/users/{uid}/segments"
LOOKUP = "/v1/lookup"
SEGMENTS = "/v1/segments"
OPENAPI = "/v1/openapi.json"
EXPORTS_LATEST = "/v1/exports/latest"
# Every route lives under this prefix; the routes a partner may call without a key.
PREFIX = "/v1/"
PUBLIC = frozenset({OPENAPI})

_PARAMETER = re.compile(r"\{(\w+)\}")


def resolver_path(route: str) -> str:
    """The route as Powertools' resolver writes it (`<uid>` for `{uid}`)."""
    return _PARAMETER.sub(r"<\1>", route)


def segments_of_path(route: str) -> list[str]:
    """The route's path segments, as API Gateway's resources nest them."""
    return route.strip("/").split("/")


# A user-segments path with a well-formed visitor id, or partner user id for
# `id_type=partner` (the fast path answers only these).
USER_SEGMENTS_PATH = re.compile(USER_SEGMENTS.replace("{uid}", f"({VISITOR_ID_CHARS})"))
PARTNER_USER_SEGMENTS_PATH = re.compile(USER_SEGMENTS.replace("{uid}", f"({PARTNER_UID_CHARS})"))


def resource_of(path: str) -> tuple[str, dict[str, str] | None]:
    """The resource a request path maps to, with its path parameters (any uid, valid or
    not: the function validates it), as API Gateway's REST API resolves it."""
    parts = path.strip("/").split("/")
    template = segments_of_path(USER_SEGMENTS)
    if len(parts) == len(template) and all(t.startswith("{") or t == p for t, p in zip(template, parts, strict=True)):
        return USER_SEGMENTS, {"uid": parts[template.index("{uid}")]}
    return path, None
