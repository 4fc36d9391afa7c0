"""Every key of the segments bucket, in one place (the S3 layout of DESIGN.md).

Public (partners and operators read them): `segments/<id>.json`, `latest.json`,
`builds/<build_id>/manifest.json` and its part files, and each partner's exports under
`exports/<partner>/`. The rest is the builder's own working state between its stages,
under the build's prefix so it goes with the build."""

from __future__ import annotations

DEFINITIONS_PREFIX = "segments/"
# Data-source definitions (`sources/<id>.json`), read by the importer and the builds.
SOURCES_PREFIX = "sources/"
# Second- and third-party files land under `imports/<source>/`; the importer writes each
# file's report (and, while a large file is under way, its progress) beside it.
IMPORTS_PREFIX = "imports/"
IMPORT_REPORT_SUFFIX = ".report.json"
IMPORT_PROGRESS_SUFFIX = ".progress.json"
BUILDS_PREFIX = "builds/"
# The newest complete build, written last of a publish.
LATEST_KEY = "latest.json"
# Which build the membership table holds, and whether an update of it is under way.
MEMBERSHIP_STATE_KEY = "membership-state.json"
# One record per opt-out and erasure: `audit/<YYYY-MM-DD>/<time>-<sha256 of the visitor id>.json`.
AUDIT_PREFIX = "audit/"
# Each destination partner's files of each build, and its `latest.json` (written last).
EXPORTS_PREFIX = "exports/"
EXPORT_LATEST_NAME = "latest.json"


def definition_key(segment_id: str) -> str:
    return f"{DEFINITIONS_PREFIX}{segment_id}.json"


def source_key(source_id: str) -> str:
    return f"{SOURCES_PREFIX}{source_id}.json"


def import_key(source_id: str, file_name: str) -> str:
    """Where a file of `source_id` is dropped: `imports/<source>/<file name>`."""
    return f"{IMPORTS_PREFIX}{source_id}/{file_name}"


def import_report_key(source_id: str, name: str) -> str:
    """`imports/<source>/<name>.report.json`: `name` is the file's name less its
    `.csv`/`.jsonl`/`.gz` extensions."""
    return f"{IMPORTS_PREFIX}{source_id}/{name}{IMPORT_REPORT_SUFFIX}"


def import_progress_key(source_id: str, name: str) -> str:
    """Where an import under way keeps its checkpoint between invocations."""
    return f"{IMPORTS_PREFIX}{source_id}/{name}{IMPORT_PROGRESS_SUFFIX}"


def build_prefix(build_id: str) -> str:
    return f"{BUILDS_PREFIX}{build_id}/"


def build_id_of_prefix(prefix: str) -> str:
    """The build id of a `builds/<build_id>/` prefix."""
    return prefix[len(BUILDS_PREFIX) :].rstrip("/")


def manifest_key(build_id: str) -> str:
    return f"{build_prefix(build_id)}manifest.json"


def part_key(build_id: str, segment_id: str, shard: int) -> str:
    """A part file: gzip CSV, header `uid`, one member of the segment per line."""
    return f"{build_prefix(build_id)}segments/{segment_id}/part-{shard:05d}.csv.gz"


def plan_key(build_id: str) -> str:
    return f"{build_prefix(build_id)}plan.json"


def shard_result_key(build_id: str, shard: int) -> str:
    return f"{build_prefix(build_id)}shards/part-{shard:05d}.json"


def members_key(build_id: str, shard: int) -> str:
    """Every member of a shard with its segments and expiry, for the next build to diff against."""
    return f"{build_prefix(build_id)}members/part-{shard:05d}.jsonl.gz"


# A build's report: `report.json` (the figures) and `report.html` (the page), written by
# publish before `latest.json`, so a published build always has them.
REPORT_KINDS = ("json", "html")


def report_key(build_id: str, kind: str) -> str:
    """`builds/<build_id>/report.json` or `report.html` (`kind` "json" or "html")."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"a report is json or html, not {kind!r}")
    return f"{build_prefix(build_id)}report.{kind}"


def audit_key(at: str, visitor_sha256: str) -> str:
    """`at` is an ISO 8601 UTC time (`2026-11-28T10:00:00Z`): keys sort by time."""
    return f"{AUDIT_PREFIX}{at[:10]}/{at}-{visitor_sha256}.json"


def lists_visitors(key: str) -> bool:
    """Whether an object names visitors: a build's part files, members and changes, and
    the partners' export files."""
    return key.startswith((BUILDS_PREFIX, EXPORTS_PREFIX)) and key.endswith((".csv.gz", ".jsonl.gz"))


def changes_key(build_id: str, shard: int) -> str:
    """A shard's membership changes against the build it was planned on."""
    return f"{build_prefix(build_id)}changes/part-{shard:05d}.jsonl.gz"


def export_partner_prefix(partner: str) -> str:
    return f"{EXPORTS_PREFIX}{partner}/"


def export_prefix(partner: str, build_id: str) -> str:
    """A partner's files of one build: they go with the build."""
    return f"{export_partner_prefix(partner)}{build_id}/"


def export_full_key(partner: str, build_id: str) -> str:
    """gzip CSV `uid,partner_uid,segments`: every member the partner may see."""
    return f"{export_prefix(partner, build_id)}full.csv.gz"


def export_delta_key(partner: str, build_id: str) -> str:
    """gzip CSV `uid,partner_uid,added,removed`: the change since the partner's previous export."""
    return f"{export_prefix(partner, build_id)}delta.csv.gz"


def export_latest_key(partner: str) -> str:
    """`exports/<partner>/latest.json`: the partner's newest export, written last of it."""
    return f"{export_partner_prefix(partner)}{EXPORT_LATEST_NAME}"


def export_of_key(key: str) -> tuple[str, str] | None:
    """(partner, build_id) of a key under `exports/<partner>/<build_id>/`; None for
    anything else (a partner's `latest.json`)."""
    parts = key[len(EXPORTS_PREFIX) :].split("/") if key.startswith(EXPORTS_PREFIX) else []
    return (parts[0], parts[1]) if len(parts) == 3 else None


def partner_of_export_latest(key: str) -> str | None:
    """The partner of an `exports/<partner>/latest.json` key; None for any other key."""
    parts = key[len(EXPORTS_PREFIX) :].split("/") if key.startswith(EXPORTS_PREFIX) else []
    return parts[0] if len(parts) == 2 and parts[1] == EXPORT_LATEST_NAME else None
