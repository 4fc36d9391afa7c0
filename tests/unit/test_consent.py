"""The pixel's consent decision (functions/core/consent.py).

TC strings and GPP strings are built by tests/unit/tcf_builder.py and gpp_builder.py;
tests/reference holds the decision to the official IAB libraries on a large corpus.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from functions.core.consent import consent_refusal
from functions.core.gpp import US_SECTIONS
from tests.unit.gpp_builder import gpp_string, us_section
from tests.unit.tcf_builder import Restriction, tc_string

OUR_VENDOR = 755
GRANTING = {"purposes_consent": {1, 3, 4}, "vendors": {OUR_VENDOR}}


def refusal(
    tc: str | None = None, *, gdpr: str | None = "1", gpp: str | None = None, gpp_sid: str | None = None
) -> str | None:
    return consent_refusal(gdpr=gdpr, tc_string=tc, gpp=gpp, gpp_sid=gpp_sid, vendor_id=OUR_VENDOR)


def granting_tc(**fields: object) -> str:
    return tc_string(**{**GRANTING, **fields})


def usnat(**values: int) -> str:
    return us_section(US_SECTIONS[7].fields, {"SaleOptOut": 2, "SharingOptOut": 2, **values}, gpc=False, version=2)


# --- TCF -----------------------------------------------------------------------------


def test_consent_for_purposes_1_3_and_4_and_our_vendor_allows_storage():
    assert refusal(granting_tc()) is None
    assert refusal(granting_tc(purposes_consent=set(range(1, 25)), vendor_ranges=[(700, 800)])) is None


@pytest.mark.parametrize("missing", [1, 3, 4])
def test_each_of_purposes_1_3_and_4_is_needed(missing):
    # GIVEN every purpose consented but one, which has legitimate interest instead
    tc = granting_tc(purposes_consent=set(range(1, 25)) - {missing}, purposes_li_transparency={missing})
    assert refusal(tc) == "gdpr_no_consent"


def test_our_vendor_needs_consent_not_legitimate_interest():
    assert refusal(granting_tc(vendors={OUR_VENDOR - 1}, li_vendors={OUR_VENDOR})) == "gdpr_no_consent"


def test_purpose_one_treatment_withholds_purpose_1():
    # GIVEN purpose 1 "not disclosed at all" (and its consent bit set all the same)
    assert refusal(granting_tc(purpose_one_treatment=1, publisher_cc="DE")) == "gdpr_no_consent"


@pytest.mark.parametrize("purpose", [1, 3, 4])
@pytest.mark.parametrize("kind, refused", [(0, True), (1, False), (2, True)])
def test_restrictions_not_allowed_and_require_legitimate_interest_forbid_purposes_1_3_and_4(purpose, kind, refused):
    tc = granting_tc(restrictions=[Restriction(purpose, kind, [(700, 800)])])
    assert refusal(tc) == ("gdpr_no_consent" if refused else None)


def test_restrictions_on_other_purposes_or_other_vendors_do_not_matter():
    tc = granting_tc(
        restrictions=[
            Restriction(2, 0, [OUR_VENDOR]),
            Restriction(7, 2, [(1, 65535)]),
            Restriction(1, 0, [(1, OUR_VENDOR - 1), (OUR_VENDOR + 1, 65535)]),
        ]
    )
    assert refusal(tc) is None


def test_a_malformed_tc_string_is_refused_as_such():
    assert refusal(granting_tc(version=1)) == "gdpr_invalid_consent"
    assert refusal("not a tc string") == "gdpr_invalid_consent"
    assert refusal(granting_tc()[:30]) == "gdpr_invalid_consent"


def test_gdpr_1_without_a_tc_string_is_refused():
    assert refusal(None) == "gdpr_no_consent"
    assert refusal("") == "gdpr_no_consent"


@pytest.mark.parametrize("gdpr", [None, "0", "", "true"])
def test_without_gdpr_1_the_tc_string_is_not_read(gdpr):
    assert refusal("garbage", gdpr=gdpr) is None
    assert refusal(None, gdpr=gdpr) is None


# --- GPP -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"])
def test_a_us_opt_out_refuses(field):
    assert refusal(gdpr=None, gpp=gpp_string([(7, usnat(**{field: 1}))])) == "gpp_optout"


def test_us_sections_without_opt_outs_allow():
    sections = [(7, usnat()), (6, "1YNN"), (8, us_section(US_SECTIONS[8].fields, {"SaleOptOut": 2}))]
    assert refusal(gdpr=None, gpp=gpp_string(sections)) is None


def test_gpp_sid_says_which_sections_apply():
    # GIVEN an opt-out in the California section and none in the national one
    gpp = gpp_string([(7, usnat()), (8, us_section(US_SECTIONS[8].fields, {"SaleOptOut": 1}))])

    # THEN it refuses when California's section applies, and only then
    assert refusal(gdpr=None, gpp=gpp) == "gpp_optout"
    assert refusal(gdpr=None, gpp=gpp, gpp_sid="8") == "gpp_optout"
    assert refusal(gdpr=None, gpp=gpp, gpp_sid="7_8") == "gpp_optout"
    assert refusal(gdpr=None, gpp=gpp, gpp_sid="7") is None
    assert refusal(gdpr=None, gpp=gpp, gpp_sid="-1") is None


def test_a_malformed_section_that_does_not_apply_is_not_read():
    gpp = gpp_string([(7, usnat()), (8, "%%%")])
    assert refusal(gdpr=None, gpp=gpp, gpp_sid="7") is None
    assert refusal(gdpr=None, gpp=gpp) == "gpp_invalid"


def test_the_tcf_eu_section_is_judged_by_the_tcf_rule():
    assert refusal(gdpr=None, gpp=gpp_string([(2, granting_tc())])) is None
    assert refusal(gdpr=None, gpp=gpp_string([(2, granting_tc(purposes_consent={1}))])) == "gdpr_no_consent"
    assert refusal(gdpr=None, gpp=gpp_string([(2, granting_tc()[:30])])) == "gpp_invalid"
    assert refusal(gdpr=None, gpp=gpp_string([(2, granting_tc(purposes_consent={1}))]), gpp_sid="7") is None


def test_with_gdpr_1_and_no_tc_string_the_gpp_tcf_eu_section_stands_in():
    assert refusal(None, gpp=gpp_string([(2, granting_tc()), (7, usnat())]), gpp_sid="7") is None
    assert refusal(None, gpp=gpp_string([(2, granting_tc(vendors={1}))]), gpp_sid="7") == "gdpr_no_consent"
    assert refusal(None, gpp=gpp_string([(7, usnat())])) == "gdpr_no_consent"


@pytest.mark.parametrize("gpp_sid", ["x", "2,,7"])
def test_malformed_gpp_or_gpp_sid_is_refused_as_such(gpp_sid):
    assert refusal(gdpr=None, gpp="DBABLA~%%%") == "gpp_invalid"
    assert refusal(gdpr=None, gpp=gpp_string([(7, usnat())]), gpp_sid=gpp_sid) == "gpp_invalid"


def test_the_tc_string_is_judged_before_the_gpp_string():
    # GIVEN a refusing TC string and a GPP string that refuses too
    gpp = gpp_string([(7, usnat(SaleOptOut=1))])
    assert refusal(granting_tc(vendors={1}), gpp=gpp) == "gdpr_no_consent"
    assert refusal("garbage", gpp=gpp) == "gdpr_invalid_consent"
    assert refusal(granting_tc(), gpp=gpp) == "gpp_optout"
    assert refusal(granting_tc(), gpp="garbage") == "gpp_invalid"


# --- cold start ----------------------------------------------------------------------


def test_the_decision_imports_nothing_outside_the_standard_library():
    # GIVEN a fresh interpreter importing only the decision
    program = (
        "import sys; before = set(sys.modules); import functions.core.consent; "
        "print(__import__('json').dumps(sorted(set(sys.modules) - before)))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    )

    # THEN every module it loaded is ours or the standard library's
    foreign = [name for name in loaded if name.split(".")[0] not in sys.stdlib_module_names | {"functions"}]
    assert foreign == []
