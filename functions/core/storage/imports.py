"""What the importer needs of AWS beyond the tables: the dropped files (streamed, from a
byte offset, only the version the event named), its reports and checkpoints in the
segments bucket, the sources' definitions, and the continuation of a large file (an
EventBridge event that invokes the importer again, as the file's own event did)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import ClientError

from functions.core.storage.aws import Adapter, error_code
from functions.core.storage.bucket import SegmentsBucket

if TYPE_CHECKING:
    pass

_MISSING = ("NoSuchKey", "404", "NoSuchVersion")
_CHANGED = ("PreconditionFailed", "412")
_PAST_THE_END = ("InvalidRange", "416")
# EventBridge: the importer's own events, matched by the same rule as S3's.
CONTINUATION_SOURCE = "dmp.importer"
CONTINUATION_DETAIL_TYPE = "Import Continued"
SKIP_CHUNK = 256 * 1024


class ObjectChanged(RuntimeError):
    """The object under the key is no longer the version the event named (a newer file
    replaced it: its own event imports it)."""


@dataclass(frozen=True)
class OpenedObject:
    body: BinaryIO
    last_modified: datetime


class _Empty:
    def read(self, amount: int = -1) -> bytes:
        return b""


class ImportBucket(SegmentsBucket):
    """The segments bucket (its JSON documents: sources, reports, checkpoints), and the
    dropped files, streamed."""

    def open_text(self, key: str, etag: str | None, *, start: int, compressed: bool) -> OpenedObject:
        """The object's (decompressed) bytes from offset `start`, streamed. A plain file is
        read from `start` on (a ranged GET); a gzip file cannot be entered mid-stream, so
        it is decompressed from the beginning and the first `start` bytes skipped unread
        by the caller. Raises ObjectChanged when the key holds another version now."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if etag:
            request["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
        if start and not compressed:
            request["Range"] = f"bytes={start}-"
        try:
            response = self.client.get_object(**request)
        except ClientError as error:
            code = error_code(error)
            if code in _CHANGED or code in _MISSING:
                raise ObjectChanged(key) from error
            if code in _PAST_THE_END:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                return OpenedObject(_Empty(), head["LastModified"])  # type: ignore[arg-type]
            raise
        body: Any = response["Body"]
        if compressed:
            body = gzip.GzipFile(fileobj=body, mode="rb")
            skip = start
            while skip > 0:
                skipped = len(body.read(min(skip, SKIP_CHUNK)))
                if not skipped:
                    break
                skip -= skipped
        return OpenedObject(body, response["LastModified"])


class ImportContinuations(Adapter[Any]):
    """Asks for the importer to be invoked again on a file (EventBridge PutEvents on the
    default bus, which the importer's rule matches like the file's own event)."""

    service = "events"

    def continue_import(self, bucket: str, key: str, etag: str | None) -> None:
        detail: Mapping[str, Any] = {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag or ""}}
        response = self.client.put_events(
            Entries=[
                {
                    "Source": CONTINUATION_SOURCE,
                    "DetailType": CONTINUATION_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the continuation of {key}: {response['Entries']}")


def import_event_pattern(bucket: str) -> dict[str, Any]:
    """The EventBridge pattern of the events that invoke the importer: S3's "Object
    Created" of a key under `imports/` in the segments bucket, and the importer's own
    continuations. The CDK rule and the local stack's rule are both made from it."""
    return {
        "source": ["aws.s3", CONTINUATION_SOURCE],
        "detail-type": ["Object Created", CONTINUATION_DETAIL_TYPE],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "imports/"}]}},
    }
