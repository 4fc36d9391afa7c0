"""ID sync's templates, shared by the CLI (which registers a partner's template) and
`/sync` (which fills it): which sync URL templates are allowed, and how one is filled.
Pure. (What a partner's user id is: `functions.core.identity`.)

A template is where `/sync` sends browsers, so it is checked as a redirect target: an
`https://` URL with a plain host fixed at registration. The macros may only stand after
the host (a `{uid}` in the host or port would let a request choose where browsers go),
and each is filled URL-encoded, so no value can end the path or the query early."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

SYNC_MACROS = ("uid", "gdpr", "gdpr_consent")
MAX_TEMPLATE = 2048
_SCHEME = "https://"
_MACRO = re.compile(r"\{(" + "|".join(SYNC_MACROS) + r")\}")
_ANY_BRACES = re.compile(r"\{[^{}]*\}")
# A host name in the letters, digits, dots and hyphens of DNS (IDNs as punycode).
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


class InvalidTemplate(ValueError):
    """A sync URL template that cannot be registered; `reason` names the rule it breaks."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_template(template: str) -> str:
    """`template` when it may be registered as a partner's sync URL, else InvalidTemplate."""
    if not template:
        raise InvalidTemplate("empty", "the sync URL is empty")
    if len(template) > MAX_TEMPLATE:
        raise InvalidTemplate("too_long", f"the sync URL is longer than {MAX_TEMPLATE} characters")
    if not template.isascii():
        raise InvalidTemplate("not_ascii", "the sync URL must be ASCII (percent-encode anything else, punycode hosts)")
    if any(c <= " " or c == "\x7f" for c in template):
        raise InvalidTemplate("whitespace_or_control", "the sync URL holds whitespace or a control character")
    if "\\" in template:
        # Browsers read a backslash as a slash in an https URL, Python's parser does not:
        # the two would disagree on the host.
        raise InvalidTemplate("backslash", "the sync URL holds a backslash")
    if template[: len(_SCHEME)].lower() != _SCHEME:
        raise InvalidTemplate("not_https", "the sync URL must start with https://")
    authority = re.split(r"[/?#]", template[len(_SCHEME) :], maxsplit=1)[0]
    if "{" in authority or "}" in authority:
        raise InvalidTemplate("macro_in_host", "macros may only stand after the host (in the path, query or fragment)")
    if "@" in authority:
        raise InvalidTemplate("userinfo", "the sync URL must not hold a user name or password (user@host)")
    parts = urlsplit(template)
    host = parts.hostname or ""
    if not host:
        raise InvalidTemplate("no_host", "the sync URL has no host")
    if _HOST.fullmatch(host) is None:
        raise InvalidTemplate("bad_host", f"the sync URL's host {host!r} is not a host name")
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a port number
    except ValueError:
        raise InvalidTemplate("bad_port", "the sync URL's port is not a port number") from None
    rest = _MACRO.sub("", template)
    unknown = _ANY_BRACES.search(rest)
    if unknown is not None:
        known = ", ".join(f"{{{m}}}" for m in SYNC_MACROS)
        raise InvalidTemplate("unknown_macro", f"unknown macro {unknown.group(0)}: the macros are {known}")
    if "{" in rest or "}" in rest:
        raise InvalidTemplate("stray_brace", "the sync URL holds a brace that is not part of a macro")
    return template


def fill_template(template: str, *, uid: str, gdpr: str, gdpr_consent: str) -> str:
    """The template with each macro replaced by its value, URL-encoded (nothing kept as is,
    not even `/`), in one pass: a value is never read as a macro."""
    values = {"uid": uid, "gdpr": gdpr, "gdpr_consent": gdpr_consent}
    return _MACRO.sub(lambda macro: quote(values[macro.group(1)], safe=""), template)
