"""Real-time membership on `dmp serve` (DESIGN.md, "Freshness"): the local stack reads the
events table's stream and runs the evaluator as Lambda would, so a hit through the local
gateway shows in partner lookups within seconds, with no build."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow
# The stream is polled every 0.5 s; the emulator is slow on a busy machine.
WITHIN_SECONDS = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("serve-realtime")
    with dmp_serve(cwd, {"CATALOG_REFRESH_SECONDS": "0"}) as state:
        yield cwd, state


def lookup(gateway: str, visitor_id: str, key: str) -> list[str]:
    request = urllib.request.Request(
        f"{gateway}/v1/users/{visitor_id}/segments", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [s["id"] for s in json.loads(response.read())["segments"]]


def test_a_hit_shows_in_a_lookup_within_seconds_without_a_build(served):
    cwd, state = served
    gateway = state["gateway_url"]
    # GIVEN a published build of a segment of everyone seen this month, for a partner
    definition = cwd / "seen.yaml"
    definition.write_text("id: seen\nname: Seen\ndestinations: [rt-dsp]\nrule: {last_seen: {within_days: 30}}\n")
    run_dmp(cwd, "segments", "push", str(definition), "--local")
    key = run_dmp(cwd, "partners", "add", "rt-dsp", "--local").stdout.strip().splitlines()[-1]
    run_dmp(cwd, "build", "--local")
    assert lookup(gateway, "realtime-visitor-1", key) == []
    # WHEN a browser's hit arrives through the pixel
    hit = urllib.request.Request(
        f"{gateway}/p.gif?e=page_view&url=https%3A%2F%2Fshop.example%2F&uid=realtime-visitor-1"
    )
    hit.add_header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
    urllib.request.urlopen(hit, timeout=30).read()
    # THEN the partner's lookup answers the segment within seconds, with no build in between
    deadline = time.monotonic() + WITHIN_SECONDS
    while (segments := lookup(gateway, "realtime-visitor-1", key)) != ["seen"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert segments == ["seen"], (cwd / "serve.log").read_text(errors="replace")
