"""The AWS plumbing every store shares: one client factory, the lazy client, retries with
backoff, batch writes, and DynamoDB's attribute codecs.

DynamoDB and SQS clients come straight from botocore: `import boto3` alone costs a
Lambda ~60 ms of cold start for S3's transfer manager, which only the builder uses.
Items use DynamoDB's low-level attribute format: no serializer on the hot path.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.config import ConfigurationError, Env

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Standard retry mode: exponential backoff with jitter on throttling and 5xx. DynamoDB
# answers in milliseconds, so a read that takes 5 s is better retried than waited for.
#
# A pool of WRITE_THREADS connections, for the build's parallel membership writes;
# connections open only when used, so a single-threaded Lambda pays nothing for it.
WRITE_THREADS = 32
CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=WRITE_THREADS,
)
S3_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100

_session: botocore.session.Session | None = None
# Clients are thread-safe, a session is not: `dmp build` runs shards on threads whose
# stores may create their clients at the same moment.
_session_lock = threading.Lock()


def session() -> botocore.session.Session:
    """The botocore session the DynamoDB and SQS clients of this process come from (its
    event hooks see every request they make)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session


def read_timeout_override(env: Mapping[str, str] | None = None) -> int | None:
    """The clients' read timeout in seconds when `STORAGE_READ_TIMEOUT_SECONDS` sets one.

    Unset in AWS, where the defaults above hold. The local stack sets it for its emulator,
    which takes seconds, not milliseconds, to answer a scan page (`dmp/local.py`)."""
    env = os.environ if env is None else env
    raw = env.get(Env.STORAGE_READ_TIMEOUT_SECONDS)
    if not raw:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        raise ConfigurationError(f"{Env.STORAGE_READ_TIMEOUT_SECONDS} must be an integer, got {raw!r}") from None
    if seconds < 1:
        raise ConfigurationError(f"{Env.STORAGE_READ_TIMEOUT_SECONDS} must be >= 1, got {seconds}")
    return seconds


def create_client(service: str, config: Config | None = None) -> Any:
    """A new client for `service` (region, credentials and endpoint from the environment),
    with `config` merged over the defaults (e.g. how pre-signed URLs are signed) and the
    read timeout of `read_timeout_override`, if any.

    S3's is boto3's, for its transfer manager (multipart uploads of large part files);
    the others come from one botocore session shared by the adapters of a process."""
    defaults = S3_CONFIG if service == "s3" else CONFIG
    timeout = read_timeout_override()
    if timeout is not None:
        defaults = defaults.merge(Config(read_timeout=timeout))
    merged = defaults if config is None else defaults.merge(config)
    if service == "s3":
        import boto3

        return boto3.client("s3", config=merged)
    current = session()
    with _session_lock:
        return current.create_client(service, config=merged)


ClientT = TypeVar("ClientT")


class Adapter(Generic[ClientT]):
    """A store's client, created on first use (never at import, so the pixel's cold start
    pays only for what it uses and tests can start moto first), or the one it was given.

    `same_client_as` shares another adapter's (lazy) client: the lookup's catalog and
    membership reads then use one client and one connection pool."""

    service: str = ""

    def __init__(self, client: ClientT | None = None, *, same_client_as: Adapter[ClientT] | None = None) -> None:
        self._client = client
        self._same_client_as = same_client_as

    @property
    def client(self) -> ClientT:
        if self._client is None:
            shared = self._same_client_as
            self._client = shared.client if shared is not None else cast(ClientT, create_client(self.service))
        return self._client


class TableAdapter(Adapter["DynamoDBClient"]):
    """A store of one DynamoDB table."""

    service = "dynamodb"

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        same_client_as: Adapter[DynamoDBClient] | None = None,
    ) -> None:
        super().__init__(client, same_client_as=same_client_as)
        self.table_name = table_name


def backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


def error_code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


class WriteIncomplete(RuntimeError):
    """A batch write gave up; `remaining` holds every request not known to be written."""

    def __init__(self, remaining: list[dict[str, Any]], cause: str) -> None:
        super().__init__(f"{len(remaining)} write request(s) not written: {cause}")
        self.remaining = remaining


def batch_write(client: DynamoDBClient, table: str, requests: list[dict[str, Any]], max_attempts: int = 8) -> int:
    """BatchWriteItem in chunks of 25, retrying unprocessed items with backoff.
    Returns the number of BatchWriteItem calls made; raises WriteIncomplete."""
    calls = 0
    for start in range(0, len(requests), BATCH_WRITE_LIMIT):
        pending: list[Any] = list(requests[start : start + BATCH_WRITE_LIMIT])
        attempt = 0
        while pending:
            try:
                response = client.batch_write_item(RequestItems={table: pending})
            except (ClientError, BotoCoreError) as error:  # after botocore's own retries
                raise WriteIncomplete(pending + requests[start + BATCH_WRITE_LIMIT :], str(error)) from error
            calls += 1
            pending = list(response.get("UnprocessedItems", {}).get(table, []))
            if pending:
                attempt += 1
                if attempt >= max_attempts:
                    raise WriteIncomplete(
                        pending + requests[start + BATCH_WRITE_LIMIT :], f"unprocessed after {attempt} attempts"
                    )
                backoff(attempt)
    return calls


def batch_get(
    client: DynamoDBClient,
    table: str,
    key_name: str,
    key_values: Iterable[str],
    *,
    names: dict[str, str],
    max_attempts: int = 8,
) -> Iterator[dict[str, Any]]:
    """The items of `table` whose key `key_name` is one of `key_values` (each asked for
    once), with the attributes `names` (`{"#placeholder": attribute}`, the key included):
    BatchGetItem per 100 keys, unprocessed keys retried with backoff."""
    unique = list(dict.fromkeys(key_values))
    projection = ", ".join(names)
    for start in range(0, len(unique), BATCH_GET_LIMIT):
        keys: dict[str, Any] = {
            table: {
                "Keys": [{key_name: s(v)} for v in unique[start : start + BATCH_GET_LIMIT]],
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": names,
            }
        }
        attempt = 0
        while keys:
            response = client.batch_get_item(RequestItems=keys)
            yield from response.get("Responses", {}).get(table, [])
            keys = response.get("UnprocessedKeys") or {}
            if keys:
                attempt += 1
                if attempt >= max_attempts:
                    raise RuntimeError(f"{table}: keys still unprocessed after {attempt} attempts")
                backoff(attempt)


def s(value: str) -> dict[str, str]:
    """A DynamoDB string attribute."""
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    """A DynamoDB number attribute."""
    return {"N": str(value)}
