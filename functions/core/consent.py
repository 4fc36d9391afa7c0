"""May the pixel store anything for this hit, as far as the consent strings say?

One pure function, `consent_refusal`, over the request's `gdpr`, `gdpr_consent` (a TCF v2
TC string), `gpp` and `gpp_sid` parameters, as Prebid and the tag send them. It answers
None (storing is allowed) or a short reason fit for a metric dimension. Only the standard
library is imported: the pixel loads this on every cold start.

The TCF rule (DESIGN.md, "Privacy"): our vendor needs consent, not legitimate interest,
for purposes 1 (store and/or access information on a device), 3 (create a personalised
ads profile) and 4 (use profiles to select personalised ads):

- the three PurposesConsent bits and our VendorConsent bit set;
- PurposeOneTreatment not set. It means purpose 1 "was not disclosed at all" and the
  vendor must judge from PublisherCC whether it needs consent for it (TC string format;
  @iabtechlabtcf/core only carries the flag). We cannot see which national rule the
  publisher relied on, and storing an identifier for ad profiles is no "strictly
  necessary" use, so such a string grants nothing for purpose 1 (we fail closed);
- no publisher restriction naming our vendor for purpose 1, 3 or 4 of type 0 (not
  allowed) or type 2 (require legitimate interest: under TCF 2.2 these purposes cannot
  rest on legitimate interest, so what remains is no basis at all). Type 1 (require
  consent) asks for what we need anyway.

GPP: with `gpp_sid` only the sections it names apply, without it every section does. An
applicable TCF EU section is judged by the TCF rule; an applicable US section (US
Privacy, national or a state) refuses when it records an opt-out of sale, sharing or
targeted advertising, or Global Privacy Control (as the `Sec-GPC` header does).
With `gdpr=1` and no `gdpr_consent`, the GPP string's TCF EU section stands in for it.
"""

from __future__ import annotations

from functions.core.gpp import (
    TCF_EU_V2,
    GppString,
    InvalidGPPString,
    decode_gpp,
    is_us_section,
    parse_gpp_sid,
    us_opted_out,
)
from functions.core.tcf import InvalidTCString, RestrictionType, VendorSignals, read_vendor_signals

GDPR_NO_CONSENT = "gdpr_no_consent"
GDPR_INVALID_CONSENT = "gdpr_invalid_consent"
GPP_OPTOUT = "gpp_optout"
GPP_INVALID = "gpp_invalid"

REQUIRED_PURPOSES = (1, 3, 4)
FORBIDDING_RESTRICTIONS = frozenset({RestrictionType.NOT_ALLOWED, RestrictionType.REQUIRE_LEGITIMATE_INTEREST})
# The restrictions the decoder looks up for our vendor: the only ones the rule reads.
_FORBIDDING_KINDS = frozenset((purpose, kind) for purpose in REQUIRED_PURPOSES for kind in FORBIDDING_RESTRICTIONS)


def consent_refusal(
    *, gdpr: str | None, tc_string: str | None, gpp: str | None, gpp_sid: str | None, vendor_id: int
) -> str | None:
    """None when the consent signals allow storing for `vendor_id`, else why not:
    `gdpr_no_consent`, `gdpr_invalid_consent`, `gpp_optout` or `gpp_invalid`.

    Checked in this order, the first refusal winning: with `gdpr=1` the TC string (or,
    without one, the GPP string's TCF EU section); then the GPP string, whose applicable
    sections must all be well-formed, its TCF EU section grant and no US section record
    an opt-out."""
    gdpr_applies = gdpr == "1"
    if gdpr_applies and tc_string:
        try:
            if not tcf_grants(_signals(tc_string, vendor_id)):
                return GDPR_NO_CONSENT
        except InvalidTCString:
            return GDPR_INVALID_CONSENT
    if not gpp:
        return GDPR_NO_CONSENT if gdpr_applies and not tc_string else None
    try:
        decoded = decode_gpp(gpp)
    except InvalidGPPString:
        return GPP_INVALID
    judged_tcf = gdpr_applies and not tc_string
    if judged_tcf:
        refused = _gpp_tc_string_refusal(decoded, vendor_id)
        if refused:
            return refused
    return _gpp_refusal(decoded, gpp_sid, vendor_id, judged_tcf=judged_tcf)


def tcf_grants(signals: VendorSignals) -> bool:
    """The TCF rule of the module docstring, for the vendor `signals` were read for (with
    the restrictions of _FORBIDDING_KINDS looked up)."""
    return (
        not signals.purpose_one_treatment
        and all(purpose in signals.purposes_consent for purpose in REQUIRED_PURPOSES)
        and signals.vendor_consent
        and not signals.restricted
    )


def _signals(tc_string: str, vendor_id: int) -> VendorSignals:
    return read_vendor_signals(tc_string, vendor_id, _FORBIDDING_KINDS)


def _gpp_tc_string_refusal(gpp: GppString, vendor_id: int) -> str | None:
    """`gdpr=1` without `gdpr_consent`: the GPP string's TCF EU section must grant."""
    section = gpp.section(TCF_EU_V2)
    if section is None:
        return GDPR_NO_CONSENT
    try:
        return None if tcf_grants(_signals(section, vendor_id)) else GDPR_NO_CONSENT
    except InvalidTCString:
        return GPP_INVALID


def _gpp_refusal(gpp: GppString, gpp_sid: str | None, vendor_id: int, *, judged_tcf: bool) -> str | None:
    """`judged_tcf`: the TCF EU section was judged (and granted) already."""
    try:
        applicable = gpp.applicable(parse_gpp_sid(gpp_sid))
        tcf = [
            _signals(encoded, vendor_id)
            for section_id, encoded in applicable
            if section_id == TCF_EU_V2 and not judged_tcf
        ]
        opted_out = [
            us_opted_out(section_id, encoded) for section_id, encoded in applicable if is_us_section(section_id)
        ]
    except (InvalidGPPString, InvalidTCString):
        return GPP_INVALID
    if not all(tcf_grants(signals) for signals in tcf):
        return GDPR_NO_CONSENT
    if any(opted_out):
        return GPP_OPTOUT
    return None
