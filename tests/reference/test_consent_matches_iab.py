"""The consent decision against the official IAB libraries.

tests/reference/iab/corpus.mjs writes a seeded corpus of TC strings and GPP strings, and
for each the reason `consent_refusal` must give, worked out by decide.mjs from what
@iabtechlabtcf/core and @iabgpp/cmpapi decode (the libraries read every bit; only the
rule of functions/core/consent.py is restated in JavaScript). Every case must agree:
the same reason, so the same allow/refuse, and malformed strings refused as malformed.

Needs Node.js and tests/reference/iab/node_modules (`make iab-deps`); fails without them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from functions.core import gpp
from functions.core.consent import consent_refusal
from functions.core.tcf import MAX_RANGE_ENTRIES, MAX_TC_STRING

IAB = Path(__file__).resolve().parent / "iab"
OUR_VENDOR = 755
REASONS = {None, "gdpr_no_consent", "gdpr_invalid_consent", "gpp_optout", "gpp_invalid"}


def node(script: str, *args: str) -> str:
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: the IAB reference tests need it (Node 20)")
    if (
        not (IAB / "node_modules" / "@iabtechlabtcf" / "core").is_dir()
        or not (IAB / "node_modules" / "@iabgpp" / "cmpapi").is_dir()
    ):
        pytest.fail("tests/reference/iab/node_modules is missing: run `make iab-deps`")
    done = subprocess.run(["node", script, *args], cwd=IAB, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"node {script} failed:\n{done.stderr}")
    return done.stdout


@cache
def corpus() -> list[dict[str, Any]]:
    limits = {
        "--vendor": OUR_VENDOR,
        "--max-tc-string": MAX_TC_STRING,
        "--max-gpp-string": gpp.MAX_GPP_STRING,
        "--max-gpp-sections": gpp.MAX_GPP_SECTIONS,
        "--max-gpp-sid": gpp.MAX_GPP_SID,
        "--max-range-entries": MAX_RANGE_ENTRIES,
    }
    output = node("corpus.mjs", *(str(item) for pair in limits.items() for item in pair))
    return [json.loads(line) for line in output.splitlines()]


def decision(case: dict[str, Any]) -> str | None:
    return consent_refusal(
        gdpr=case["gdpr"],
        tc_string=case["tc_string"],
        gpp=case["gpp"],
        gpp_sid=case["gpp_sid"],
        vendor_id=case["vendor_id"],
    )


def describe(case: dict[str, Any], ours: str | None) -> str:
    fields = {key: case[key] for key in ("gdpr", "tc_string", "gpp", "gpp_sid", "vendor_id") if case[key] is not None}
    shown = {
        key: (value[:120] + "...") if isinstance(value, str) and len(value) > 120 else value
        for key, value in fields.items()
    }
    return f"[{case['category']}] library: {case['expected']!r}, ours: {ours!r} for {shown}"


def test_the_corpus_covers_every_outcome_and_every_section():
    # GIVEN the generated corpus
    cases = corpus()
    outcomes = Counter(case["expected"] for case in cases)
    categories = {case["category"] for case in cases}

    # THEN it is large, every reason occurs often, and every US section has cases
    assert len(cases) >= 1000
    assert set(outcomes) == REASONS
    assert min(outcomes.values()) >= 50, outcomes
    assert {f"gpp_{section.name}" for section in gpp.US_SECTIONS.values()} <= categories
    assert {"gpp_uspv1", "tcf_publisher_restrictions", "tcf_truncated", "gpp_malformed"} <= categories


def test_every_decision_matches_the_official_libraries():
    # GIVEN the corpus and the libraries' decision for each case
    cases = corpus()

    # WHEN our consent_refusal decides each case
    disagreements = [describe(case, ours) for case in cases if (ours := decision(case)) != case["expected"]]

    # THEN it agrees on every one
    assert not disagreements, f"{len(disagreements)} of {len(cases)} cases disagree:\n" + "\n".join(disagreements[:25])


def test_us_section_layouts_match_the_library():
    # GIVEN the field layout of every US section @iabgpp/cmpapi encodes
    layouts = json.loads(node("layouts.mjs"))

    # THEN ours lists the same sections, fields, widths and second segments
    ours = {
        str(section_id): {
            "name": section.name,
            "fields": [list(field) for field in section.fields],
            "second": section.second.name,
            "second_bits": section.second.value if section.second is not gpp.SecondSegment.NONE else 0,
        }
        for section_id, section in gpp.US_SECTIONS.items()
    }
    assert ours == layouts
