"""What a function does during Lambda's init phase: on demand only what every request
needs; ahead of requests (provisioned concurrency, SnapStart) also what the first
request would otherwise wait for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FUNCTION_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "EVENTS_TABLE": "events",
    "FALLBACK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fallback",
    "MEMBERSHIP_TABLE": "membership",
    "SUPPRESSION_TABLE": "suppression",
    "CATALOG_TABLE": "catalog",
    "ID_MAP_TABLE": "id-map",
    "SEGMENTS_BUCKET": "segments",
}


def loaded_after_import(module: str, init_type: str, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded once it imported `module`."""
    env = {**os.environ, **FUNCTION_ENV, "AWS_LAMBDA_INITIALIZATION_TYPE": init_type}
    program = f"import json, sys, {module}\nprint(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


USER_AGENT_RULES = ("crawleruseragents", "user_agents")


@pytest.mark.parametrize(
    ("init_type", "expected"),
    [("on-demand", []), ("provisioned-concurrency", list(USER_AGENT_RULES)), ("snap-start", list(USER_AGENT_RULES))],
)
def test_the_pixel_loads_its_user_agent_rules_in_init_only_ahead_of_requests(init_type, expected):
    # GIVEN Lambda initialises the ingest function as `init_type`
    # WHEN it imports the handler
    # THEN the crawler list and ua-parser rules are loaded only when no hit is waiting
    assert loaded_after_import("functions.ingest.handler", init_type, USER_AGENT_RULES) == expected


@pytest.mark.parametrize(
    ("init_type", "expected"),
    # On demand it leaves them alone: test_lookup_api.py pins that, with Powertools' resolver.
    [
        ("provisioned-concurrency", ["functions.lookup.api", "pydantic"]),
        ("snap-start", ["functions.lookup.api", "pydantic"]),
    ],
)
def test_the_lookup_builds_its_validated_api_in_init_ahead_of_requests(init_type, expected):
    assert loaded_after_import("functions.lookup.handler", init_type, ("functions.lookup.api", "pydantic")) == expected
