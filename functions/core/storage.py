"""Storage adapters: the only place that speaks to DynamoDB and S3.

Each adapter takes a table or bucket name and creates its client lazily (never at
import), so the pixel's cold start pays only for what it uses and tests can start moto
first. DynamoDB and SQS clients come straight from botocore: `import boto3` alone costs
a Lambda ~60 ms of cold start for S3's transfer manager, which only the builder uses. Items use DynamoDB's low-level attribute format: no serializer on the hot path.
"""

from __future__ import annotations

import gzip
import json
import random
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.hits import TrackedEvent
from functions.core.records import EventRecord, TraitRecord
from functions.core.tables import (
    BUILDS_PREFIX,
    CATALOG,
    CATALOG_ITEM_NAME,
    DEFINITIONS_PREFIX,
    EVENTS,
    LATEST_KEY,
    MEMBERSHIP,
    PARTNERS,
)

MEMBERSHIP_EXPIRES_AT = MEMBERSHIP.ttl_attribute or "expires_at"

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

# Standard retry mode: exponential backoff with jitter on throttling and 5xx.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=5)
# The events table's key and TTL names, narrowed for the type checker.
assert EVENTS.sort_key is not None and EVENTS.ttl_attribute is not None
VISITOR_KEY: str = EVENTS.partition_key
EVENT_KEY: str = EVENTS.sort_key
EXPIRES_AT: str = EVENTS.ttl_attribute
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
TRAIT_PREFIX = "trait#"


_session: botocore.session.Session | None = None
# Clients are thread-safe, a session is not: `dmp build` runs shards on threads whose
# stores may create their clients at the same moment.
_session_lock = threading.Lock()


def _client(service: str) -> BaseClient:
    """A client of botocore's session (region, credentials and endpoint from the
    environment, as boto3 would take them), shared by the adapters of one process."""
    global _session
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(service, config=_CONFIG)


def dynamodb_client() -> DynamoDBClient:
    return cast("DynamoDBClient", _client("dynamodb"))


def s3_client() -> S3Client:
    """boto3's, for its transfer manager (multipart uploads of large part files)."""
    import boto3

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


class WriteIncomplete(RuntimeError):
    """A batch write gave up; `remaining` holds every request not known to be written."""

    def __init__(self, remaining: list[dict[str, Any]], cause: str) -> None:
        super().__init__(f"{len(remaining)} write request(s) not written: {cause}")
        self.remaining = remaining


def _batch_write(client: DynamoDBClient, table: str, requests: list[dict[str, Any]], max_attempts: int = 8) -> int:
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
                _backoff(attempt)
    return calls


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


class EventStore:
    """The events table: one item per stored event, keyed by visitor and event id."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    @staticmethod
    def to_item(event: TrackedEvent, retention_seconds: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            VISITOR_KEY: _s(event.visitor_id),
            EVENT_KEY: _s(event.event_id),
            "ts": _n(event.ts_ms),
            "name": _s(event.name),
            EXPIRES_AT: _n(event.ts_ms // 1000 + retention_seconds),
        }
        for attr in ("url", "ref", "device"):
            value = getattr(event, attr)
            if value:
                item[attr] = _s(value)
        for attr in ("country", "region", "city"):
            value = getattr(event.geo, attr)
            if value:
                item[attr] = _s(value)
        if event.props:
            item["props"] = {"M": {k: _s(v) for k, v in event.props.items()}}
        if event.client_ts_ms is not None:
            item["client_ts"] = _n(event.client_ts_ms)
        return item

    def put_item(self, item: dict[str, Any]) -> bool:
        """Store one stored-form item; False when it replaced one with the same key.

        Keys are deterministic (`eid:<client event id>`, or the id a deferred hit already
        carries), so a retried or replayed hit lands on its own key and is stored once.
        The write is unconditional, as `/collect`'s BatchWriteItem has to be: the latest
        copy of a retried hit wins, and `ALL_OLD` (free in write capacity) still tells a
        repeat apart for the duplicate metric."""
        response = self.client.put_item(TableName=self.table_name, Item=item, ReturnValues="ALL_OLD")
        return "Attributes" not in response

    def put_many(self, events: Sequence[TrackedEvent], retention_seconds: int) -> tuple[int, list[dict[str, Any]]]:
        """Store events with BatchWriteItem (repeated keys in one call are stored once).
        Returns how many were written and the items that could not be, for the fallback queue."""
        unique: dict[tuple[str, str], TrackedEvent] = {}
        for event in events:
            unique.setdefault((event.visitor_id, event.event_id), event)
        requests = [{"PutRequest": {"Item": self.to_item(e, retention_seconds)}} for e in unique.values()]
        try:
            _batch_write(self.client, self.table_name, requests)
        except WriteIncomplete as incomplete:
            unwritten = [request["PutRequest"]["Item"] for request in incomplete.remaining]
            return len(requests) - len(unwritten), unwritten
        return len(requests), []

    def delete_visitors(self, visitor_ids: Iterable[str]) -> int:
        """Delete every item (events and traits) of each visitor; returns how many."""
        keys: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for visitor_id in visitor_ids:
            pages = paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression="#v = :v",
                ExpressionAttributeNames={"#v": VISITOR_KEY, "#e": EVENT_KEY},
                ExpressionAttributeValues={":v": _s(visitor_id)},
                ProjectionExpression="#v, #e",
            )
            for page in pages:
                keys.extend(page.get("Items", []))
        _batch_write(self.client, self.table_name, [{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def scan(self, segment: int = 0, total_segments: int = 1) -> Iterator[dict[str, Any]]:
        """Every item of one parallel-scan segment, page by page."""
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        if total_segments > 1:
            kwargs.update(Segment=segment, TotalSegments=total_segments)
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(**kwargs):
            yield from page.get("Items", [])


def record_from_item(item: Mapping[str, Any]) -> tuple[str, EventRecord | TraitRecord]:
    """(visitor_id, record) of a stored events-table item."""
    visitor_id = item[VISITOR_KEY]["S"]
    expires = item.get(EXPIRES_AT)
    expires_at = int(expires["N"]) if expires else None
    ts_ms = int(item["ts"]["N"])
    sort_key = item[EVENT_KEY]["S"]
    if sort_key.startswith(TRAIT_PREFIX):
        raw = item["value"]
        value: object = raw.get("S", raw.get("BOOL"))
        if "N" in raw:
            value = float(raw["N"])
        return visitor_id, TraitRecord(sort_key[len(TRAIT_PREFIX) :], value, ts_ms, expires_at)

    def text(name: str) -> str | None:
        attr = item.get(name)
        return attr["S"] if attr else None

    props = item.get("props")
    return visitor_id, EventRecord(
        ts_ms=ts_ms,
        name=item["name"]["S"],
        url=text("url"),
        ref=text("ref"),
        props={k: v["S"] for k, v in props["M"].items()} if props else {},
        country=text("country"),
        region=text("region"),
        city=text("city"),
        device=text("device"),
        expires_at=expires_at,
    )


class MembershipStore:
    """The membership table: the segments each visitor is in, for one-read lookups."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def get(self, visitor_id: str, now_s: float | None = None) -> list[str]:
        """The visitor's segments; none once the membership's TTL has passed, even if
        DynamoDB has not deleted the item yet (it may take days)."""
        response = self.client.get_item(
            TableName=self.table_name,
            Key={MEMBERSHIP.partition_key: _s(visitor_id)},
            ProjectionExpression="#s, #t",
            ExpressionAttributeNames={"#s": "segments", "#t": MEMBERSHIP_EXPIRES_AT},
        )
        item = response.get("Item")
        return _live_segments(item, time.time() if now_s is None else now_s) if item else []

    def get_many(
        self, visitor_ids: Sequence[str], max_attempts: int = 8, now_s: float | None = None
    ) -> dict[str, list[str]]:
        """Segments of each visitor (absent and expired ones left out): BatchGetItem per
        100 ids, unprocessed keys retried with backoff."""
        now_s = time.time() if now_s is None else now_s
        found: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(visitor_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{MEMBERSHIP.partition_key: _s(v)} for v in unique[start : start + BATCH_GET_LIMIT]],
                    "ProjectionExpression": "#v, #s, #t",
                    "ExpressionAttributeNames": {
                        "#v": MEMBERSHIP.partition_key,
                        "#s": "segments",
                        "#t": MEMBERSHIP_EXPIRES_AT,
                    },
                }
            }
            attempt = 0
            while keys:
                response = self.client.batch_get_item(RequestItems=keys)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    segments = _live_segments(item, now_s)
                    if segments:
                        found[item[MEMBERSHIP.partition_key]["S"]] = segments
                keys = response.get("UnprocessedKeys") or {}
                if keys:
                    attempt += 1
                    if attempt >= max_attempts:
                        raise RuntimeError("membership lookup keys still unprocessed")
                    _backoff(attempt)
        return found

    def scan(self) -> Iterator[tuple[str, Membership]]:
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                expires = item.get(MEMBERSHIP_EXPIRES_AT)
                yield (
                    item[MEMBERSHIP.partition_key]["S"],
                    Membership(frozenset(item["segments"]["SS"]), int(expires["N"]) if expires else None),
                )

    def apply(self, changes: Mapping[str, Membership | None], build_id: str) -> int:
        """Write the new membership of each changed visitor (None or no segments deletes
        the visitor). Returns the number of BatchWriteItem calls."""
        requests: list[dict[str, Any]] = []
        for visitor_id, membership in sorted(changes.items()):
            key = {MEMBERSHIP.partition_key: _s(visitor_id)}
            if membership is not None and membership.segments:
                item = {**key, "segments": {"SS": sorted(membership.segments)}, "build_id": _s(build_id)}
                if membership.expires_at is not None:
                    item[MEMBERSHIP_EXPIRES_AT] = _n(membership.expires_at)
                requests.append({"PutRequest": {"Item": item}})
            else:
                requests.append({"DeleteRequest": {"Key": key}})
        return _batch_write(self.client, self.table_name, requests)


@dataclass(frozen=True)
class Membership:
    """A visitor's segments, and when the data behind them expires (epoch seconds): the
    latest expiry of the visitor's records, after which it is in no segment."""

    segments: frozenset[str]
    expires_at: int | None = None


def _live_segments(item: Mapping[str, Any], now_s: float) -> list[str]:
    expires = item.get(MEMBERSHIP_EXPIRES_AT)
    if expires is not None and int(expires["N"]) <= now_s:
        return []
    return sorted(item["segments"]["SS"])


class PartnerStore:
    """The partners table: one item per key, addressed by the key's hash."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def add(self, key_hash: str, name: str, created_at: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={PARTNERS.partition_key: _s(key_hash), "name": _s(name), "created_at": _s(created_at)},
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": PARTNERS.partition_key},
        )

    def get(self, key_hash: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table_name, Key={PARTNERS.partition_key: _s(key_hash)})
        item = response.get("Item")
        return None if item is None else self._partner(item)

    def list(self) -> list[dict[str, Any]]:
        partners: list[dict[str, Any]] = []
        for page in self.client.get_paginator("scan").paginate(TableName=self.table_name):
            partners.extend(self._partner(item) for item in page.get("Items", []))
        return sorted(partners, key=lambda p: (p["name"], p["created_at"]))

    @staticmethod
    def _partner(item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "key_hash": item[PARTNERS.partition_key]["S"],
            "name": item["name"]["S"],
            "created_at": item["created_at"]["S"],
            "revoked_at": item["revoked_at"]["S"] if "revoked_at" in item else None,
        }

    def revoke(self, name: str, revoked_at: str) -> int:
        """Revoke every active key of `name`; returns how many were revoked."""
        return len(self.revoke_keys(name, revoked_at))

    def revoke_keys(self, name: str, revoked_at: str) -> tuple[str, ...]:
        """Revoke every active key of `name`; returns the hashes of the keys revoked."""
        active = tuple(p["key_hash"] for p in self.list() if p["name"] == name and p["revoked_at"] is None)
        for hashed in active:
            self.client.update_item(
                TableName=self.table_name,
                Key={PARTNERS.partition_key: _s(hashed)},
                UpdateExpression="SET revoked_at = :t",
                ExpressionAttributeValues={":t": _s(revoked_at)},
            )
        return active


class LinesWriter:
    """Gzip text, one line at a time, spooled to a temporary file past a few MB, so a
    shard's output never has to fit in memory."""

    SPOOL_BYTES = 256 * 1024

    def __init__(self, header: str | None = None) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115 - closed by upload_lines
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", mtime=0)
        self.lines = 0
        if header is not None:
            self._gzip.write(header.encode() + b"\n")

    def write(self, line: str) -> None:
        self._gzip.write(line.encode() + b"\n")
        self.lines += 1

    def finish(self) -> Any:
        """The compressed content, rewound, to upload."""
        self._gzip.close()
        self._file.seek(0)
        return self._file


class SegmentsBucket:
    """The segments bucket: definitions, builds, and the latest-build pointer."""

    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def definition_files(self) -> dict[str, str]:
        """Every definition file under segments/ as key -> text."""
        files: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=DEFINITIONS_PREFIX
        ):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith((".json", ".yaml", ".yml")):
                    files[key] = self.get_bytes(key).decode("utf-8")
        return files

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_json_if_exists(self, key: str) -> Any | None:
        try:
            return self.get_json(key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def put_json(self, key: str, document: Any) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def put_members(self, key: str, visitor_ids: Iterable[str]) -> None:
        """A part file: gzip CSV with header `uid`, one visitor per line."""
        writer = LinesWriter(header="uid")
        for visitor_id in visitor_ids:
            writer.write(visitor_id)
        self.upload_lines(key, writer, content_type="text/csv")

    def upload_lines(self, key: str, writer: LinesWriter, *, content_type: str) -> None:
        """Upload a finished LinesWriter (multipart when large, by boto3's transfer manager)."""
        body = writer.finish()
        try:
            self.client.upload_fileobj(
                body, self.bucket, key, ExtraArgs={"ContentType": content_type, "ContentEncoding": "gzip"}
            )
        finally:
            body.close()

    def iter_lines(self, key: str) -> Iterator[str]:
        """The lines of a gzip text object, streamed (never the whole object in memory)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        with gzip.GzipFile(fileobj=body, mode="rb") as lines:
            for raw in lines:
                line = raw.rstrip(b"\n").decode()
                if line:
                    yield line

    def read_members(self, key: str) -> Iterator[str]:
        """The visitor ids of a part file (its header skipped)."""
        lines = self.iter_lines(key)
        next(lines, None)
        yield from lines

    def build_ids(self) -> list[str]:
        """The ids of every build under builds/ (complete or not)."""
        ids: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=BUILDS_PREFIX, Delimiter="/"
        ):
            ids.extend(p["Prefix"][len(BUILDS_PREFIX) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return ids

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`, a thousand per request."""
        deleted = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys: list[Any] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted

    def latest(self) -> Any | None:
        return self.get_json_if_exists(LATEST_KEY)

    def latest_if_changed(self, etag: str | None) -> tuple[bool, str | None, Any | None]:
        """(changed, ETag, latest.json) in one request: S3 answers 304, without a body,
        while `latest.json` still has the ETag the caller holds."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": LATEST_KEY}
        if etag is not None:
            request["IfNoneMatch"] = etag
        try:
            response = self.client.get_object(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("304", "NotModified"):
                return False, etag, None
            if code in ("NoSuchKey", "404"):
                return etag is not None, None, None
            raise
        return True, response["ETag"], json.loads(response["Body"].read())


# DynamoDB refuses items over 400 KB; a catalog compressed to more than this is stored
# as the pointer alone (build, evaluation time, manifest key) and read from S3.
CATALOG_SEGMENTS_MAX_BYTES = 350_000
# What the lookup needs of a manifest's segment: everything but its part files.
CATALOG_SEGMENT_FIELDS = ("id", "name", "description", "size", "destinations")


class _HasDynamoDBClient(Protocol):
    @property
    def client(self) -> DynamoDBClient: ...


@dataclass(frozen=True)
class StoredCatalog:
    """The catalog item as stored: the published build, its manifest's key and, unless
    the catalog was too large for an item, its segments gzip-compressed."""

    build_id: str
    evaluated_at: str
    manifest_key: str
    compressed_segments: bytes | None

    def segments(self) -> list[dict[str, Any]] | None:
        """The manifest's segments without their files; None for a pointer-only item.
        Decompressed only when asked, so an unchanged build costs no parsing."""
        if self.compressed_segments is None:
            return None
        segments: list[dict[str, Any]] = json.loads(gzip.decompress(self.compressed_segments))
        return segments


def compress_catalog_segments(manifest: Mapping[str, Any]) -> bytes:
    segments = [
        {field: segment[field] for field in CATALOG_SEGMENT_FIELDS if field in segment}
        for segment in manifest["segments"]
    ]
    return gzip.compress(json.dumps(segments, separators=(",", ":")).encode(), mtime=0)


class CatalogStore:
    """The catalog table's one item: the newest published build's catalog, a copy of
    `latest.json` and its manifest, so the lookup learns it with one GetItem on the
    DynamoDB client it has anyway instead of creating an S3 client.

    `same_client_as` shares another adapter's (lazy) client: the lookup's catalog and
    membership reads then use one client and one connection pool."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        same_client_as: _HasDynamoDBClient | None = None,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._same_client_as = same_client_as

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = self._same_client_as.client if self._same_client_as is not None else dynamodb_client()
        return self._client

    def put(self, latest: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
        """Store the catalog of the build `latest` (a `latest.json` document) points at.

        False, and nothing written, when the item already holds a newer build: a publish
        that ran late never rolls the catalog back. The same build may be written again,
        so a publish run again after a failure heals its item."""
        build_id = str(latest["build_id"])
        if manifest["build_id"] != build_id:
            raise ValueError(f"manifest of build {manifest['build_id']} given for build {build_id}")
        item: dict[str, Any] = {
            CATALOG.partition_key: _s(CATALOG_ITEM_NAME),
            "build_id": _s(build_id),
            "evaluated_at": _s(str(manifest["evaluated_at"])),
            "manifest": _s(str(latest["manifest"])),
        }
        segments = compress_catalog_segments(manifest)
        if len(segments) <= CATALOG_SEGMENTS_MAX_BYTES:
            item["segments"] = {"B": segments}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                # `name` is a reserved word of DynamoDB's expressions.
                ConditionExpression="attribute_not_exists(#n) OR #b <= :b",
                ExpressionAttributeNames={"#n": CATALOG.partition_key, "#b": "build_id"},
                ExpressionAttributeValues={":b": _s(build_id)},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self) -> StoredCatalog | None:
        """The stored catalog, or None when no build has written one: one eventually
        consistent GetItem."""
        response = self.client.get_item(TableName=self.table_name, Key={CATALOG.partition_key: _s(CATALOG_ITEM_NAME)})
        item = response.get("Item")
        if item is None:
            return None
        segments = item.get("segments")
        return StoredCatalog(
            build_id=item["build_id"]["S"],
            evaluated_at=item["evaluated_at"]["S"],
            manifest_key=item["manifest"]["S"],
            compressed_segments=bytes(segments["B"]) if segments else None,
        )


class FallbackQueue:
    """Hits DynamoDB would not take even after retries, kept durably in SQS until a
    replay (the replay function in AWS, `dmp replay` anywhere) writes them."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client("sqs")
        return self._client

    def defer(self, items: Sequence[dict[str, Any]]) -> None:
        """One message per request: at most 50 events of <= 1 KB, far below SQS's 256 KB."""
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"items": list(items)}))

    def receive(self, wait_seconds: int = 1, max_messages: int = 10) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
        )
        return list(response.get("Messages", []))

    def delete(self, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)


def deferred_items(message_body: str) -> list[dict[str, Any]]:
    """The stored-form items of one fallback message."""
    return list(json.loads(message_body)["items"])
