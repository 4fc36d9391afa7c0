"""A partner's exports in the segments bucket, as the lookup hands them out
(`GET /v1/exports/latest`): the partner's `exports/<partner>/latest.json`, and short-lived
pre-signed GET URLs of the two files it names.

Only that route uses this store, so only a container that answers it creates an S3
client (at its first call): the bidding routes' cold start never pays for one. Its URLs
are signed with Signature Version 4 (S3 refuses version 2, boto3's default for
pre-signing, on buckets created since 2020) for the bucket's regional endpoint. Every
key read or signed lies under the calling partner's own prefix; a pointer naming
anything else is refused, never signed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from botocore.config import Config
from botocore.exceptions import ClientError

from functions.core import layout
from functions.core.documents import DocumentError, ExportPointer
from functions.core.partners import is_partner_name
from functions.core.storage import aws
from functions.core.storage.aws import Adapter, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = ("NoSuchKey", "404")


def signing_config(env: Mapping[str, str] | None = None) -> Config:
    """SigV4 at the bucket's own virtual host (`<bucket>.s3.<region>.amazonaws.com`); an
    emulator's endpoint (`AWS_ENDPOINT_URL`: moto, `dmp serve`) keeps path-style URLs,
    as `<bucket>.localhost` would not resolve."""
    env = os.environ if env is None else env
    emulated = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    return Config(signature_version="s3v4", s3={"addressing_style": "path" if emulated else "virtual"})


class PartnerExports(Adapter["S3Client"]):
    service = "s3"

    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        super().__init__(client)
        self.bucket = bucket

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = cast("S3Client", aws.create_client(self.service, signing_config()))
        return self._client

    def latest(self, partner: str) -> ExportPointer | None:
        """The partner's newest export, or None before its first (one GetObject). Raises
        DocumentError for a pointer that is not one, or names a file outside the
        partner's own exports."""
        if not is_partner_name(partner):  # `[a-z0-9][a-z0-9_-]*`: no `/`, no way out of its prefix
            raise ValueError(f"not a partner name: {partner!r}")
        key = layout.export_latest_key(partner)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in _MISSING:
                return None
            raise
        try:
            pointer = ExportPointer.from_json(json.loads(body))
        except DocumentError:
            raise
        except (ValueError, TypeError) as error:  # not JSON, or a field of the wrong type
            raise DocumentError(f"{key}: {error}") from error
        own = layout.export_partner_prefix(partner)
        for name, file in (("full", pointer.full), ("delta", pointer.delta)):
            if not file.key.startswith(own):
                raise DocumentError(f"{key}: {name!r} names a file outside {own}: {file.key!r}")
        return pointer

    def download_url(self, key: str, *, expires_in: int) -> str:
        """A pre-signed GET URL of the gzip file `key`, valid for `expires_in` seconds
        (signed here: no request). It serves the file's own bytes whatever the object's
        metadata: stored with `Content-Encoding: gzip`, most HTTP clients would unzip it
        on the way and save plain CSV under a `.csv.gz` name."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": "application/gzip",
                "ResponseContentEncoding": "identity",
                "ResponseContentDisposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
            },
            ExpiresIn=expires_in,
        )
