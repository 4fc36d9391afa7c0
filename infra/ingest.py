"""Collection: the ingest function behind a public HTTP API (`/p.gif`, `/collect`, `/tag.js`,
`/optout`, `/sync`), served to browsers through CloudFront, which adds the viewer's location
(DESIGN.md: geo comes from CloudFront's viewer headers).

The API's own endpoint stays public, so anyone could call it with `CloudFront-Viewer-*`
headers of their choosing. CloudFront therefore adds a secret origin-verify header to every
origin request, and the function believes the viewer headers only when it carries the
secret (a hit without it is stored without a location, never dropped).

With an `IngestDomain` (the site's own subdomain, e.g. `collect.shop.example`, and its ACM
certificate) the distribution answers on that name. The function sets the visitor cookie
without a Domain attribute, so the browser scopes it to the name it called: on the
distribution's `*.cloudfront.net` name it is a third-party cookie on every customer site
(which Safari and Firefox drop), on the site's own subdomain a first-party one.

In front of the distribution, a WAF web ACL limits each IP's requests (infra/waf.py): one
flood of the pixel is blocked at the edge, before it reaches the function. Behind it, the
stage's throttle and the function's reserved concurrency cap what the rest can cost the
account (the lookup's share of Lambda's concurrency is reserved apart).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from functions.core.config import Env
from functions.ingest.logic import ORIGIN_VERIFY_HEADER
from infra.compliance import acknowledge, skip_check
from infra.lambda_layer import LambdaPackaging
from infra.settings import RATE_LIMIT_WINDOW, IngestDomain
from infra.waf import rate_limited_web_acl

ROUTES = (
    (apigwv2.HttpMethod.GET, "/p.gif"),
    (apigwv2.HttpMethod.POST, "/collect"),
    (apigwv2.HttpMethod.GET, "/tag.js"),
    (apigwv2.HttpMethod.GET, "/optout"),
    (apigwv2.HttpMethod.GET, "/sync"),
)
# Stage-wide limits: well above one site's page views, well below the account's 10k rps,
# so a flood on the pixel cannot starve the partner API of the account's capacity.
RATE_LIMIT = 2_000
BURST_LIMIT = 5_000
# No source IP, user agent, query string or cookie: raw IPs are never stored (DESIGN.md).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "protocol": "$context.protocol",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "error": "$context.error.message",
}
# The viewer's location, which CloudFront adds to origin requests when a policy names it.
GEO_HEADERS = ("CloudFront-Viewer-Country", "CloudFront-Viewer-Country-Region", "CloudFront-Viewer-City")
# The rest of a hit besides cookies and the query string: consent (DNT, Sec-GPC), bots and
# device type (User-Agent), the page and the body's type (Referer, Content-Type), and what
# CORS needs (Origin, and the method of a preflight, which the HTTP API answers itself).
# CloudFront otherwise sends `User-Agent: Amazon CloudFront` and drops the rest. Host is not
# forwarded: the API only answers to its own host name. A policy holds 10 headers unless
# the quota is raised, so Access-Control-Request-Headers does not fit; the tag posts
# text/plain, which needs no preflight.
ORIGIN_REQUEST_HEADERS = (
    *GEO_HEADERS,
    "User-Agent",
    "DNT",
    "Sec-GPC",
    "Origin",
    "Referer",
    "Content-Type",
    "Access-Control-Request-Method",
)
# Paths whose every request must reach the function: a cached hit is a lost event.
UNCACHED_PATHS = ("/p.gif", "/collect", "/optout", "/sync")
TAG_PATH = "/tag.js"


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table: dynamodb.ITable,
        membership_table: dynamodb.ITable,
        suppression_table: dynamodb.ITable,
        id_map_table: dynamodb.ITable,
        partners_table: dynamodb.ITable,
        fallback_queue_url: str,
        retention_days: int,
        tcf_vendor_id: int,
        cors_origins: Sequence[str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        price_class: cloudfront.PriceClass,
        domain: IngestDomain | None,
        reserved_concurrency: int | None,
        rate_limit: int | None,
        web_acl_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain = domain
        self.origin_verify_secret = self._add_origin_verify_secret()
        # Both places get the value through a `{{resolve:secretsmanager:...}}` dynamic
        # reference, which CloudFormation resolves at deploy time: the template holds only
        # the reference, the function needs no Secrets Manager permission and makes no call
        # at cold start (the pixel path). `unsafe_unwrap`: CDK's name for accepting that the
        # resolved value is readable in the function's and the distribution's configuration.
        origin_verify_value = self.origin_verify_secret.secret_value.unsafe_unwrap()
        self.function = packaging.function(
            self,
            "Function",
            name="ingest",
            description="DMP ingest: tracking pixel, event collection and the JavaScript tag",
            memory_size=256,
            timeout=Duration.seconds(10),
            reserved_concurrency=reserved_concurrency,
            failures="API Gateway invokes it synchronously: a failure is answered at once (the pixel's "
            "GIF whatever fails), counted (hits_lost) and alarmed (ingest-errors), and a hit DynamoDB "
            "refuses is deferred to the fallback queue.",
            environment={
                Env.EVENTS_TABLE: events_table.table_name,
                Env.MEMBERSHIP_TABLE: membership_table.table_name,
                Env.SUPPRESSION_TABLE: suppression_table.table_name,
                Env.ID_MAP_TABLE: id_map_table.table_name,
                Env.PARTNERS_TABLE: partners_table.table_name,
                Env.FALLBACK_QUEUE_URL: fallback_queue_url,
                Env.RETENTION_DAYS: str(retention_days),
                Env.TCF_VENDOR_ID: str(tcf_vendor_id),
                Env.CORS_ORIGINS: ",".join(cors_origins),
                Env.ORIGIN_VERIFY_SECRET: origin_verify_value,
            },
        )

        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{Stack.of(self).stack_name}-ingest",
            description="DMP collection endpoints (public)",
            cors_preflight=_cors(cors_origins),
            create_default_stage=False,
        )
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=removal_policy)
        skip_check(
            self.access_logs,
            "CKV_AWS_158",
            "Encrypted at rest by CloudWatch Logs with AWS-managed keys; the access log holds no IP, "
            "user agent, query string or cookie (ACCESS_LOG_FORMAT). A customer-managed key is a deliberate no.",
        )
        self.stage = self.http_api.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=RATE_LIMIT, burst_limit=BURST_LIMIT),
            access_log_settings=_AccessLogSettings(
                destination=apigwv2.LogGroupLogDestination(self.access_logs),
                format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
            ),
        )
        integration = HttpLambdaIntegration(
            "Ingest", self.function, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
        )
        for method, path in ROUTES:
            for route in self.http_api.add_routes(path=path, methods=[method], integration=integration):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    f"{method.value} {path} is public by contract: browsers call it from any visited page "
                    "without credentials; consent and bot checks happen in the function.",
                )
        # The stack's own web ACL unless one made elsewhere is given; none when no rate limit is set.
        self.web_acl_arn = (
            rate_limited_web_acl(
                self,
                "WebAcl",
                limit=rate_limit,
                description=f"DMP collection: at most {rate_limit} requests per IP per "
                f"{int(RATE_LIMIT_WINDOW.total_seconds() // 60)} minutes",
            )
            if rate_limit and not web_acl_arn
            else web_acl_arn
        )
        self._add_distribution(price_class, origin_verify_value, domain)

    def _add_origin_verify_secret(self) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            "OriginVerifySecret",
            description=f"DMP ingest: the {ORIGIN_VERIFY_HEADER} value CloudFront sends to the HTTP API",
            # Letters and digits only: it travels as an HTTP header value. 64 of them, ~380 bits.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            # It guards no data: a new stack generates a new one for its new distribution.
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "Not rotated automatically: CloudFormation copies the value into the distribution's "
            "origin header and the ingest function's environment only when a deployment updates "
            "each of them, so a rotation by Secrets Manager would reach neither, and a later "
            "deployment could update one but not the other. The two must change together: put a "
            "new value, then deploy a change to both. The value only proves a request came through "
            "CloudFront (what it guards is the geo of hits), and a value out of step costs the "
            "location of hits, counted as geo_untrusted, never the hits.",
        )
        skip_check(
            secret,
            "CKV_AWS_149",
            "Encrypted with Secrets Manager's AWS-managed key: CloudFormation resolves the value into the "
            "distribution and the function at deploy time, and no principal of the stack reads it at run "
            "time, so a customer-managed key's policy would guard nothing more.",
        )
        return secret

    def _add_distribution(
        self, price_class: cloudfront.PriceClass, origin_verify_value: str, domain: IngestDomain | None
    ) -> None:
        stack = Stack.of(self)
        self.origin_request_policy = cloudfront.OriginRequestPolicy(
            self,
            "OriginRequestPolicy",
            # Policy names are account-wide (CloudFront is global): stage and region make it unique.
            origin_request_policy_name=f"{stack.stack_name}-ingest-{stack.region}",
            comment="DMP collection: viewer location, consent headers, cookies and query strings",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(*ORIGIN_REQUEST_HEADERS),
            # The dmp_uid and dmp_optout cookies. With every cookie forwarded, CloudFront also
            # hands the answer's Set-Cookie (a new visitor's dmp_uid) back to the browser.
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.all(),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
        )
        # The tag is the same for everyone: cached as long as the function's Cache-Control
        # says (an hour), keyed on nothing but the path.
        self.tag_cache_policy = cloudfront.CachePolicy(
            self,
            "TagCachePolicy",
            comment="DMP tag.js: the origin's Cache-Control decides, an hour when it says nothing",
            min_ttl=Duration.seconds(0),
            default_ttl=Duration.hours(1),
            max_ttl=Duration.days(1),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        api_origin = origins.HttpOrigin(
            # The $default stage is at the root of the API's own host name.
            f"{self.http_api.api_id}.execute-api.{stack.region}.{stack.url_suffix}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            # On every origin request, whatever the behaviour; a viewer's own header of that
            # name never reaches the origin (the origin request policy does not forward it).
            custom_headers={ORIGIN_VERIFY_HEADER: origin_verify_value},
        )
        uncached = cloudfront.BehaviorOptions(
            origin=api_origin,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=self.origin_request_policy,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"DMP collection endpoints ({stack.stack_name})",
            # Any other path (a route to come) is uncached and gets the viewer's data too.
            default_behavior=uncached,
            additional_behaviors={
                **dict.fromkeys(UNCACHED_PATHS, uncached),
                # No origin request policy: a cached answer must not depend on (or carry
                # the CORS headers of) one viewer's Origin or cookies.
                TAG_PATH: cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                    cache_policy=self.tag_cache_policy,
                ),
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=price_class,
            enable_logging=False,
            web_acl_id=self.web_acl_arn,
            **_viewer_certificate(self, domain),
        )
        self._acknowledge_distribution_findings(custom_domain=domain is not None, rate_limited=bool(self.web_acl_arn))

    def _acknowledge_distribution_findings(self, *, custom_domain: bool, rate_limited: bool) -> None:
        findings = {
            "AwsSolutions-CFR1": (
                "Collection is worldwide by design: visitors of the customers' sites come from any "
                "country, and the viewer's country is data the DMP records, not a reason to refuse a hit."
            ),
            "AwsSolutions-CFR3": (
                "No CloudFront access log: standard logs always record the viewer's IP address (c-ip, "
                "x-forwarded-for) and DESIGN.md says raw IPs are never stored; logging v2, which can "
                "leave fields out, must be set up in us-east-1 and this stack is region-agnostic. Every "
                "request that reaches the origin is in the HTTP API's access log, without IPs."
            ),
        }
        checks = {
            # CFR3's reason, for checkov.
            "CKV_AWS_86": findings["AwsSolutions-CFR3"],
        }
        if not rate_limited:
            no_web_acl = (
                "No web ACL, by the operator's choice (ingest_rate_limit=0, no ingest_web_acl_arn): the "
                "endpoints are public by contract; the API stage behind the distribution is throttled, the "
                "function's concurrency is capped, and it stores nothing from known bots."
            )
            findings["AwsSolutions-CFR2"] = no_web_acl
            checks["CKV_AWS_68"] = no_web_acl
        if not custom_domain:
            # With a custom domain the distribution has its own certificate and TLSv1.2_2021.
            findings["AwsSolutions-CFR4"] = (
                "No custom domain configured (ingest_domain, ingest_certificate_arn): the distribution "
                "uses the default *.cloudfront.net certificate, with which CloudFront accepts TLSv1 "
                "whatever the minimum protocol version. A custom domain brings TLSv1.2_2021."
            )
            checks["CKV_AWS_174"] = findings["AwsSolutions-CFR4"]
        for rule_id, reason in findings.items():
            acknowledge(self.distribution, rule_id, reason)
        for check_id, reason in checks.items():
            skip_check(self.distribution, check_id, reason)

    @property
    def url(self) -> str:
        """The collection endpoints' base URL for browsers, without a trailing slash: the custom
        domain when there is one, else the distribution's own name."""
        return f"https://{self.domain.name if self.domain else self.distribution.distribution_domain_name}"

    @property
    def api_url(self) -> str:
        """The HTTP API's own base URL (no viewer location), without a trailing slash."""
        return self.http_api.api_endpoint


def _viewer_certificate(scope: Construct, domain: IngestDomain | None) -> dict[str, Any]:
    """The distribution's properties for a custom domain: its name, its certificate (imported
    by ARN: no lookup at synth) and TLS 1.2 at least (SNI, so no dedicated-IP fee); none
    without one, which keeps CloudFront's default certificate."""
    if domain is None:
        return {}
    return {
        "domain_names": [domain.name],
        "certificate": acm.Certificate.from_certificate_arn(scope, "Certificate", domain.certificate_arn),
        "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
        "ssl_support_method": cloudfront.SSLMethod.SNI,
    }


def _cors(origins: Sequence[str]) -> apigwv2.CorsPreflightOptions | None:
    """CORS for `POST /collect` from the configured sites; none when no origin is configured.

    HTTP API CORS is API-wide, but the pixel and the tag are plain GETs that need none,
    so only POST is allowed. Credentials let the `dmp_uid` cookie travel with a beacon,
    which browsers refuse together with a `*` origin.
    """
    if not origins:
        return None
    return apigwv2.CorsPreflightOptions(
        allow_origins=list(origins),
        allow_methods=[apigwv2.CorsHttpMethod.POST],
        allow_headers=["content-type"],
        allow_credentials="*" not in origins,
        max_age=Duration.hours(1),
    )


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """`apigwv2.IAccessLogSettings` is a jsii interface, not a struct: it needs an object."""

    def __init__(self, *, destination: apigwv2.IAccessLogDestination, format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
