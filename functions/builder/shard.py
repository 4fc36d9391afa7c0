"""Stage 2, shard: one parallel-scan segment of the events table, streamed. A visitor's
records share a partition key, so they arrive together and in one segment only; each
visitor is evaluated as soon as its records are complete and then forgotten. A shard owns
its visitors, so results do not depend on the shard count.

It writes one part file per segment, every member with its segments, expiry (for the
next build to diff against) and partner ids (for the exports), the membership changes of its visitors against the base
build when the plan has one, and its result.

Each visitor is evaluated with the plan's horizon (DESIGN.md, "Freshness"): a visitor
whose membership changes before then, with no new data, gets a schedule, which publish
stores on its item and files in the due index, so the sweep re-evaluates it on time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from functions.builder.changes import MembershipChanges, member_line, read_member_lines
from functions.builder.plan import BuildPlan, build_time
from functions.builder.report import ReportCounts, SegmentMoves
from functions.builder.stores import BuildBucket, EventSource
from functions.core import layout
from functions.core.engine import VisitorView, compile_segments
from functions.core.freshness import evaluate_visitor, membership_expiry
from functions.core.records import VisitorHistory, group_by_visitor
from functions.core.storage.bucket import LinesWriter
from functions.core.storage.membership import Membership, Schedule

CSV = "text/csv"
JSON_LINES = "application/x-ndjson"


@dataclass(frozen=True)
class ShardResult:
    """`builds/<build_id>/shards/part-<shard>.json`: what publish needs of a shard."""

    shard: int
    sizes: dict[str, int]
    visitors_scanned: int
    items_scanned: int
    changes_base: str | None  # the build its membership changes are relative to, or None
    changes: int
    # The report's counts over the shard's members (report.py `ReportCounts.to_json`);
    # None from a shard run without them (a version before reports, or the benchmark).
    report: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ShardResult:
        return cls(**document)


def run_shard(
    plan: BuildPlan,
    shard: int,
    *,
    events: EventSource,
    bucket: BuildBucket,
    suppressed: frozenset[str] = frozenset(),
    report: bool = True,
) -> ShardResult:
    """Evaluate one shard's visitors. `suppressed` visitors are in no segment, whatever
    their records, and the records met are deleted: whatever reached the table after an
    erasure (a replayed deferred hit, an app's hit naming the id) is never used and
    does not outlive the next build.

    The report's figures are counted in the same pass (`report=False` leaves them out:
    only the benchmark measuring what they cost does that)."""
    segments = compile_segments(plan.definitions)
    parts = {d.id: LinesWriter(header="uid") for d in plan.definitions}
    members = LinesWriter()
    counts = ReportCounts(plan.definitions) if report else None
    since_base_ms: int | None = None
    if plan.base_build_id is not None:
        moves = SegmentMoves() if counts is not None else None
        changes = MembershipChanges(dict(base_members(bucket, plan.base_build_id, shard)), moves=moves)
        since_base_ms = int(build_time(plan.base_build_id).timestamp() * 1000)
        if counts is not None:
            counts.moves = moves
    else:
        changes = MembershipChanges(None)
    horizon_ms = plan.now_ms + plan.due_horizon_seconds * 1000
    records = _Counting(events.scan_records(shard, plan.shards))
    visitors = 0
    met_suppressed: list[str] = []
    for history in group_by_visitor(records):
        visitors += 1
        schedule: Schedule | None = None
        if history.visitor_id in suppressed:
            met_suppressed.append(history.visitor_id)
            found: list[str] = []
        else:
            view = VisitorView(history, plan.now_ms)
            evaluated = evaluate_visitor(history, segments, plan.now_ms, horizon_ms=horizon_ms, view=view)
            found = sorted(evaluated.segments)
            schedule = Schedule.of(evaluated.due_ms, evaluated.next_segments, evaluated.next_due_ms)
            if found and counts is not None:
                counts.visit(view, found)
        expires_at = membership_expiry(history)
        recent = since_base_ms is not None and _has_records_after(history, since_base_ms)
        changes.visit(history.visitor_id, found, expires_at, schedule, recent=recent)
        if found:
            members.write(member_line(history.visitor_id, found, expires_at, history.partner_ids))
            for segment_id in found:
                parts[segment_id].write(history.visitor_id)
    if met_suppressed:
        events.delete_visitors(met_suppressed)
    for segment_id, writer in parts.items():
        bucket.upload_lines(layout.part_key(plan.build_id, segment_id, shard), writer, content_type=CSV)
    bucket.upload_lines(layout.members_key(plan.build_id, shard), members, content_type=JSON_LINES)
    bucket.upload_lines(layout.changes_key(plan.build_id, shard), changes.finish(), content_type=JSON_LINES)
    result = ShardResult(
        shard=shard,
        sizes={segment_id: writer.lines for segment_id, writer in parts.items()},
        visitors_scanned=visitors,
        items_scanned=records.count,
        changes_base=plan.base_build_id,
        changes=changes.count,
        report=counts.to_json() if counts is not None else None,
    )
    bucket.put_json(layout.shard_result_key(plan.build_id, shard), result.to_json())
    return result


def _has_records_after(history: VisitorHistory, instant_ms: int) -> bool:
    """Whether the visitor has a record newer than `instant_ms`: one the evaluator may have
    stored membership for since (a hit, an import)."""
    return any(e.ts_ms > instant_ms for e in history.events) or any(t.ts_ms > instant_ms for t in history.traits)


def base_members(bucket: BuildBucket, build_id: str, shard: int) -> Iterator[tuple[str, Membership]]:
    """The members of one shard of a build (the visitor ids a shard of that count owns)."""
    for visitor_id, membership in read_member_lines(bucket.iter_lines(layout.members_key(build_id, shard))):
        assert membership is not None  # the members file lists members only
        yield visitor_id, membership


T = TypeVar("T")


class _Counting(Iterable[T]):
    """Passes items through and counts them."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[T]:
        for item in self._items:
            self.count += 1
            yield item
