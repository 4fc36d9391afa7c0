"""What `GET /sync` decides: whether a request may sync at all, and with which partner,
which of its ids and which redirect. Pure, apart from a small cache of partner profiles.

Inbound (`puid` given) the partner tells us its id for this browser; outbound (no `puid`)
we send the browser to the partner's registered template with our id. A partner must be
registered for sync (deny by default), and consent, opt-out and bots are judged exactly as
on the pixel. The redirect only ever goes to the template the operator registered: no URL
is read from the request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.core.hits import InvalidEvent
from functions.core.identity import is_partner_uid
from functions.core.partners import is_partner_name
from functions.core.storage.partners import PartnerProfile
from functions.core.sync import fill_template
from functions.ingest import logic

# A redirect longer than this is not sent (a consent string that long is not a real one).
MAX_LOCATION = 8 * 1024
PROFILE_CACHE_SECONDS = 60.0
# Unknown names are cached too (so a burst of them costs no read each); past this many
# names the cache starts afresh, so made-up names cannot grow it without bound.
PROFILE_CACHE_SIZE = 1024


@dataclass(frozen=True)
class SyncAsk:
    """A well-formed `/sync` request that consent allows."""

    partner: str
    partner_uid: str | None  # None: outbound
    gdpr: str  # "", "0" or "1", as the template's `{gdpr}` gets it
    gdpr_consent: str

    @property
    def inbound(self) -> bool:
        return self.partner_uid is not None


@dataclass(frozen=True)
class Decision:
    """Exactly one of: the ask to carry out, why the request was rejected (malformed, a
    metric `sync_rejected_<reason>`), or the refusal (the pixel's, with its suppression)."""

    ask: SyncAsk | None = None
    rejected: str | None = None
    refusal: logic.Outcome | None = None


def decide(request: logic.Request, raw_query: str, vendor_id: int) -> Decision:
    """The request judged as the pixel judges a hit, then its partner and id checked by
    form (whether the partner may sync needs its profile: `admit`)."""
    try:
        params = logic.query_params(raw_query)
        gdpr = logic.gdpr_flag(params.get("gdpr"))
    except InvalidEvent as error:
        return Decision(rejected=error.reason)
    consent = params.get("gdpr_consent")
    reason = logic.refusal(request, gdpr, consent, vendor_id, gpp=params.get("gpp"), gpp_sid=params.get("gpp_sid"))
    if reason:
        # Only the browser's own cookie names the visitor here: a `uid` parameter would let
        # a page tie a partner's id to someone else.
        return Decision(refusal=logic.refused(request, reason, None))
    partner = params.get("partner")
    if not partner:
        return Decision(rejected="missing_partner")
    if not is_partner_name(partner):
        return Decision(rejected="unknown_partner")
    partner_uid = params.get("puid")
    if partner_uid is not None and not is_partner_uid(partner_uid):
        return Decision(rejected="malformed_puid")
    return Decision(ask=SyncAsk(partner, partner_uid, gdpr or "", consent or ""))


def admit(profile: PartnerProfile | None) -> PartnerProfile | str:
    """The partner's profile when it may sync, else why not (the rejection's reason)."""
    if profile is None:
        return "unknown_partner"
    if not profile.sync:
        return "not_registered"
    return profile


def location(profile: PartnerProfile, visitor_id: str, ask: SyncAsk) -> str | None:
    """Where an outbound sync sends the browser: the partner's template filled with our
    visitor id and the consent it came with; None without a template, or when the filled
    URL is too long to send."""
    if not profile.sync_url:
        return None
    filled = fill_template(profile.sync_url, uid=visitor_id, gdpr=ask.gdpr, gdpr_consent=ask.gdpr_consent)
    return filled if len(filled) <= MAX_LOCATION else None


class ProfileCache:
    """Partner profiles kept for a short while, so a burst of syncs costs no read each. A
    partner registered (or changed) meanwhile is seen within `ttl_seconds`."""

    def __init__(
        self,
        fetch: Callable[[str], PartnerProfile | None],
        *,
        ttl_seconds: float = PROFILE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, PartnerProfile | None]] = {}

    def get(self, name: str) -> PartnerProfile | None:
        now = self._clock()
        hit = self._cached.get(name)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        profile = self._fetch(name)
        if len(self._cached) >= PROFILE_CACHE_SIZE:
            self._cached.clear()
        self._cached[name] = (now, profile)
        return profile
