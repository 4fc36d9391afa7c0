"""Units of time and the one format times are written in (ISO 8601, UTC, whole seconds).

Plain Python: the pixel imports this through its settings."""

from __future__ import annotations

from datetime import UTC, datetime

DAY_SECONDS = 86_400
DAY_MS = DAY_SECONDS * 1000


def iso(moment: datetime) -> str:
    """`2026-11-28T10:00:00Z`: how every stored document writes a time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (a naive one is UTC), truncated to whole seconds."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)
