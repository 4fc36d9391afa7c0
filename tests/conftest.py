"""Shared test helpers: real-shaped sample events and an emulated AWS account."""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings

# CI runs the property-based tests with a fixed seed, so a run is reproducible and a
# submission's result does not depend on luck; local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
SEGMENTS_DIR = ROOT / "segments"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of a sample event from events/."""
    return copy.deepcopy(json.loads((EVENTS_DIR / f"{name}.json").read_text()))


class FakeContext:
    function_name = "test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's in-process AWS with the stack's tables and bucket, and the functions'
    environment pointing at them. Yields the StackTarget."""
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        from dmp.local import create_resources

        target = create_resources(None, region="eu-west-1", retention_days=90)
        for name, value in target.environment().items():
            monkeypatch.setenv(name, value)
        yield target


@pytest.fixture
def load_handler(aws: Any) -> Any:
    """Import a handler module afresh, so it reads the current environment."""

    def load(name: str) -> ModuleType:
        return importlib.reload(importlib.import_module(f"functions.{name}.handler"))

    return load


def dynamodb_item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item in its attribute-value form: names and values in UTF-8
    bytes, a number as about one byte per two digits plus one, a map 3 bytes plus one per
    element (rounded up here, so the bound below is checked against the larger figure)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        ((kind, raw),) = value.items()
        if kind == "S":
            total += len(raw.encode())
        elif kind == "N":
            total += len(raw.lstrip("-").replace(".", "")) // 2 + 2
        else:  # "M"
            total += 3 + len(raw) + dynamodb_item_bytes(raw)
    return total
