"""A local stack with one published build, for tests that start a fresh interpreter to
watch a cold start: importing this module loads neither pydantic nor the lookup API."""

from __future__ import annotations

import os

from functions.lookup.catalog import Catalog, CatalogSegment

CATALOG = Catalog(
    build_id="20261128T100000Z",
    evaluated_at="2026-11-28T10:00:00Z",
    segments={
        "london": CatalogSegment("london", "Londoners", "", 3, frozenset({"demo-dsp"})),
        "paris": CatalogSegment("paris", "Parisians", "", 1, frozenset({"other-ssp"})),
    },
)
# demo-dsp's own id of the member (ID sync).
PARTNER_UID = "dsp:london.1~a"


def seed_local_stack() -> None:
    """The local stack's resources with one published build, one member and demo-dsp's
    id of it, and the functions' environment pointing at them (run inside the fresh
    interpreter, under moto)."""
    from dmp.local import create_resources
    from functions.core.documents import Manifest, ManifestSegment
    from functions.core.storage.bucket import SegmentsBucket
    from functions.core.storage.catalog import CatalogStore
    from functions.core.storage.id_map import IdMapStore
    from functions.core.storage.membership import Membership, MembershipChange, MembershipStore

    target = create_resources(None, region="eu-west-1")
    os.environ.update(target.environment())
    assert CATALOG.build_id is not None and CATALOG.evaluated_at is not None
    manifest = Manifest(
        build_id=CATALOG.build_id,
        evaluated_at=CATALOG.evaluated_at,
        segments=tuple(
            ManifestSegment(s.id, s.name, s.description, tuple(sorted(s.destinations)), s.size)
            for s in CATALOG.segments.values()
        ),
    )
    bucket = SegmentsBucket(target.bucket)
    bucket.put_manifest(manifest)
    bucket.put_latest(manifest.build_id)
    CatalogStore(target.catalog_table).put(manifest)
    MembershipStore(target.membership_table).apply(
        {"visitor-london-1": MembershipChange(Membership(frozenset({"london"})), None)}, CATALOG.build_id
    )
    IdMapStore(target.id_map_table).put("demo-dsp", PARTNER_UID, "visitor-london-1", at_s=0, expires_at=2**40)
