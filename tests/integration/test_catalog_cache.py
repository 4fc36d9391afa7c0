"""The lookup's catalog in the warm Lambda: checked at most every `refresh_seconds` with
one GetItem of the catalog item that publish writes, and read from S3 only when that
item cannot answer (too large for an item, or not written by any build yet)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from functions.core.documents import Manifest, ManifestSegment
from functions.core.layout import LATEST_KEY, manifest_key
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.catalog import CatalogStore, compress_catalog_segments
from functions.lookup.catalog import CatalogCache

OLDER, NEWER = "20261128T100000Z", "20261128T110000Z"


def manifest_of(build_id: str, size: int, segments: int = 1, description: str = "") -> dict[str, Any]:
    entries = [
        {
            "id": f"paris-{i}" if i else "paris",
            "name": "Paris",
            "description": description,
            "destinations": ["demo-dsp"],
            "size": size,
            "files": [f"builds/{build_id}/segments/paris-{i}/part-00000.csv.gz"],
        }
        for i in range(segments)
    ]
    return {"build_id": build_id, "evaluated_at": "2026-11-28T10:00:00Z", "shards": 1, "segments": entries}


def publish_to_s3(bucket: SegmentsBucket, manifest: dict[str, Any]) -> dict[str, str]:
    """The build's manifest and `latest.json`, as publish writes them; returns latest.json."""
    build_id = manifest["build_id"]
    latest = {"build_id": build_id, "manifest": manifest_key(build_id)}
    bucket.put_json(manifest_key(build_id), manifest)
    bucket.put_json(LATEST_KEY, latest)
    return latest


def publish(bucket: SegmentsBucket, catalog: CatalogStore, manifest: dict[str, Any]) -> None:
    """A whole publish: S3, then the catalog item."""
    publish_to_s3(bucket, manifest)
    assert catalog.put(Manifest.from_json(manifest))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def requests_of(client: Any, service: str) -> list[str]:
    """The API calls `client` makes from now on, by operation name."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register(f"before-call.{service}.*", count)
    return calls


@pytest.fixture
def published(aws: Any) -> tuple[SegmentsBucket, CatalogStore]:
    """The older build published (S3 and catalog item), through clients of their own."""
    bucket, catalog = SegmentsBucket(aws.bucket), CatalogStore(aws.catalog_table)
    publish(bucket, catalog, manifest_of(OLDER, size=3))
    return bucket, catalog


def test_with_the_catalog_item_each_refresh_is_one_get_item_and_no_s3_client(aws, published, s3_clients_created):
    # GIVEN a published build and the lookup's cache, on fresh adapters as in a cold start
    store = CatalogStore(aws.catalog_table)
    dynamodb = requests_of(store.client, "dynamodb")
    clock = Clock()
    cache = CatalogCache(store, SegmentsBucket(aws.bucket), refresh_seconds=30, clock=clock)
    # WHEN the catalog is first asked for
    catalog = cache.get()
    # THEN it is the build's, from one GetItem, and no S3 client was even created
    assert (catalog.build_id, catalog.evaluated_at) == (OLDER, "2026-11-28T10:00:00Z")
    assert catalog.segments["paris"].size == 3
    assert catalog.segments["paris"].destinations == frozenset({"demo-dsp"})
    assert dynamodb == ["GetItem"]
    # AND within the refresh time nothing is asked at all
    dynamodb.clear()
    clock.now += 29
    assert cache.get() is catalog
    assert dynamodb == []
    # AND after it, an unchanged build costs one GetItem and keeps the catalog it has
    clock.now += 2
    assert cache.get() is catalog
    assert dynamodb == ["GetItem"]
    assert s3_clients_created == []


def test_a_new_build_is_picked_up_at_the_first_check_after_refresh_seconds(aws, published, s3_clients_created):
    bucket, catalog_store = published
    clock = Clock()
    cache = CatalogCache(CatalogStore(aws.catalog_table), SegmentsBucket(aws.bucket), refresh_seconds=30, clock=clock)
    assert cache.get().build_id == OLDER
    # GIVEN a newer build published meanwhile
    publish(bucket, catalog_store, manifest_of(NEWER, size=5))
    # WHEN the refresh time has not passed, the cache still serves the older build
    clock.now += 10
    assert cache.get().build_id == OLDER
    # THEN at the first check after it, the newer one, still without S3
    clock.now += 21
    catalog = cache.get()
    assert (catalog.build_id, catalog.segments["paris"].size) == (NEWER, 5)
    assert s3_clients_created == []


def large_manifest(build_id: str) -> dict[str, Any]:
    """A catalog that does not fit a DynamoDB item (400 KB) even compressed: random descriptions."""
    rng = random.Random(7)
    manifest = manifest_of(build_id, size=1, segments=2000)
    for segment in manifest["segments"]:
        segment["description"] = rng.randbytes(200).hex()
    return manifest


def test_a_catalog_too_large_for_an_item_is_stored_as_the_pointer_alone(aws):
    # GIVEN a build whose compressed catalog is over the item's budget
    manifest = large_manifest(NEWER)
    assert len(compress_catalog_segments(Manifest.from_json(manifest))) > 400_000
    store = CatalogStore(aws.catalog_table)
    # WHEN publish writes its item
    written = store.put(Manifest.from_json(manifest))
    # THEN DynamoDB takes it, holding the build and its manifest's key but no segments
    assert written
    stored = store.get()
    assert stored is not None
    assert (stored.build_id, stored.manifest_key, stored.manifest()) == (NEWER, manifest_key(NEWER), None)


def test_a_pointer_only_item_makes_the_cache_read_the_manifest_from_s3(aws, s3_clients_created):
    # GIVEN a published build whose catalog item holds only the pointer
    bucket, store = SegmentsBucket(aws.bucket), CatalogStore(aws.catalog_table)
    publish(bucket, store, large_manifest(NEWER))
    cache_bucket = SegmentsBucket(aws.bucket)
    s3 = requests_of(cache_bucket.client, "s3")
    dynamodb = requests_of(store.client, "dynamodb")
    # WHEN the lookup's cache loads it
    catalog = CatalogCache(store, cache_bucket, refresh_seconds=30).get()
    # THEN it read the item, then the manifest it names (not latest.json)
    assert (dynamodb, s3) == (["GetItem"], ["GetObject"])
    assert catalog.build_id == NEWER
    assert len(catalog.segments) == 2000


def test_without_a_catalog_item_the_catalog_follows_latest_json(aws):
    # GIVEN a stack whose builds ran before the catalog table: latest.json, no item
    bucket = SegmentsBucket(aws.bucket)
    clock = Clock()
    cache = CatalogCache(CatalogStore(aws.catalog_table), bucket, refresh_seconds=30, clock=clock)
    # AND no build yet: an empty catalog
    assert cache.get().build_id is None
    # WHEN a build is published to S3 only and the refresh time has passed
    publish_to_s3(bucket, manifest_of(OLDER, size=3))
    clock.now += 31
    calls = requests_of(bucket.client, "s3")
    # THEN the catalog is that build's (the pointer, then its manifest)
    assert cache.get().segments["paris"].size == 3
    assert calls == ["GetObject", "GetObject"]
    # AND within the refresh time nothing is asked at all
    calls.clear()
    clock.now += 10
    assert cache.get().build_id == OLDER
    assert calls == []
    # AND after it, an unchanged pointer costs one conditional request
    clock.now += 31
    assert cache.get().build_id == OLDER
    assert calls == ["GetObject"]
    # AND a new build is picked up at the next check
    publish_to_s3(bucket, manifest_of(NEWER, size=5))
    clock.now += 31
    catalog = cache.get()
    assert (catalog.build_id, catalog.segments["paris"].size) == (NEWER, 5)


def test_once_a_build_writes_the_item_the_cache_leaves_latest_json(aws):
    # GIVEN a cache that followed latest.json while there was no item
    bucket, store = SegmentsBucket(aws.bucket), CatalogStore(aws.catalog_table)
    publish_to_s3(bucket, manifest_of(OLDER, size=3))
    clock = Clock()
    cache = CatalogCache(store, bucket, refresh_seconds=30, clock=clock)
    assert cache.get().build_id == OLDER
    # WHEN the next build writes its catalog item too
    publish(bucket, store, manifest_of(NEWER, size=5))
    clock.now += 31
    s3 = requests_of(bucket.client, "s3")
    # THEN the cache serves it from the item, asking S3 nothing
    assert cache.get().segments["paris"].size == 5
    assert s3 == []


# -- the item's writes ------------------------------------------------------------


def test_the_catalog_item_keeps_what_the_lookup_needs_of_the_manifest(aws):
    # GIVEN a build's manifest (with its part files)
    manifest = manifest_of(OLDER, size=3, description="Parisians")
    store = CatalogStore(aws.catalog_table)
    # WHEN its catalog is stored
    store.put(Manifest.from_json(manifest))
    # THEN the item has the build, its time, its manifest key and the segments without files
    stored = store.get()
    assert stored is not None
    assert (stored.build_id, stored.evaluated_at, stored.manifest_key) == (
        OLDER,
        "2026-11-28T10:00:00Z",
        manifest_key(OLDER),
    )
    stored_manifest = stored.manifest()
    assert stored_manifest is not None
    assert stored_manifest.segments == (
        ManifestSegment(id="paris", name="Paris", description="Parisians", destinations=("demo-dsp",), size=3),
    )


def test_an_older_build_never_replaces_a_newer_catalog_item(aws):
    store = CatalogStore(aws.catalog_table)
    # GIVEN the newer build's catalog stored
    assert store.put(Manifest.from_json(manifest_of(NEWER, size=5)))
    # WHEN a late publish of an older build writes its own
    written = store.put(Manifest.from_json(manifest_of(OLDER, size=3)))
    # THEN it is refused and the item still holds the newer build
    assert written is False
    stored = store.get()
    assert stored is not None and stored.build_id == NEWER
    # AND the newer build may write its item again (a publish run again)
    assert store.put(Manifest.from_json(manifest_of(NEWER, size=6)))
    stored = store.get()
    assert stored is not None and stored.build_id == NEWER
    stored_manifest = stored.manifest()
    assert stored_manifest is not None and [segment.size for segment in stored_manifest.segments] == [6]
