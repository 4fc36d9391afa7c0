"""Settings every function reads from its environment, validated once at cold start.

A plain dataclass rather than a pydantic model: the pixel imports this on every cold
start, and pydantic's import alone would cost more than the rest of the pixel path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def initialised_ahead_of_requests(env: Mapping[str, str] | None = None) -> bool:
    """Whether Lambda initialises this container before any request waits on it
    (provisioned concurrency, SnapStart): init may then do what the first request
    would otherwise pay for."""
    env = os.environ if env is None else env
    return env.get("AWS_LAMBDA_INITIALIZATION_TYPE") in ("provisioned-concurrency", "snap-start")


class ConfigurationError(RuntimeError):
    """A required setting is missing or malformed; the function must not start."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    events_table: str = ""
    membership_table: str = ""
    partners_table: str = ""
    catalog_table: str = ""
    bucket: str = ""
    fallback_queue_url: str = ""
    retention_days: int = 90
    tcf_vendor_id: int = 0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    data_provider_id: str = "dmp"
    data_provider_name: str = "DMP"
    segtax: int | None = None
    catalog_refresh_seconds: int = 30
    build_shards: int = 4
    # The value CloudFront sends in the origin-verify header; empty where there is no
    # CloudFront (`dmp serve`, tests). Kept out of repr so no log line can carry it.
    origin_verify_secret: str = field(default="", repr=False)

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 86_400

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require: tuple[str, ...] = ()) -> Settings:
        env = os.environ if env is None else env
        segtax = env.get("OPENRTB_SEGTAX")
        settings = cls(
            events_table=env.get("EVENTS_TABLE", ""),
            membership_table=env.get("MEMBERSHIP_TABLE", ""),
            partners_table=env.get("PARTNERS_TABLE", ""),
            catalog_table=env.get("CATALOG_TABLE", ""),
            bucket=env.get("SEGMENTS_BUCKET", ""),
            fallback_queue_url=env.get("FALLBACK_QUEUE_URL", ""),
            retention_days=_int(env, "RETENTION_DAYS", 90, minimum=1),
            tcf_vendor_id=_int(env, "TCF_VENDOR_ID", 0),
            cors_origins=tuple(o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()),
            data_provider_id=env.get("DATA_PROVIDER_ID", "dmp"),
            data_provider_name=env.get("DATA_PROVIDER_NAME", "DMP"),
            segtax=int(segtax) if segtax else None,
            catalog_refresh_seconds=_int(env, "CATALOG_REFRESH_SECONDS", 30),
            build_shards=_int(env, "BUILD_SHARDS", 4, minimum=1),
            origin_verify_secret=env.get("ORIGIN_VERIFY_SECRET", ""),
        )
        missing = [name for name in require if not getattr(settings, name)]
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(missing)}")
        return settings
