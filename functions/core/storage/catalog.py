"""The catalog table's one item: the newest published build's catalog, a copy of
`latest.json` and its manifest, so the lookup learns it with one GetItem on the DynamoDB
client it has anyway instead of creating an S3 client."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from functions.core.documents import Manifest, ManifestSegment
from functions.core.layout import manifest_key
from functions.core.storage.aws import TableAdapter, error_code, s
from functions.core.tables import CATALOG, CATALOG_ITEM_NAME

# DynamoDB refuses items over 400 KB; a catalog compressed to more than this is stored
# as the pointer alone (build, evaluation time, manifest key) and read from S3.
CATALOG_SEGMENTS_MAX_BYTES = 350_000


@dataclass(frozen=True)
class StoredCatalog:
    """The catalog item as stored: the published build, its manifest's key and, unless
    the catalog was too large for an item, its segments gzip-compressed."""

    build_id: str
    evaluated_at: str
    manifest_key: str
    compressed_segments: bytes | None

    def manifest(self) -> Manifest | None:
        """The build's manifest without part files; None for a pointer-only item.
        Decompressed only when asked, so an unchanged build costs no parsing."""
        if self.compressed_segments is None:
            return None
        segments = json.loads(gzip.decompress(self.compressed_segments))
        return Manifest(self.build_id, self.evaluated_at, tuple(ManifestSegment.from_json(s) for s in segments))


def compress_catalog_segments(manifest: Manifest) -> bytes:
    """What the lookup needs of each segment: everything but its part files."""
    segments = []
    for segment in manifest.segments:
        document = segment.to_json()
        del document["files"]
        segments.append(document)
    return gzip.compress(json.dumps(segments, separators=(",", ":")).encode(), mtime=0)


class CatalogStore(TableAdapter):
    def put(self, manifest: Manifest) -> bool:
        """Store the catalog of the published build `manifest` describes.

        False, and nothing written, when the item already holds a newer build: a publish
        that ran late never rolls the catalog back. The same build may be written again,
        so a publish run again after a failure heals its item."""
        item = {
            CATALOG.partition_key: s(CATALOG_ITEM_NAME),
            "build_id": s(manifest.build_id),
            "evaluated_at": s(manifest.evaluated_at),
            "manifest": s(manifest_key(manifest.build_id)),
        }
        segments = compress_catalog_segments(manifest)
        if len(segments) <= CATALOG_SEGMENTS_MAX_BYTES:
            item["segments"] = {"B": segments}  # type: ignore[dict-item]
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,  # type: ignore[arg-type]
                # `name` is a reserved word of DynamoDB's expressions.
                ConditionExpression="attribute_not_exists(#n) OR #b <= :b",
                ExpressionAttributeNames={"#n": CATALOG.partition_key, "#b": "build_id"},
                ExpressionAttributeValues={":b": s(manifest.build_id)},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self) -> StoredCatalog | None:
        """The stored catalog, or None when no build has written one: one eventually
        consistent GetItem."""
        response = self.client.get_item(TableName=self.table_name, Key={CATALOG.partition_key: s(CATALOG_ITEM_NAME)})
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
