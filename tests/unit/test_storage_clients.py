"""The storage clients' read timeout: DynamoDB's own in AWS, the emulator's on the local
stack (issue: the local stack cannot build a real site's week)."""

from __future__ import annotations

import pytest

from dmp.local import EMULATOR_READ_TIMEOUT_SECONDS, StackTarget
from functions.core.config import ConfigurationError, Env
from functions.core.storage import aws


def stack(aws_endpoint_url: str | None) -> StackTarget:
    return StackTarget("eu-west-1", "events", "membership", "partners", "bucket", aws_endpoint_url=aws_endpoint_url)


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Enough of an environment to create clients (none of them is called)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv(Env.STORAGE_READ_TIMEOUT_SECONDS, raising=False)
    return monkeypatch


def test_clients_keep_their_production_read_timeouts_when_nothing_overrides_them(client_env):
    # GIVEN an environment as the CDK stack gives a function: no read timeout setting
    # WHEN the storage adapters create their clients
    # THEN DynamoDB's is the 5 s that makes a slow request a retry, S3's botocore's 60 s
    assert aws.create_client("dynamodb").meta.config.read_timeout == 5
    assert aws.create_client("sqs").meta.config.read_timeout == 5
    assert aws.create_client("s3").meta.config.read_timeout == 60


def test_the_local_stack_gives_every_client_the_emulators_read_timeout(client_env):
    # GIVEN the environment of a local stack (`dmp serve`, `dmp ... --local`)
    target = stack("http://127.0.0.1:5000")
    for name, value in target.environment().items():
        client_env.setenv(name, value)
    # WHEN the storage adapters create their clients
    clients = [aws.create_client(service) for service in ("dynamodb", "sqs", "s3")]
    # THEN each waits as long as the emulator may take over a scan page
    assert [c.meta.config.read_timeout for c in clients] == [EMULATOR_READ_TIMEOUT_SECONDS] * 3
    # AND keeps the rest of its configuration
    assert clients[0].meta.config.connect_timeout == 2
    assert clients[0].meta.config.retries["mode"] == "standard"


def test_a_deployed_stack_leaves_the_read_timeouts_alone():
    # GIVEN a deployed stack (no emulator endpoint), as `--stack NAME` finds it
    target = stack(None)
    # THEN its environment sets no read timeout
    assert Env.STORAGE_READ_TIMEOUT_SECONDS not in target.environment()


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_malformed_read_timeout_is_refused_naming_the_setting(raw: str):
    with pytest.raises(ConfigurationError, match=Env.STORAGE_READ_TIMEOUT_SECONDS):
        aws.read_timeout_override({Env.STORAGE_READ_TIMEOUT_SECONDS: raw})
