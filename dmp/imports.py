"""`dmp import`: a source's file uploaded to `imports/<source>/<name>`, the very path a
partner's drop takes, so the importer runs on its S3 event (in AWS, and on `dmp serve`'s
emulator alike); then the importer's report, once written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from dmp.local import StackTarget
from functions.core import layout
from functions.importer.logic import ImportFile


class NotImported(ValueError):
    """The file cannot be imported as asked (nothing was uploaded)."""


def import_file(path: Path, source_id: str, target: StackTarget, *, wait_seconds: float = 120) -> dict[str, Any] | None:
    """Upload `path` for `source_id`; the report when it appears within `wait_seconds`."""
    if not path.is_file():
        raise NotImported(f"{path}: no such file")
    key = layout.import_key(source_id, path.name)
    file = ImportFile.of(key)
    if file is None or file.format is None:
        raise NotImported(f"{path.name}: name the file <name>.csv or <name>.jsonl (optionally .gz)")
    s3 = boto3.client("s3", region_name=target.region, endpoint_url=target.aws_endpoint_url)
    try:
        s3.head_object(Bucket=target.bucket, Key=layout.source_key(source_id))
    except ClientError:
        raise NotImported(f"unknown source {source_id!r}: push it first with `dmp sources push`") from None
    etag = s3.put_object(Bucket=target.bucket, Key=key, Body=path.read_bytes())["ETag"].strip('"')
    print(f"uploaded s3://{target.bucket}/{key}")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            report = json.loads(s3.get_object(Bucket=target.bucket, Key=file.report_key)["Body"].read())
        except ClientError:
            report = None
        if report is not None and report.get("etag") == etag:
            print(f"report s3://{target.bucket}/{file.report_key}")
            return dict(report)
        time.sleep(0.5)
    return None
