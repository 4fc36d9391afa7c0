"""`dmp segments preview` and `dmp report` against a running `dmp serve`, from a shell."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow
dmp = run_dmp


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("serve-report")
    with dmp_serve(cwd) as state:
        yield cwd, state


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_preview_then_build_then_save_the_report(served, tmp_path):
    cwd, _ = served
    # GIVEN two segments pushed, events of three visitors, and a first build
    definitions = tmp_path / "segments"
    definitions.mkdir()
    (definitions / "london.yaml").write_text(
        "id: london\nname: Londoners <b>bold</b>\ndestinations: [demo-dsp]\nrule: {geo: {city: London}}\n"
    )
    (definitions / "pricing.yaml").write_text(
        "id: pricing\nname: Pricing viewers\nrule: {event: {url_contains: /pricing, within_days: 30}}\n"
    )
    dmp(cwd, "segments", "push", str(definitions), "--local")
    now = time.time()
    lines = [
        {"uid": "visitor-cli-0001", "ts": int((now - 3 * 86400) * 1000), "e": "page_view",
         "url": "https://shop.example/pricing", "geo": {"country": "GB", "city": "London"}, "device": "mobile"},
        {"uid": "visitor-cli-0002", "ts": int((now - 2 * 86400) * 1000), "e": "page_view",
         "url": "https://shop.example/", "geo": {"country": "GB", "city": "London"}, "device": "desktop"},
        {"uid": "visitor-cli-0003", "ts": int((now - 86400) * 1000), "e": "page_view",
         "url": "https://shop.example/pricing", "geo": {"country": "FR", "city": "Paris"}},
    ]  # fmt: skip
    backfill = tmp_path / "events.jsonl"
    backfill.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    dmp(cwd, "ingest", str(backfill), "--local")
    first_at = iso(now - 3600)
    dmp(cwd, "build", "--local", "--at", first_at)
    # WHEN a new definition is previewed at a later time
    (tmp_path / "new.yaml").write_text(
        "id: pricing-londoners\nname: London pricing\nrule: {all: [{geo: {city: London}}, "
        "{event: {url_contains: /pricing}}]}\n"
    )
    at = iso(now + 60)
    shown = dmp(cwd, "segments", "preview", str(tmp_path / "new.yaml"), "--local", "--at", at, "--json")
    preview = json.loads(shown.stdout)
    # THEN it gives its size and its overlap with each published segment
    (segment,) = preview["segments"]
    assert segment["size"] == 1
    overlaps = {o["segment_id"]: (o["shared"], o["jaccard"]) for o in segment["overlaps"]}
    assert overlaps == {"london": (1, 0.5), "pricing": (1, 0.5)}
    text = dmp(cwd, "segments", "preview", str(tmp_path / "new.yaml"), "--local", "--at", at).stdout
    assert "pricing-londoners" in text and "nothing written" in text
    # AND a build at that time, with it pushed, publishes that size
    dmp(cwd, "segments", "push", str(tmp_path / "new.yaml"), "--local")
    built = dmp(cwd, "build", "--local", "--at", at).stdout
    assert any(line.split() == ["pricing-londoners", "1"] for line in built.splitlines())
    # AND `dmp report` saves the latest build's page, or a given build's
    out = tmp_path / "report.html"
    saved = dmp(cwd, "report", "--local", "--out", str(out)).stdout
    page = out.read_text()
    assert saved.startswith("report of build ") and "pricing-londoners" in page
    assert "Londoners &lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    first_id = first_at.replace("-", "").replace(":", "")
    dmp(cwd, "report", "--local", "--build", first_id, "--out", str(tmp_path / "first.html"))
    assert "pricing-londoners" not in (tmp_path / "first.html").read_text()
    missing = dmp(cwd, "report", "--local", "--build", "20000101T000000Z", "--out", str(out), check=False)
    assert missing.returncode == 1 and "no report" in missing.stderr


def test_preview_refuses_an_invalid_definition_with_its_file_and_path(served, tmp_path):
    cwd, _ = served
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: Bad\nrule: {visits: {min: 3, max: 1}}\n")
    result = dmp(cwd, "segments", "preview", str(bad), "--local", check=False)
    assert result.returncode == 1
    assert f"{bad}: rule.visits: min (3) is greater than max (1)" in result.stderr
