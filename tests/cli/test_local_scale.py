"""The local stack at a real site's size, from a shell (issue: the local stack cannot
build a real site's week). The emulator takes seconds to answer a 1 MB scan page, and a
build's shards ask for theirs at once: with the functions' 5 s read timeout every build
of these 16 k events failed with `ReadTimeoutError`."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SEGMENTS_DIR
from tests.localstack import dmp_serve, run_dmp
from tests.site_traffic import uk_visitors, visitor_id, visitors_for, week_lines

pytestmark = pytest.mark.slow
EVENTS = 16_000


def segment_sizes(build_output: str) -> dict[str, int]:
    """`dmp build`'s `  <segment id>  <size>` lines."""
    sizes: dict[str, int] = {}
    for line in build_output.splitlines():
        fields = line.split()
        if line.startswith("  ") and len(fields) == 2 and fields[1].isdigit():
            sizes[fields[0]] = int(fields[1])
    return sizes


def test_a_week_of_a_shops_traffic_ingests_builds_on_four_shards_and_is_looked_up(tmp_path: Path) -> None:
    with dmp_serve(tmp_path, {"CATALOG_REFRESH_SECONDS": "0"}) as state:
        run_dmp(tmp_path, "segments", "push", str(SEGMENTS_DIR), "--local")
        key = run_dmp(tmp_path, "partners", "add", "demo-dsp", "--local").stdout.strip().splitlines()[-1]
        # GIVEN a week of a shop's traffic, 16 k events of 1,200 visitors, through `dmp ingest`
        week = tmp_path / "week.jsonl"
        week.write_text("".join(line + "\n" for line in week_lines(EVENTS)))
        ingested = run_dmp(tmp_path, "ingest", str(week), "--local")
        assert f"stored {EVENTS} event(s), skipped 0 line(s)" in ingested.stdout

        # WHEN it is built on four shards
        built = run_dmp(tmp_path, "build", "--local", "--shards", "4")

        # THEN every visitor in the UK is in the UK segment, counted once across the shards
        in_uk = uk_visitors(visitors_for(EVENTS))
        assert segment_sizes(built.stdout)["new-uk-visitors"] == len(in_uk), built.stdout
        # AND the partner finds one of them there through the lookup API
        visitor = visitor_id(0)
        assert visitor in in_uk
        request = urllib.request.Request(
            f"{state['gateway_url']}/v1/users/{visitor}/segments", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert "new-uk-visitors" in [segment["id"] for segment in answer["segments"]]
        assert answer["build_id"] in built.stdout
