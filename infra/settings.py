"""The deployment settings of one DMP stack, read from CDK context.

cdk.json holds every default; `-c key=value` overrides one (and arrives as a string,
so every value is parsed here, once, with an error that names the key).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from constructs import Node

from infra.builder import MAX_PARALLEL_SHARDS

STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
SCHEDULE = re.compile(r"^(rate|cron)\(.+\)$")
# Stages that are disposable: `cdk destroy` removes their data (see `removal_policy`).
DEV_STAGE = re.compile(r"^dev(-[a-z0-9-]+)?$")
# CloudFront's price classes, by the name of CDK's `PriceClass` member.
PRICE_CLASSES = ("PRICE_CLASS_100", "PRICE_CLASS_200", "PRICE_CLASS_ALL")
# A DNS host name (letters, digits, hyphens; at least two labels), as CloudFront's
# alternate domain names take it. No wildcard: the visitor cookie is scoped to one name.
HOST_NAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
ACM_CERTIFICATE_ARN = re.compile(
    r"^arn:(?P<partition>[a-z-]+):acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
# CloudFront is global and takes viewer certificates from ACM in this region only.
CLOUDFRONT_CERTIFICATE_REGION = "us-east-1"
# EventBridge's `rate(value unit)`, whose unit is singular for 1 and plural otherwise.
RATE = re.compile(r"^rate\((?P<value>[1-9]\d*) (?P<unit>minute|hour|day)s?\)$")
RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
# A build is stale after twice its schedule. A cron schedule's interval is not derived:
# builds on one are usually daily, so 48 hours unless `build_stale_after_hours` says.
STALE_AFTER_SCHEDULES = 2
CRON_STALE_AFTER = timedelta(hours=48)
# The longest a CloudWatch alarm looks back (its periods times its evaluation periods).
MAX_ALARM_WINDOW = timedelta(days=7)
HOUR = timedelta(hours=1)
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[a-z]{2,}$", re.IGNORECASE)
# Lambda keeps this much of an account's concurrency unreserved, whatever functions reserve.
UNRESERVED_CONCURRENCY_MINIMUM = 100
# The functions whose concurrency is reserved, by the name of their handler's folder.
RESERVED_FUNCTIONS = ("ingest", "lookup", "authorizer", "builder", "replay", "importer", "evaluator", "sweep")
# An SQS event source polls with at least this many concurrent invocations (its maximum
# concurrency is 2..1000), so a replay reservation below it would only throttle its polls.
SQS_MINIMUM_CONCURRENCY = 2
# A WAF rate-based rule counts each IP's requests over this window (60-600 s), and takes a
# limit of 10 to 2,000,000,000 requests.
RATE_LIMIT_WINDOW = timedelta(minutes=5)
RATE_LIMITS = (10, 2_000_000_000)
WEB_ACL_ARN = re.compile(
    r"^arn:aws:wafv2:(?P<region>[a-z0-9-]+):\d{12}:(?P<scope>global|regional)/webacl/[\w-]{1,128}/[0-9a-f-]{36}$"
)

T = TypeVar("T")


class ContextError(ValueError):
    """A context value is missing or malformed; nothing is synthesised."""


@dataclass(frozen=True, kw_only=True)
class IngestDomain:
    """The site's own name for the collection endpoints (`collect.shop.example`) and its
    ACM certificate in us-east-1: the visitor cookie is then first-party on the site."""

    name: str
    certificate_arn: str


@dataclass(frozen=True, kw_only=True)
class DeploySettings:
    stage: str
    retention_days: int
    build_schedule: str
    build_shards: int
    tcf_vendor_id: int
    cors_origins: tuple[str, ...]
    authorizer_cache_seconds: int
    data_provider_id: str
    data_provider_name: str
    openrtb_segtax: int
    catalog_refresh_seconds: int
    segments_dir: Path
    sources_dir: Path
    cloudfront_price_class: str
    ingest_domain: IngestDomain | None
    # How long without a published build before the stale-build alarm goes off.
    build_stale_after: timedelta
    alarm_email: str | None
    # Each function's reserved concurrency (RESERVED_FUNCTIONS); None: unreserved.
    reserved_concurrency: dict[str, int | None]
    # The most requests one IP may send the collection endpoints per RATE_LIMIT_WINDOW
    # before CloudFront's web ACL blocks it; None: no web ACL of this stack.
    ingest_rate_limit: int | None
    # A CLOUDFRONT web ACL made elsewhere (in us-east-1), attached instead of the stack's own.
    ingest_web_acl_arn: str | None

    @property
    def stack_name(self) -> str:
        return f"Dmp-{self.stage}"

    @property
    def is_dev_stage(self) -> bool:
        """`dev` and `dev-<name>` (personal stacks) hold only throw-away data."""
        return DEV_STAGE.match(self.stage) is not None

    @classmethod
    def from_context(cls, node: Node, *, root: Path) -> DeploySettings:
        def get(key: str, parse: Callable[[Any], T]) -> T:
            raw = node.try_get_context(key)
            if raw is None:
                raise ContextError(f"context {key!r} is missing (cdk.json sets every default)")
            try:
                return parse(raw)
            except (TypeError, ValueError) as error:
                raise ContextError(f"context {key!r}: {error} (got {raw!r})") from None

        segments_dir = Path(get("segments_dir", str))
        sources_dir = Path(get("sources_dir", str))
        build_schedule = get("build_schedule", _matching(SCHEDULE, "expected rate(...) or cron(...)"))
        return cls(
            stage=get("stage", _matching(STAGE, "a stage is [a-z][a-z0-9-]{0,19}")),
            retention_days=get("retention_days", _integer(1, 3650)),
            build_schedule=build_schedule,
            build_shards=get("build_shards", _integer(1, 1000)),
            tcf_vendor_id=get("tcf_vendor_id", _integer(0, 1_000_000)),
            cors_origins=get("cors_origins", _origins),
            # API Gateway caches authorizer results for at most an hour; 0 disables the cache.
            authorizer_cache_seconds=get("authorizer_cache_seconds", _integer(0, 3600)),
            data_provider_id=get("data_provider_id", _matching(re.compile(r"^\S{1,64}$"), "1-64 non-blank chars")),
            data_provider_name=get("data_provider_name", _matching(re.compile(r"^.{1,200}$"), "1-200 chars")),
            # The IAB segment taxonomy id of OpenRTB answers (`ext.segtax`); 0 leaves it out.
            openrtb_segtax=get("openrtb_segtax", _integer(0, 1_000_000)),
            # How often a warm lookup checks for a new build (answers' max-age follows it).
            catalog_refresh_seconds=get("catalog_refresh_seconds", _integer(1, 3600)),
            segments_dir=segments_dir if segments_dir.is_absolute() else root / segments_dir,
            sources_dir=sources_dir if sources_dir.is_absolute() else root / sources_dir,
            cloudfront_price_class=get("cloudfront_price_class", _price_class),
            ingest_domain=_ingest_domain(
                get("ingest_domain", _optional(_host_name)),
                get("ingest_certificate_arn", _optional(_certificate_arn)),
            ),
            # 0: twice the schedule (see `_stale_after`).
            build_stale_after=_stale_after(
                build_schedule, get("build_stale_after_hours", _integer(0, MAX_ALARM_WINDOW // HOUR))
            ),
            alarm_email=get("alarm_email", _optional(_email)),
            reserved_concurrency=_reserved_concurrency(
                {name: get(f"{name}_reserved_concurrency", _integer(0, 10_000)) for name in RESERVED_FUNCTIONS},
                account_concurrency=get("lambda_account_concurrency", _integer(0, 1_000_000)),
                build_shards=get("build_shards", _integer(1, 1000)),
            ),
            # 0: no rate limit, and so no web ACL of the stack's own.
            ingest_rate_limit=get("ingest_rate_limit", _rate_limit),
            ingest_web_acl_arn=get("ingest_web_acl_arn", _optional(_cloudfront_web_acl_arn)),
        )


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}")
        return value

    return parse


def _matching(pattern: re.Pattern[str], expected: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = str(raw).strip()
        if not pattern.match(value):
            raise ValueError(expected)
        return value

    return parse


def _origins(raw: Any) -> tuple[str, ...]:
    """A comma-separated string (as `-c` passes it) or a JSON list; "" means no CORS."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    origins = tuple(str(item).strip() for item in items if str(item).strip())
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise ValueError(f"{origin!r} is not an origin like https://shop.example")
    return origins


def _optional(parse: Callable[[Any], str]) -> Callable[[Any], str | None]:
    """`parse`, with "" (cdk.json's default) meaning not set."""

    def parse_optional(raw: Any) -> str | None:
        return parse(raw) if str(raw).strip() else None

    return parse_optional


def _host_name(raw: Any) -> str:
    value = str(raw).strip().lower()
    if not HOST_NAME.match(value):
        raise ValueError("expected a host name like collect.shop.example (no scheme, path, port or wildcard)")
    return value


def _certificate_arn(raw: Any) -> str:
    value = str(raw).strip()
    match = ACM_CERTIFICATE_ARN.match(value)
    if not match:
        raise ValueError(
            f"expected an ACM certificate ARN, arn:aws:acm:{CLOUDFRONT_CERTIFICATE_REGION}:<account>:certificate/<id>"
        )
    if match["partition"] != "aws":
        raise ValueError(f"CloudFront takes ACM certificates of the aws partition only, not {match['partition']}")
    if match["region"] != CLOUDFRONT_CERTIFICATE_REGION:
        raise ValueError(
            f"CloudFront takes viewer certificates from ACM in {CLOUDFRONT_CERTIFICATE_REGION} only; this one is in "
            f"{match['region']}: request (or import) the certificate in {CLOUDFRONT_CERTIFICATE_REGION}"
        )
    return value


def _ingest_domain(name: str | None, certificate_arn: str | None) -> IngestDomain | None:
    """Both or neither: a custom name needs its certificate, and a certificate serves a name."""
    if name and certificate_arn:
        return IngestDomain(name=name, certificate_arn=certificate_arn)
    if name:
        raise ContextError(
            f"context 'ingest_certificate_arn' is missing: 'ingest_domain' ({name}) needs its ACM certificate "
            f"(in {CLOUDFRONT_CERTIFICATE_REGION}), and the two are set together"
        )
    if certificate_arn:
        raise ContextError(
            "context 'ingest_domain' is missing: 'ingest_certificate_arn' is the certificate of a custom domain "
            "name for the collection endpoints, and the two are set together"
        )
    return None


def _price_class(raw: Any) -> str:
    """CDK's name (PRICE_CLASS_100) or CloudFront's (PriceClass_100), as the member name."""
    wanted = str(raw).strip().upper().replace("_", "")
    for name in PRICE_CLASSES:
        if name.replace("_", "") == wanted:
            return name
    raise ValueError(f"expected one of {', '.join(PRICE_CLASSES)}")


def _stale_after(schedule: str, hours: int) -> timedelta:
    """`build_stale_after_hours` when set (not 0), else twice a `rate(...)` schedule, or
    CRON_STALE_AFTER for a cron one."""
    if hours:
        return hours * HOUR
    if schedule.startswith("cron("):
        return CRON_STALE_AFTER
    match = RATE.match(schedule)
    if not match:
        raise ContextError(
            f"context 'build_schedule': expected rate(<n> minutes|hours|days) like rate(1 hour) (got {schedule!r})"
        )
    stale_after = STALE_AFTER_SCHEDULES * int(match["value"]) * RATE_UNITS[match["unit"]]
    if stale_after > MAX_ALARM_WINDOW:
        raise ContextError(
            f"context 'build_stale_after_hours' is needed: twice {schedule} is longer than the "
            f"{MAX_ALARM_WINDOW.days} days a CloudWatch alarm can look back; set at most "
            f"{MAX_ALARM_WINDOW // HOUR} hours"
        )
    return stale_after


def _email(raw: Any) -> str:
    value = str(raw).strip()
    if not EMAIL.match(value):
        raise ValueError("expected one email address like oncall@shop.example")
    return value


def _reserved_concurrency(
    reserved: dict[str, int], *, account_concurrency: int, build_shards: int
) -> dict[str, int | None]:
    """Each function's reservation, 0 meaning unreserved (Lambda's own 0 would stop it), checked
    against the account's concurrency: what the stack reserves must leave Lambda its unreserved
    minimum, or the deployment fails."""
    for name, value in reserved.items():
        if name == "builder" and value and value < min(build_shards, MAX_PARALLEL_SHARDS):
            raise ContextError(
                f"context 'builder_reserved_concurrency': {value} is fewer than the {min(build_shards, MAX_PARALLEL_SHARDS)} "
                "shards a build runs at once (build_shards, at most "
                f"{MAX_PARALLEL_SHARDS}): shards would be throttled; reserve more, or 0 for unreserved"
            )
        if name == "replay" and 0 < value < SQS_MINIMUM_CONCURRENCY:
            raise ContextError(
                f"context 'replay_reserved_concurrency': expected 0 (unreserved) or at least "
                f"{SQS_MINIMUM_CONCURRENCY}, the fewest concurrent polls of an SQS event source (got {value})"
            )
    total = sum(reserved.values())
    reservable = account_concurrency - UNRESERVED_CONCURRENCY_MINIMUM
    if total > reservable:
        settings = ", ".join(f"{name}_reserved_concurrency={value}" for name, value in reserved.items() if value)
        raise ContextError(
            f"context '*_reserved_concurrency': the functions reserve {total} ({settings}), more than the "
            f"{max(reservable, 0)} that an account concurrency of {account_concurrency} "
            f"('lambda_account_concurrency') leaves reservable beside Lambda's unreserved minimum of "
            f"{UNRESERVED_CONCURRENCY_MINIMUM}: reserve less, 0 for unreserved, or raise the account's quota "
            "and 'lambda_account_concurrency' with it"
        )
    return {name: value or None for name, value in reserved.items()}


def _cloudfront_web_acl_arn(raw: Any) -> str:
    value = str(raw).strip()
    match = WEB_ACL_ARN.match(value)
    if not match:
        raise ValueError("expected a WAF web ACL ARN, arn:aws:wafv2:us-east-1:<account>:global/webacl/<name>/<id>")
    if match["scope"] != "global" or match["region"] != CLOUDFRONT_CERTIFICATE_REGION:
        raise ValueError(
            f"CloudFront takes web ACLs of CLOUDFRONT scope only, which are made in {CLOUDFRONT_CERTIFICATE_REGION} "
            f"(arn:aws:wafv2:{CLOUDFRONT_CERTIFICATE_REGION}:<account>:global/webacl/...)"
        )
    return value


def _rate_limit(raw: Any) -> int | None:
    """0 (no rate limit), or a limit WAF takes."""
    value = _integer(0, RATE_LIMITS[1])(raw)
    if 0 < value < RATE_LIMITS[0]:
        raise ValueError(f"expected 0 (no rate limit) or {RATE_LIMITS[0]}..{RATE_LIMITS[1]}")
    return value or None
