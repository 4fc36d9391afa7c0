"""Stage 4, export: after publish, each destination partner gets the build in its own ids,
under `exports/<partner>/<build_id>/`:

- `full.csv.gz`, header `uid,partner_uid,segments`: every member with a segment the
  partner may see (one whose `destinations` name it), our id, the partner's own id where
  the visitor synced with it (else empty), and those segments joined by `|`;
- `delta.csv.gz`, header `uid,partner_uid,added,removed`: each visitor whose visible
  segments changed since the partner's previous export, with the segments added and
  removed (`|`-joined); only the header when nothing changed, everyone added when there
  is no previous export;

then `exports/<partner>/latest.json` last of the partner's objects (`ExportPointer`), so
a partner never sees half an export. The partners are every one the build's segments
name plus every one with an export already: a partner that lost all its segments gets a
delta removing everyone it had. No field can hold a comma or a quote (visitor ids,
partner ids and segment ids are validated against patterns without them), so the rows
are plain CSV.

Memory stays flat with the number of members. Each shard's current members are streamed
(`builds/<build_id>/members/`), and when the build of the partner's previous export is
still kept with the same shard count, only that shard's previous members are loaded (the
same visitors, as a parallel scan with the same segment count gives), filtered to the
segments the partner could see then (that build's manifest), as `MembershipChanges`
does. Otherwise (the previous build deleted, or built with another shard count) the
previous export's full file is read into memory once: that fallback grows with the
partner's audience.

Privacy. A suppressed visitor is in no build, and is left out here too (one suppressed
between its shard and this stage included): it leaves the full file and is in the
delta's `removed`. Erasure scrubs every export file, previous exports included, so it
would vanish from the base of the next delta as well; erasure therefore first keeps a
removal notice on the visitor's suppression item for each partner whose newest export
named it (the partner's id and the segments it had), and the partner's next export
writes it as a `removed` line and then drops the notice. That delta line is the one copy
of the visitor's id (and of the partner's id for it) kept after the erasure: it is how
the partner learns to delete its own copy. It goes with its export, like every file of
an old build.

Idempotent: a partner whose `latest.json` already names the build is done; any other
is written again from the same inputs, files first, `latest.json` last, notices dropped
after it (a notice dropped late is at worst written twice, never lost)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import groupby

from functions.builder.changes import MemberLine
from functions.builder.stores import BuildBucket, BuildStores
from functions.core import layout
from functions.core.documents import ExportFileRef, ExportPointer, Manifest
from functions.core.erasure import RemovalNotice
from functions.core.storage.bucket import LinesWriter

CSV = "text/csv"
FULL_HEADER = "uid,partner_uid,segments"
DELTA_HEADER = "uid,partner_uid,added,removed"
SEPARATOR = "|"


@dataclass(frozen=True)
class PartnerExport:
    """What one partner's export of a build holds."""

    partner: str
    build_id: str
    previous_build_id: str | None
    full_rows: int
    delta_rows: int
    # False when it serves nothing new: the partner's export of this build was found
    # complete (a rerun), or a newer build's export was written meanwhile.
    written: bool = True

    def rows(self) -> dict[str, int]:
        return {"full": self.full_rows, "delta": self.delta_rows}


def destinations(manifest: Manifest) -> dict[str, frozenset[str]]:
    """{partner: the segments of the build it may see}, for every partner a segment names."""
    visible: dict[str, set[str]] = {}
    for segment in manifest.segments:
        for partner in segment.destinations:
            visible.setdefault(partner, set()).add(segment.id)
    return {partner: frozenset(segments) for partner, segments in visible.items()}


def export_pointers(bucket: BuildBucket) -> dict[str, ExportPointer]:
    """Every partner's newest export, by its `latest.json`."""
    pointers: dict[str, ExportPointer] = {}
    for key in bucket.keys(layout.EXPORTS_PREFIX):
        partner = layout.partner_of_export_latest(key)
        document = bucket.get_json_if_exists(key) if partner is not None else None
        if partner is not None and document is not None:
            pointers[partner] = ExportPointer.from_json(document)
    return pointers


def export(build_id: str, stores: BuildStores) -> dict[str, PartnerExport]:
    """Write every destination partner's export of the published build `build_id`.

    Nothing is written for a build that is not the published one: an older evaluation
    time never replaces a partner's newer export."""
    bucket = stores.bucket
    latest = bucket.latest()
    if latest is None or latest.build_id != build_id:
        return {}
    manifest = bucket.manifest(build_id)
    visible = destinations(manifest)
    pointers = export_pointers(bucket)
    results: dict[str, PartnerExport] = {}
    pending: list[_PartnerFiles] = []
    for partner in sorted(set(visible) | set(pointers)):
        pointer = pointers.get(partner)
        if pointer is not None and pointer.build_id >= build_id:
            results[partner] = PartnerExport(
                partner, pointer.build_id, pointer.previous_build_id, pointer.full.rows, pointer.delta.rows, False
            )
        else:
            pending.append(_PartnerFiles(partner, visible.get(partner, frozenset()), pointer))
    if not pending:
        return results
    notices = stores.suppression.export_notices() if stores.suppression is not None else {}
    for files in pending:
        files.start(bucket, manifest, notices.get(files.partner, {}))
    _stream_members(bucket, manifest, pending, stores.suppressed_visitors())
    for files in pending:
        results[files.partner] = files.publish(bucket, build_id)
        if results[files.partner].written and stores.suppression is not None:
            for visitor_id, notice in files.notices.items():
                stores.suppression.clear_export_notice(visitor_id, files.partner, notice)
    return results


def remove_old_exports(bucket: BuildBucket, *, before: str) -> int:
    """Delete every partner's exports of builds older than `before` (the oldest build
    kept), but never the export a partner's `latest.json` names: the next delta of that
    partner may be taken against its full file. Returns how many exports went."""
    newest = {partner: pointer.build_id for partner, pointer in export_pointers(bucket).items()}
    stale = set()
    for key in bucket.keys(layout.EXPORTS_PREFIX):
        found = layout.export_of_key(key)
        if found is not None and found[1] < before and newest.get(found[0]) != found[1]:
            stale.add(found)
    for partner, build_id in sorted(stale):
        bucket.delete_prefix(layout.export_prefix(partner, build_id))
    return len(stale)


def full_row(visitor_id: str, partner_uid: str, segment_ids: Iterable[str]) -> str:
    return f"{visitor_id},{partner_uid},{SEPARATOR.join(sorted(segment_ids))}"


def delta_row(visitor_id: str, partner_uid: str, added: Iterable[str], removed: Iterable[str]) -> str:
    return f"{visitor_id},{partner_uid},{SEPARATOR.join(sorted(added))},{SEPARATOR.join(sorted(removed))}"


def read_full_rows(lines: Iterator[str]) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(visitor_id, partner_uid, segments) per row of a full file."""
    next(lines, None)  # the header
    for line in lines:
        visitor_id, partner_uid, segments = line.split(",")
        yield visitor_id, partner_uid, frozenset(s for s in segments.split(SEPARATOR) if s)


# What the partner had of a visitor in its previous export: (partner_uid, segments).
_Seen = tuple[str, frozenset[str]]


@dataclass
class _PartnerFiles:
    """One partner's export being written: its two files, and the base its delta is
    taken against (the previous export's members, one shard at a time or all at once)."""

    partner: str
    visible: frozenset[str]
    previous: ExportPointer | None
    # The build whose members files give the base shard by shard, with the segments the
    # partner could see in it; None: no previous export, or the fallback (base loaded once).
    base_build_id: str | None = None
    base_visible: frozenset[str] = frozenset()
    base: dict[str, _Seen] = field(default_factory=dict)
    notices: Mapping[str, str] = field(default_factory=dict)
    full: LinesWriter = field(default_factory=lambda: LinesWriter(header=FULL_HEADER))
    delta: LinesWriter = field(default_factory=lambda: LinesWriter(header=DELTA_HEADER))

    def start(self, bucket: BuildBucket, manifest: Manifest, notices: Mapping[str, str]) -> None:
        """Choose the base, and write the removals erasure left notices of first."""
        self.notices = dict(notices)
        for visitor_id, text in sorted(self.notices.items()):
            notice = RemovalNotice.parse(text)
            self.delta.write(delta_row(visitor_id, notice.partner_uid, (), notice.segment_ids))
        if self.previous is None:
            return
        document = bucket.get_json_if_exists(layout.manifest_key(self.previous.build_id))
        previous = Manifest.from_json(document) if document is not None else None
        if previous is not None and previous.shards == manifest.shards:
            self.base_build_id = previous.build_id
            self.base_visible = destinations(previous).get(self.partner, frozenset())
            return
        # Fallback: the previous export's full file, whole (memory grows with it).
        for visitor_id, partner_uid, segments in read_full_rows(bucket.iter_lines(self.previous.full.key)):
            if visitor_id not in self.notices:
                self.base[visitor_id] = (partner_uid, segments)

    def add_base(self, member: MemberLine) -> None:
        """A member of the base build's shard, as the partner saw it then."""
        seen = self.base_visible.intersection(member.segment_ids)
        if seen and member.visitor_id not in self.notices:
            self.base[member.visitor_id] = (member.partner_ids.get(self.partner, ""), seen)

    def visit(self, member: MemberLine) -> None:
        """A member of the build (never a suppressed one)."""
        segments = self.visible.intersection(member.segment_ids)
        partner_uid = member.partner_ids.get(self.partner, "")
        if segments:
            self.full.write(full_row(member.visitor_id, partner_uid, segments))
        before_uid, before = self.base.pop(member.visitor_id, ("", frozenset()))
        if segments != before:
            self.delta.write(
                delta_row(member.visitor_id, partner_uid or before_uid, segments - before, before - segments)
            )

    def flush_base(self) -> None:
        """The base's visitors the build does not have (any more): removed."""
        for visitor_id, (partner_uid, before) in self.base.items():
            self.delta.write(delta_row(visitor_id, partner_uid, (), before))
        self.base.clear()

    def publish(self, bucket: BuildBucket, build_id: str) -> PartnerExport:
        self.flush_base()
        pointer = ExportPointer(
            build_id=build_id,
            previous_build_id=self.previous.build_id if self.previous is not None else None,
            full=ExportFileRef(layout.export_full_key(self.partner, build_id), self.full.lines),
            delta=ExportFileRef(layout.export_delta_key(self.partner, build_id), self.delta.lines),
        )
        bucket.upload_lines(pointer.full.key, self.full, content_type=CSV)
        bucket.upload_lines(pointer.delta.key, self.delta, content_type=CSV)
        # A newer build's export that finished meanwhile (overlapping executions) stays:
        # this one's files are then never pointed at, and its notices kept for the next.
        newest = bucket.get_json_if_exists(layout.export_latest_key(self.partner))
        written = newest is None or ExportPointer.from_json(newest).build_id <= build_id
        if written:
            bucket.put_json(layout.export_latest_key(self.partner), pointer.to_json())
        return PartnerExport(
            self.partner, build_id, pointer.previous_build_id, pointer.full.rows, pointer.delta.rows, written
        )


def _stream_members(
    bucket: BuildBucket, manifest: Manifest, pending: list[_PartnerFiles], suppressed: frozenset[str]
) -> None:
    """One pass over the build's members, shard by shard; each base build's shard is read
    once for all the partners whose delta is taken against it."""
    by_base = [
        (base_build_id, list(group))
        for base_build_id, group in groupby(
            sorted((f for f in pending if f.base_build_id is not None), key=lambda f: str(f.base_build_id)),
            key=lambda f: str(f.base_build_id),
        )
    ]
    for shard in range(manifest.shards):
        for base_build_id, group in by_base:
            for line in bucket.iter_lines(layout.members_key(base_build_id, shard)):
                member = MemberLine.parse(line)
                for files in group:
                    files.add_base(member)
        for line in bucket.iter_lines(layout.members_key(manifest.build_id, shard)):
            member = MemberLine.parse(line)
            if member.visitor_id in suppressed:
                continue  # left in the base: removed
            for files in pending:
                files.visit(member)
        for _, group in by_base:
            for files in group:
                files.flush_base()
