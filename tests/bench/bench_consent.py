"""Consent decoding benchmarks (issue: a crafted consent string must cost no more than an
ordinary one; the old decoder spent ~1.6 s of CPU on a 4 KB string of vendor ranges).

- tcf_worst_case_ratio: `consent_refusal` on the costliest TC string we can write within
  MAX_TC_STRING / on a typical CMP string (a few hundred vendors consented, legitimate
  interests, two restrictions, the disclosed-vendors segment). The costliest is the
  slowest of several shapes, each granting (so the whole decision is taken) and padded to
  MAX_TC_STRING with a bitfield: MAX_RANGE_ENTRIES range entries (or single ids) as
  vendor consents, as legitimate interests, in one restriction, spread over
  MAX_PUB_RESTRICTIONS restrictions, one range per restriction, or over every segment;
  restrictions of the kinds the decision looks up for our vendor (purposes 1, 3, 4; types
  0, 2), so that each entry is compared with it; entries of two kinds, ranges around our
  vendor and one-vendor ranges beside it (which the decoder must compare bit by bit to
  the end); and strings one past each limit, which are refused.
- gpp_worst_case_ratio: the same for GPP strings: the costliest TC string as the TCF EU
  section (judged, as `gdpr=1` without `gdpr_consent` has it), every US section, the
  rest of MAX_GPP_STRING as padding in a section that is read / a typical EU + US string
  (a TCF EU section and a usnat section).
Medians of interleaved repeats.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from functions.core import gpp
from functions.core.consent import consent_refusal
from functions.core.tcf import MAX_PUB_RESTRICTIONS, MAX_RANGE_ENTRIES, MAX_TC_STRING
from tests.bench.common import interleaved_medians
from tests.unit.gpp_builder import gpp_string, us_section
from tests.unit.tcf_builder import (
    BitWriter,
    CoreSegment,
    Restriction,
    VendorEntry,
    base64url,
    publisher_tc_segment,
    vendors_segment,
)

OUR_VENDOR = 755


def typical_tc_string() -> str:
    """As a CMP writes it after "accept all" on a list of ~1200 vendor ids."""
    rng = random.Random(7)
    listed = sorted(rng.sample(range(1, 1200), 700))
    consented = set(rng.sample(listed, 300)) | {OUR_VENDOR}
    core = CoreSegment(
        purposes_consent=set(range(1, 11)),
        purposes_li_transparency={2, 7, 8, 9, 10},
        purpose_one_treatment=0,
        vendors=consented,
        li_vendors=set(rng.sample(listed, 150)),
        restrictions=[Restriction(2, 1, [(10, 40)]), Restriction(7, 0, [90, 91])],
    )
    return core.encode(vendors_segment(1, vendors=set(listed)))


def _padded(core: CoreSegment, *segments: str) -> str:
    """`core` and `segments`, then an allowed vendors bitfield that makes the string
    MAX_TC_STRING characters: the most a string can make the decoder check and skip."""
    text = core.encode(*segments)
    room = 6 * (MAX_TC_STRING - len(text) - 1) - 20  # "." and SegmentType, MaxVendorId, IsRangeEncoding
    while (
        len(padded := f"{text}.{base64url(BitWriter().write(2, 3).vendors({1}, max_id=room).to_bytes())}")
        > MAX_TC_STRING
    ):
        room -= 1
    assert len(padded) >= MAX_TC_STRING - 1, len(padded)
    return padded


def _around_our_vendor(i: int) -> tuple[int, int]:
    """Ranges coming as close to our vendor as they can without naming it."""
    return (1, OUR_VENDOR - 1) if i % 2 else (OUR_VENDOR + 1, 65535)


def _next_to_our_vendor(i: int) -> tuple[int, int]:
    """One-vendor ranges beside ours: every bit of both ids is compared with our vendor's
    before it is clear that neither names it, and with each other (end >= start)."""
    return (OUR_VENDOR - 1, OUR_VENDOR - 1) if i % 2 else (OUR_VENDOR + 1, OUR_VENDOR + 1)


def _forbidding(i: int) -> tuple[int, int]:
    """(purpose, type) of restrictions the decision must look up for our vendor."""
    return (1, 3, 4)[i % 3], (0, 2)[i // 3 % 2]


def _shapes(near: Callable[[int], tuple[int, int]]) -> dict[str, str]:
    """Each shape with range entries made by `near`."""
    granting: dict[str, Any] = {"purposes_consent": set(range(1, 25)), "purpose_one_treatment": 0}
    entries, restrictions = MAX_RANGE_ENTRIES, MAX_PUB_RESTRICTIONS
    ranges: list[VendorEntry] = [near(i) for i in range(entries)]
    # Restrictions sharing the entries: every one has entries // restrictions, some one more.
    shares = [entries // restrictions + (i < entries % restrictions) for i in range(restrictions)]
    first = 0
    spread = []
    for i, share in enumerate(shares):
        spread.append(Restriction(*_forbidding(i), ranges[first : first + share]))
        first += share
    share = (entries - restrictions) // 3  # of the entries left by one-range restrictions
    singles = [near(i)[0] for i in range(entries - 1)]
    return {
        "vendor_ranges": _padded(CoreSegment(**granting, vendor_ranges=[*ranges[:-1], OUR_VENDOR])),
        "vendor_single_ids": _padded(CoreSegment(**granting, vendor_ranges=[*singles, OUR_VENDOR])),
        "li_ranges": _padded(CoreSegment(**granting, vendors={OUR_VENDOR}, li_vendor_ranges=ranges)),
        "restriction_ranges": _padded(
            CoreSegment(**granting, vendors={OUR_VENDOR}, restrictions=[Restriction(1, 0, ranges)])
        ),
        "restriction_single_ids": _padded(
            CoreSegment(**granting, vendors={OUR_VENDOR}, restrictions=[Restriction(1, 0, [*singles, 1])])
        ),
        "restrictions": _padded(CoreSegment(**granting, vendors={OUR_VENDOR}, restrictions=spread)),
        "restrictions_of_one_range": _padded(
            CoreSegment(
                **granting,
                vendors={OUR_VENDOR},
                restrictions=[Restriction(*_forbidding(i), [ranges[i]]) for i in range(restrictions)],
            )
        ),
        "every_segment": _padded(
            CoreSegment(
                **granting,
                vendor_ranges=[*ranges[: share - 1], OUR_VENDOR],
                li_vendor_ranges=ranges[:share],
                restrictions=[Restriction(*_forbidding(i), [ranges[i]]) for i in range(restrictions)],
            ),
            vendors_segment(1, ranges=ranges[: entries - restrictions - 2 * share]),
            publisher_tc_segment(custom_purposes=63),
        ),
    }


def crafted_tc_strings() -> dict[str, str]:
    """Shapes that make the decoder work hardest, each as long as MAX_TC_STRING allows and
    each granting (our vendor consented, no restriction naming it), so that the whole
    decision is taken: as many range entries (MAX_RANGE_ENTRIES) and restrictions
    (MAX_PUB_RESTRICTIONS) as the decoder accepts, the restrictions all of the kinds looked
    up for our vendor, in each place they can be, with entries of two kinds that come
    close to our vendor; then strings past a limit, which must be refused at no more cost."""
    granting: dict[str, Any] = {"purposes_consent": set(range(1, 25)), "purpose_one_treatment": 0}
    return {
        **{f"{name}/around": tc for name, tc in _shapes(_around_our_vendor).items()},
        **{f"{name}/next_to": tc for name, tc in _shapes(_next_to_our_vendor).items()},
        "empty_restrictions": _padded(
            CoreSegment(
                **granting,
                vendors={OUR_VENDOR},
                restrictions=[Restriction(*_forbidding(i), []) for i in range(MAX_PUB_RESTRICTIONS)],
            )
        ),
        # Past a limit: refused, before anything past the count is read.
        "too_many_range_entries": CoreSegment(
            **granting, vendor_ranges=[*(1 + i % 700 for i in range(1400)), OUR_VENDOR]
        ).encode(),
        "too_many_restrictions": CoreSegment(
            **granting, vendors={OUR_VENDOR}, restrictions=[Restriction(1 + i % 24, 0, []) for i in range(1150)]
        ).encode(),
        "too_many_segments": ".".join(
            [CoreSegment(**granting, vendors={OUR_VENDOR}).encode(), *[vendors_segment(1)] * 780]
        ),
    }


def typical_gpp_string(tc_string: str) -> str:
    """A TCF EU section and a usnat section with notices given and no opt-out."""
    usnat = us_section(
        gpp.US_SECTIONS[7].fields,
        {"SaleOptOutNotice": 1, "SaleOptOut": 2, "SharingOptOut": 2, "TargetedAdvertisingOptOut": 2},
        gpc=False,
        version=2,
    )
    return gpp_string([(2, tc_string), (7, usnat)])


def crafted_gpp_string(tc_string: str) -> str:
    """`tc_string` as the TCF EU section, US Privacy and every US section, the first of
    them padded so that the whole string is MAX_GPP_STRING characters."""
    sections = [(2, tc_string), (6, "1NNN")]
    sections += [
        (section_id, us_section(section.fields, {}, gpc=False if section.second is gpp.SecondSegment.GPC else None))
        for section_id, section in gpp.US_SECTIONS.items()
    ]
    text = gpp_string(sections)
    first_us = sections[2][1]
    core, gpc = first_us.split(".")
    padded = core + "A" * (gpp.MAX_GPP_STRING - len(text)) + "." + gpc
    return text.replace(first_us, padded, 1)


def _decide_tc(tc_string: str) -> Callable[[], object]:
    return lambda: consent_refusal(gdpr="1", tc_string=tc_string, gpp=None, gpp_sid=None, vendor_id=OUR_VENDOR)


def _decide_gpp(gpp_string: str) -> Callable[[], object]:
    return lambda: consent_refusal(gdpr="1", tc_string=None, gpp=gpp_string, gpp_sid=None, vendor_id=OUR_VENDOR)


def run(repeat: int = 300) -> dict[str, float]:
    typical = typical_tc_string()
    crafted = crafted_tc_strings()
    tcf = interleaved_medians(
        {"typical": _decide_tc(typical), **{name: _decide_tc(tc) for name, tc in crafted.items()}}, repeat=repeat
    )
    worst_tc = max(crafted, key=lambda name: tcf[name])
    gpp_times = interleaved_medians(
        {
            "typical": _decide_gpp(typical_gpp_string(typical)),
            "crafted": _decide_gpp(crafted_gpp_string(crafted[worst_tc])),
        },
        repeat=repeat,
    )
    return {
        "tcf_worst_case_ratio": tcf[worst_tc] / tcf["typical"],
        "gpp_worst_case_ratio": gpp_times["crafted"] / gpp_times["typical"],
    }
