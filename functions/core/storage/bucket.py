"""The segments bucket: segment definitions, builds (manifest, part files, the builder's
working state) and `latest.json`. Keys come from `functions/core/layout.py`; the
documents a publish writes are typed (`functions/core/documents.py`)."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from functions.core import layout
from functions.core.documents import LatestPointer, Manifest, MembershipState
from functions.core.storage.aws import Adapter, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = ("NoSuchKey", "404")


class LinesWriter:
    """Gzip text, one line at a time, spooled to a temporary file past 256 KiB, so a
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


class BuildDocuments:
    """The bucket's typed documents, where the layout puts them, over three JSON
    operations a store provides: the segments bucket, and the tests' in-memory bucket."""

    def get_json(self, key: str) -> Any:
        raise NotImplementedError

    def get_json_if_exists(self, key: str) -> Any | None:
        raise NotImplementedError

    def put_json(self, key: str, document: Any) -> None:
        raise NotImplementedError

    def put_definition(self, segment_id: str, document: dict[str, Any]) -> None:
        self.put_json(layout.definition_key(segment_id), document)

    def manifest(self, build_id: str) -> Manifest:
        return self.manifest_at(layout.manifest_key(build_id))

    def manifest_at(self, key: str) -> Manifest:
        return Manifest.from_json(self.get_json(key))

    def put_manifest(self, manifest: Manifest) -> None:
        self.put_json(layout.manifest_key(manifest.build_id), manifest.to_json())

    def latest(self) -> LatestPointer | None:
        document = self.get_json_if_exists(layout.LATEST_KEY)
        return None if document is None else LatestPointer.from_json(document)

    def put_latest(self, build_id: str) -> LatestPointer:
        """Point `latest.json` at a build: the last write of its publish."""
        pointer = LatestPointer(build_id, layout.manifest_key(build_id))
        self.put_json(layout.LATEST_KEY, pointer.to_json())
        return pointer

    def membership_state(self) -> MembershipState | None:
        document = self.get_json_if_exists(layout.MEMBERSHIP_STATE_KEY)
        return None if document is None else MembershipState.from_json(document)

    def put_membership_state(self, state: MembershipState) -> None:
        self.put_json(layout.MEMBERSHIP_STATE_KEY, state.to_json())


class SegmentsBucket(BuildDocuments, Adapter["S3Client"]):
    service = "s3"

    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        super().__init__(client)
        self.bucket = bucket

    # -- objects ----------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_bytes_if_exists(self, key: str) -> bytes | None:
        try:
            return self.get_bytes(key)
        except ClientError as error:
            if error_code(error) in _MISSING:
                return None
            raise

    def get_json_if_exists(self, key: str) -> Any | None:
        body = self.get_bytes_if_exists(key)
        return json.loads(body) if body is not None else None

    def put_json(self, key: str, document: Any) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def put_text(self, key: str, text: str, *, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type)

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

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from (obj["Key"] for obj in page.get("Contents", []))

    def rewrite_lines(self, key: str, keep: Callable[[str], bool], *, content_type: str) -> int:
        """Rewrite a gzip text object without the lines `keep` refuses, streamed and read
        once; returns how many went. An object that loses nothing is not written."""
        writer = LinesWriter()
        dropped = 0
        for line in self.iter_lines(key):
            if keep(line):
                writer.write(line)
            else:
                dropped += 1
        if dropped:
            self.upload_lines(key, writer, content_type=content_type)
        else:
            writer.finish().close()
        return dropped

    def purge_noncurrent_versions(self, prefix: str) -> int:
        """Delete every earlier version and delete marker under `prefix` (a versioned
        bucket keeps them for 30 days): what erasure removed must not live on in them.
        Data versions go first, markers last, so no deleted object reappears meanwhile."""
        versions: list[Any] = []
        markers: list[Any] = []
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            versions += [
                {"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) if not v["IsLatest"]
            ]
            markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
        doomed = versions + markers
        for start in range(0, len(doomed), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
        return len(doomed)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`, a thousand per request."""
        deleted = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys: list[Any] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted

    # -- segment and source definitions ---------------------------------------------------
    def definition_files(self) -> dict[str, str]:
        """Every definition file under segments/ as key -> text."""
        return self._documents_under(layout.DEFINITIONS_PREFIX)

    def source_files(self) -> dict[str, str]:
        """Every data-source definition under sources/ as key -> text."""
        return self._documents_under(layout.SOURCES_PREFIX)

    def _documents_under(self, prefix: str) -> dict[str, str]:
        files: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith((".json", ".yaml", ".yml")):
                    files[key] = self.get_bytes(key).decode("utf-8")
        return files

    # -- builds -------------------------------------------------------------------------
    def build_ids(self) -> list[str]:
        """The ids of every build under builds/ (complete or not)."""
        ids: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=layout.BUILDS_PREFIX, Delimiter="/"
        ):
            for prefix in page.get("CommonPrefixes", []):
                # A build whose objects are all deleted leaves delete markers in the versioned
                # bucket, which some S3 implementations still list as a prefix.
                if self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix["Prefix"], MaxKeys=1).get("KeyCount"):
                    ids.append(layout.build_id_of_prefix(prefix["Prefix"]))
        return ids

    def delete_build(self, build_id: str) -> int:
        return self.delete_prefix(layout.build_prefix(build_id))

    def latest_if_changed(self, etag: str | None) -> tuple[bool, str | None, LatestPointer | None]:
        """(changed, ETag, latest.json) in one request: S3 answers 304, without a body,
        while `latest.json` still has the ETag the caller holds."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": layout.LATEST_KEY}
        if etag is not None:
            request["IfNoneMatch"] = etag
        try:
            response = self.client.get_object(**request)
        except ClientError as error:
            code = error_code(error)
            if code in ("304", "NotModified"):
                return False, etag, None
            if code in _MISSING:
                return etag is not None, None, None
            raise
        return True, response["ETag"], LatestPointer.from_json(json.loads(response["Body"].read()))
