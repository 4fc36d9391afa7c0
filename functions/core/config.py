"""Settings every function reads from its environment, validated once at cold start.

A plain dataclass rather than a pydantic model: the pixel imports this on every cold
start, and pydantic's import alone would cost more than the rest of the pixel path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from functions.core.times import DAY_SECONDS


class Env:
    """The functions' environment variables, named once: the CDK constructs and the local
    stack set them, `Settings.from_env` reads them."""

    EVENTS_TABLE = "EVENTS_TABLE"
    MEMBERSHIP_TABLE = "MEMBERSHIP_TABLE"
    PARTNERS_TABLE = "PARTNERS_TABLE"
    CATALOG_TABLE = "CATALOG_TABLE"
    SUPPRESSION_TABLE = "SUPPRESSION_TABLE"
    ID_MAP_TABLE = "ID_MAP_TABLE"
    DUE_TABLE = "DUE_TABLE"
    SEGMENTS_BUCKET = "SEGMENTS_BUCKET"
    FALLBACK_QUEUE_URL = "FALLBACK_QUEUE_URL"
    RETENTION_DAYS = "RETENTION_DAYS"
    TCF_VENDOR_ID = "TCF_VENDOR_ID"
    CORS_ORIGINS = "CORS_ORIGINS"
    DATA_PROVIDER_ID = "DATA_PROVIDER_ID"
    DATA_PROVIDER_NAME = "DATA_PROVIDER_NAME"
    OPENRTB_SEGTAX = "OPENRTB_SEGTAX"
    CATALOG_REFRESH_SECONDS = "CATALOG_REFRESH_SECONDS"
    BUILD_SHARDS = "BUILD_SHARDS"
    DUE_HORIZON_SECONDS = "DUE_HORIZON_SECONDS"
    ORIGIN_VERIFY_SECRET = "ORIGIN_VERIFY_SECRET"
    # Local stack only (never set in AWS): the storage clients' read timeout for the
    # emulator (`functions/core/storage/aws.py`).
    STORAGE_READ_TIMEOUT_SECONDS = "STORAGE_READ_TIMEOUT_SECONDS"


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
    suppression_table: str = ""
    id_map_table: str = ""
    due_table: str = ""
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
    # How far ahead a build looks for membership changes with no new data (the stack:
    # twice the build schedule's interval; functions/builder/plan.py).
    due_horizon_seconds: int = 2 * 3600
    # The value CloudFront sends in the origin-verify header; empty where there is no
    # CloudFront (`dmp serve`, tests). Kept out of repr so no log line can carry it.
    origin_verify_secret: str = field(default="", repr=False)

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * DAY_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require: tuple[str, ...] = ()) -> Settings:
        env = os.environ if env is None else env
        segtax = _int(env, Env.OPENRTB_SEGTAX, 0)
        settings = cls(
            events_table=env.get(Env.EVENTS_TABLE, ""),
            membership_table=env.get(Env.MEMBERSHIP_TABLE, ""),
            partners_table=env.get(Env.PARTNERS_TABLE, ""),
            catalog_table=env.get(Env.CATALOG_TABLE, ""),
            suppression_table=env.get(Env.SUPPRESSION_TABLE, ""),
            id_map_table=env.get(Env.ID_MAP_TABLE, ""),
            due_table=env.get(Env.DUE_TABLE, ""),
            bucket=env.get(Env.SEGMENTS_BUCKET, ""),
            fallback_queue_url=env.get(Env.FALLBACK_QUEUE_URL, ""),
            retention_days=_int(env, Env.RETENTION_DAYS, 90, minimum=1),
            tcf_vendor_id=_int(env, Env.TCF_VENDOR_ID, 0),
            cors_origins=tuple(o.strip() for o in env.get(Env.CORS_ORIGINS, "").split(",") if o.strip()),
            data_provider_id=env.get(Env.DATA_PROVIDER_ID, "dmp"),
            data_provider_name=env.get(Env.DATA_PROVIDER_NAME, "DMP"),
            # 0 or unset: no `ext.segtax` in OpenRTB answers (IAB taxonomy ids start at 1).
            segtax=segtax or None,
            catalog_refresh_seconds=_int(env, Env.CATALOG_REFRESH_SECONDS, 30),
            build_shards=_int(env, Env.BUILD_SHARDS, 4, minimum=1),
            due_horizon_seconds=_int(env, Env.DUE_HORIZON_SECONDS, 2 * 3600, minimum=60),
            origin_verify_secret=env.get(Env.ORIGIN_VERIFY_SECRET, ""),
        )
        missing = [name for name in require if not getattr(settings, name)]
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(missing)}")
        return settings
