"""Stage 3, publish: write the manifest and the build's report (report.py: the shards'
counts summed, `report.json` and `report.html`), bring the membership table to the new
build by writing only the visitors whose segment set changed, then write `latest.json` last of the
build's S3 objects, so no reader ever sees half a build; then copy the build's catalog into
the catalog table, where the lookup reads it, and delete builds past the newest
`KEEP_BUILDS`, with the partners' exports of them.

Lookups serve the membership of the build the catalog names: each membership write also
keeps the visitor's membership as of the published build, which lookups go on serving
until the catalog names the new one (functions/core/storage/membership.py).

Every write is idempotent: a publish that fails is simply run again."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from functions.builder.changes import needs_write, read_change_lines
from functions.builder.export import PartnerExport, remove_old_exports
from functions.builder.plan import BuildPlan
from functions.builder.report import publish_report
from functions.builder.shard import ShardResult, base_members
from functions.builder.stores import BuildBucket, BuildStores, CatalogTable
from functions.core import layout
from functions.core.documents import Manifest, ManifestSegment, MembershipState
from functions.core.storage.membership import MembershipChange, Schedule, StoredMembership, needs_item
from functions.core.times import iso

# Published builds kept in the bucket (the newest included), for partners who download
# part files and for looking back; older ones are deleted when a build is published.
KEEP_BUILDS = 24
# Membership changes are written in batches of this many visitors.
APPLY_BATCH = 1000


@dataclass(frozen=True)
class PublishResult:
    """What a publish did; the manifest is what it wrote, without any of this."""

    manifest: Manifest
    # False when a newer build is already published: this one was written, not served.
    published: bool
    # True when the build was found published already (the same scheduled time again).
    repeated: bool = False
    membership_changes: int | None = None
    builds_removed: int = 0
    catalog_written: bool = False
    # The export stage's, per partner, when the same process ran it (`build()`).
    exports: Mapping[str, PartnerExport] = field(default_factory=dict)


def publish(
    plan: BuildPlan, stores: BuildStores, results: list[ShardResult] | None = None, *, report: bool = True
) -> PublishResult:
    bucket = stores.bucket
    if results is None:
        results = shard_results(bucket, plan)
    if sorted(r.shard for r in results) != list(range(plan.shards)):
        raise RuntimeError(f"build {plan.build_id} is missing shard results; nothing published")
    manifest = manifest_of(plan, results)
    bucket.put_manifest(manifest)
    latest = bucket.latest()
    if latest is not None and latest.build_id > plan.build_id:
        # An older evaluation time must not roll the served build back.
        return PublishResult(manifest, published=False)
    if report and (latest is None or latest.build_id != plan.build_id):
        # Before `latest.json`, so a published build has its report; against the build
        # published now. (Found latest already, this is a publish run again after
        # `latest.json`: its report was written then, against the build it replaced.)
        publish_report(
            bucket,
            manifest,
            plan.definitions,
            [r.report for r in results],
            base_build_id=plan.base_build_id,
            previous_build_id=latest.build_id if latest is not None else None,
            keep=KEEP_BUILDS,
        )
    # Mark the table as changing first: a crash in between leaves it marked, and the
    # next build then compares against the table itself instead of trusting diffs.
    bucket.put_membership_state(MembershipState(plan.build_id, complete=False))
    if plan.base_build_id is not None and latest is not None and latest.build_id == plan.base_build_id:
        changed = _apply_shard_changes(plan, stores)
    else:
        changed = _update_membership_from_table(plan, stores, published=latest.build_id if latest else None)
    bucket.put_membership_state(MembershipState(plan.build_id, complete=True))
    bucket.put_latest(plan.build_id)
    # After latest.json, which stays the source of truth: a publish that fails in
    # between is run again, finds its build latest, and so writes the item then.
    catalog_written = publish_catalog(manifest, stores.catalog)
    removed = remove_old_builds(bucket, keep_from=plan.build_id)
    return PublishResult(
        manifest, published=True, membership_changes=changed, builds_removed=removed, catalog_written=catalog_written
    )


def manifest_of(plan: BuildPlan, results: list[ShardResult]) -> Manifest:
    return Manifest(
        build_id=plan.build_id,
        evaluated_at=iso(plan.evaluated_at),
        shards=plan.shards,
        segments=tuple(
            ManifestSegment(
                id=d.id,
                name=d.name,
                description=d.description,
                destinations=tuple(d.destinations),
                size=sum(r.sizes[d.id] for r in results),
                files=tuple(layout.part_key(plan.build_id, d.id, shard) for shard in range(plan.shards)),
            )
            for d in plan.definitions
        ),
        visitors_scanned=sum(r.visitors_scanned for r in results),
    )


def republish(build_id: str, stores: BuildStores) -> PublishResult:
    """A build found already published (the same scheduled time run again): its catalog
    item is written all the same, so an item its publish failed to write is healed."""
    manifest = stores.bucket.manifest(build_id)
    catalog_written = publish_catalog(manifest, stores.catalog)
    return PublishResult(manifest, published=True, repeated=True, catalog_written=catalog_written)


def publish_catalog(manifest: Manifest, catalog: CatalogTable | None) -> bool:
    """Copy the catalog of a published build into the catalog table. False when the table
    already holds a newer build, or there is no catalog table."""
    return catalog.put(manifest) if catalog is not None else False


def remove_old_builds(bucket: BuildBucket, *, keep_from: str) -> int:
    """Delete the builds older than the last `KEEP_BUILDS` up to `keep_from` (the one just
    published), and the partners' exports of builds no longer kept: old part files and
    exports would keep erased and expired visitors forever. Builds newer than it (another
    build in progress) are left alone."""
    older = sorted(b for b in bucket.build_ids() if b < keep_from)
    stale = older[: max(0, len(older) - (KEEP_BUILDS - 1))]
    for build_id in stale:
        bucket.delete_build(build_id)
    remove_old_exports(bucket, before=older[len(stale)] if len(older) > len(stale) else keep_from)
    return len(stale)


def shard_results(bucket: BuildBucket, plan: BuildPlan) -> list[ShardResult]:
    results = []
    for shard in range(plan.shards):
        document = bucket.get_json_if_exists(layout.shard_result_key(plan.build_id, shard))
        if document is None:
            raise RuntimeError(f"shard {shard} of build {plan.build_id} has no result; nothing published")
        results.append(ShardResult.from_json(document))
    return results


def _write(stores: BuildStores, changes: dict[str, MembershipChange], plan: BuildPlan) -> int:
    """Write membership changes, leaving suppressed visitors out: those suppressed before
    now are dropped here, and a suppression that lands meanwhile wins over the write
    (each write is conditional on the visitor having no tombstone). Then file those with
    a schedule in the due index, for the sweep, at the first instant their item does not
    answer for (`Schedule.sweep_at`; one already past goes under the current minute, which
    the sweep has not reached)."""
    changes = stores.without_suppressed(changes)
    if changes:
        stores.membership.apply(changes, plan.build_id)
        due = _sweep_instants_ms(changes)
        if due and stores.due is not None:
            stores.due.put_due(due, now_ms=int(time.time() * 1000))
    return len(changes)


def _sweep_instants_ms(changes: Mapping[str, MembershipChange]) -> dict[str, int]:
    """When the sweep must re-evaluate each of these visitors, for those it must."""
    due: dict[str, int] = {}
    for visitor_id, change in changes.items():
        if change.schedule is not None:
            expires_at = change.current.expires_at if change.current is not None else None
            sweep_at = change.schedule.sweep_at(expires_at, horizon_limited=True)
            if sweep_at is not None:
                due[visitor_id] = sweep_at * 1000
    return due


def _not_stored_yet(
    stores: BuildStores, changes: dict[str, MembershipChange], plan: BuildPlan
) -> dict[str, MembershipChange]:
    """`changes` less those the membership table already holds: the evaluator stores a
    visitor's membership on each hit and at its due instant (DESIGN.md, "Freshness"), so a
    build after streaming finds most of its changes done, and rewriting them would only
    cost writes. Read with BatchGetItem, half the cost of the write it saves. (Changes
    worked out against the table itself, `_update_membership_from_table`, need no such read:
    its scan already saw what the evaluator wrote.)"""
    if not changes:
        return changes
    stored = stores.membership.stored_many(changes)
    horizon, now_s = _horizon_s(plan), plan.now_ms // 1000
    return {v: change for v, change in changes.items() if not _holds(stored.get(v), change, now_s, horizon)}


def _horizon_s(plan: BuildPlan) -> int:
    return plan.now_ms // 1000 + plan.due_horizon_seconds


def _holds(stored: StoredMembership | None, change: MembershipChange, now_s: int, horizon_s: int) -> bool:
    """Whether a stored item already says what `change`, worked out at `now_s`, does: the
    same membership as lookups read it at `now_s` (and expiry, when in any, within
    `needs_write`'s leeway), and the same changes before the build's horizon, past which
    the build did not look (see _same_changes)."""
    current = change.current
    segments = current.segments if current is not None else frozenset()
    if stored is None:
        return not needs_item(segments, change.schedule)
    held = stored.live(now_s)
    held_segments = held.segments if held is not None else frozenset()
    if held_segments != segments or (held is not None and current is not None and needs_write(held, current)):
        return False
    return _same_changes(stored.schedule, change.schedule, now_s, horizon_s)


def _same_changes(stored: Schedule | None, built: Schedule | None, now_s: int, horizon_s: int) -> bool:
    """Whether the changes a stored schedule knows after `now_s` are those the build found
    before its horizon. Past the build's horizon anything holds: a later change the
    evaluator found says only that nothing changes before it. An item whose schedule ends
    where the build finds a change holds too: lookups answer nothing from then on until
    the sweep, filed then, has re-evaluated the visitor."""
    stored_steps, stored_end = stored.ahead(now_s) if stored is not None else ((), None)
    built_steps, built_end = built.ahead(now_s) if built is not None else ((), None)
    for index, step in enumerate(built_steps):
        if index == len(stored_steps):
            return stored_end == step[0]
        if stored_steps[index] != step:
            return False
    following = stored_steps[len(built_steps)][0] if len(stored_steps) > len(built_steps) else stored_end
    if built_end is None:
        return following is None or following >= horizon_s
    return following == built_end


def _apply_shard_changes(plan: BuildPlan, stores: BuildStores) -> int:
    changed = 0
    for shard in range(plan.shards):
        batch: dict[str, MembershipChange] = {}
        lines = stores.bucket.iter_lines(layout.changes_key(plan.build_id, shard))
        for visitor_id, change in read_change_lines(lines):
            batch[visitor_id] = change
            if len(batch) >= APPLY_BATCH:
                changed, batch = changed + _write(stores, _not_stored_yet(stores, batch, plan), plan), {}
        if batch:
            changed += _write(stores, _not_stored_yet(stores, batch, plan), plan)
    return changed


def _update_membership_from_table(plan: BuildPlan, stores: BuildStores, *, published: str | None) -> int:
    """Without a usable base build (the first build, a new shard count, or an update
    cut short): compare the whole new membership with the table itself. What lookups
    serve meanwhile is each item's membership as of `published`, the build now published
    (an update cut short may have written items of a build never published). The
    schedules come from the changes files, which list every visitor that has one."""
    current: dict[str, MembershipChange] = {}
    for shard in range(plan.shards):
        current.update((v, MembershipChange(m, None)) for v, m in base_members(stores.bucket, plan.build_id, shard))
        for visitor_id, change in read_change_lines(stores.bucket.iter_lines(layout.changes_key(plan.build_id, shard))):
            if change.schedule is not None:
                current[visitor_id] = MembershipChange(change.current, None, change.schedule)
    horizon, now_s = _horizon_s(plan), plan.now_ms // 1000
    changes: dict[str, MembershipChange] = {}
    for visitor_id, stored in stores.membership.scan():
        now_in = current.pop(visitor_id, MembershipChange(None, None))
        if not _holds(stored, now_in, now_s, horizon):
            changes[visitor_id] = MembershipChange(now_in.current, stored.as_of(published, now_s), now_in.schedule)
    changes.update((v, c) for v, c in current.items() if not _holds(None, c, now_s, horizon))
    return sum(_write(stores, dict(batch), plan) for batch in _chunks(list(changes.items()), APPLY_BATCH))


def _chunks(items: list[tuple[str, MembershipChange]], size: int) -> Iterator[list[tuple[str, MembershipChange]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
