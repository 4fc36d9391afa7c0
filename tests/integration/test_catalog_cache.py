"""The lookup's catalog in the warm Lambda: reloaded only when `latest.json` changes, and
checked at most every `refresh_seconds`, with a single conditional request."""

from __future__ import annotations

from typing import Any

from functions.core.storage import SegmentsBucket
from functions.core.tables import LATEST_KEY, manifest_key
from functions.lookup.catalog import CatalogCache


def publish(bucket: SegmentsBucket, build_id: str, size: int) -> None:
    segment = {"id": "paris", "name": "Paris", "description": "", "destinations": ["demo-dsp"], "size": size}
    manifest = {"build_id": build_id, "evaluated_at": "2026-11-28T10:00:00Z", "segments": [{**segment, "files": []}]}
    bucket.put_json(manifest_key(build_id), manifest)
    bucket.put_json(LATEST_KEY, {"build_id": build_id, "manifest": manifest_key(build_id)})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def s3_requests(bucket: SegmentsBucket) -> list[str]:
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    bucket.client.meta.events.register("before-call.s3.*", count)
    return calls


def test_the_catalog_follows_latest_json_with_one_request_while_it_is_unchanged(aws):
    bucket = SegmentsBucket(aws.bucket)
    clock = Clock()
    cache = CatalogCache(bucket, refresh_seconds=30, clock=clock)
    # GIVEN no build yet: an empty catalog
    assert cache.get().build_id is None
    # WHEN a build is published and the refresh time has passed
    publish(bucket, "20261128T100000Z", size=3)
    clock.now += 31
    calls = s3_requests(bucket)
    # THEN the catalog is that build's (the pointer, then its manifest)
    assert cache.get().segments["paris"].size == 3
    assert calls == ["GetObject", "GetObject"]
    # AND within the refresh time nothing is asked at all
    calls.clear()
    clock.now += 10
    assert cache.get().build_id == "20261128T100000Z"
    assert calls == []
    # AND after it, an unchanged pointer costs one conditional request
    clock.now += 31
    assert cache.get().build_id == "20261128T100000Z"
    assert calls == ["GetObject"]
    # AND a new build is picked up at the next check
    publish(bucket, "20261128T110000Z", size=5)
    clock.now += 31
    catalog = cache.get()
    assert (catalog.build_id, catalog.segments["paris"].size) == ("20261128T110000Z", 5)
