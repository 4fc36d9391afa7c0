"""The freshness figure of the stream suite, on `dmp serve` (see bench_stream.py)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HITS = 5
POLL_SECONDS = 0.05
GIVE_UP_SECONDS = 60
SEGMENT = "new-uk-visitors"
LONDON = {
    "CloudFront-Viewer-Country": "GB",
    "CloudFront-Viewer-Country-Region": "ENG",
    "CloudFront-Viewer-City": "London",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
}


def _lookup(gateway: str, visitor_id: str, key: str) -> list[str]:
    request = urllib.request.Request(
        f"{gateway}/v1/users/{visitor_id}/segments", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [s["id"] for s in json.loads(response.read())["segments"]]


def _hit(gateway: str, visitor_id: str) -> None:
    query = urllib.parse.urlencode({"e": "page_view", "url": "https://shop.example/", "uid": visitor_id})
    request = urllib.request.Request(f"{gateway}/p.gif?{query}", headers=LONDON)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def freshness_seconds() -> float:
    """Median seconds from a London hit of a new visitor to the partner's lookup showing
    it in `new-uk-visitors`, over HITS hits, on `dmp serve` after one published build."""
    from tests.conftest import SEGMENTS_DIR
    from tests.localstack import dmp_serve, run_dmp

    samples: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        cwd = Path(directory)
        with dmp_serve(cwd, {"CATALOG_REFRESH_SECONDS": "0"}) as state:
            gateway = state["gateway_url"]
            run_dmp(cwd, "segments", "push", str(SEGMENTS_DIR), "--local")
            key = run_dmp(cwd, "partners", "add", "demo-dsp", "--local").stdout.strip().splitlines()[-1]
            run_dmp(cwd, "build", "--local")
            for number in range(HITS):
                visitor_id = f"freshness-visitor-{number}"
                assert SEGMENT not in _lookup(gateway, visitor_id, key)
                start = time.perf_counter()
                _hit(gateway, visitor_id)
                while SEGMENT not in _lookup(gateway, visitor_id, key):
                    if time.perf_counter() - start > GIVE_UP_SECONDS:
                        raise AssertionError((cwd / "serve.log").read_text(errors="replace"))
                    time.sleep(POLL_SECONDS)
                samples.append(time.perf_counter() - start)
    return statistics.median(samples)
