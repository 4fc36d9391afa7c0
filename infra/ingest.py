"""Collection: the ingest function behind a public HTTP API (`/p.gif`, `/collect`, `/tag.js`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from infra.compliance import acknowledge
from infra.lambda_layer import LambdaPackaging

ROUTES = (
    (apigwv2.HttpMethod.GET, "/p.gif"),
    (apigwv2.HttpMethod.POST, "/collect"),
    (apigwv2.HttpMethod.GET, "/tag.js"),
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


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table: dynamodb.ITable,
        retention_days: int,
        tcf_vendor_id: int,
        cors_origins: Sequence[str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = packaging.function(
            self,
            "Function",
            name="ingest",
            description="DMP ingest: tracking pixel, event collection and the JavaScript tag",
            memory_size=256,
            timeout=Duration.seconds(10),
            environment={
                "EVENTS_TABLE": events_table.table_name,
                "RETENTION_DAYS": str(retention_days),
                "TCF_VENDOR_ID": str(tcf_vendor_id),
                "CORS_ORIGINS": ",".join(cors_origins),
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

    @property
    def url(self) -> str:
        """The API's base URL, without a trailing slash (the $default stage is at the root)."""
        return self.http_api.api_endpoint


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
