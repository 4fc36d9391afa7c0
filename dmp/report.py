"""`dmp report [--build ID] --out FILE`: save a build's report page (the latest build's by
default), as publish wrote it to `builds/<build_id>/report.html`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from functions.core import layout
from functions.core.documents import BuildReport, LatestPointer


class ReportMissing(LookupError):
    pass


class ReportBucket(Protocol):
    def latest(self) -> LatestPointer | None: ...

    def get_json_if_exists(self, key: str) -> Any | None: ...

    def get_bytes_if_exists(self, key: str) -> bytes | None: ...


def report_page(bucket: ReportBucket, build_id: str | None = None) -> tuple[str, str]:
    """(build_id, the page) of `build_id`, or of the latest build. A build whose page is
    missing but whose report.json is there gets its page drawn from it."""
    if build_id is None:
        latest = bucket.latest()
        if latest is None:
            raise ReportMissing("no build is published yet: run `dmp build` first")
        build_id = latest.build_id
    page = bucket.get_bytes_if_exists(layout.report_key(build_id, "html"))
    if page is not None:
        return build_id, page.decode("utf-8")
    document = bucket.get_json_if_exists(layout.report_key(build_id, "json"))
    if document is None:
        raise ReportMissing(f"build {build_id} has no report (no such build, or one published before reports)")
    from functions.builder.report_html import render

    return build_id, render(BuildReport.from_json(document))


def save_report(bucket: ReportBucket, out: Path, build_id: str | None = None) -> str:
    """Write the page to `out` (its folder made if need be); returns the build's id."""
    build_id, page = report_page(bucket, build_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return build_id
