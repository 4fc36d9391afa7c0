"""The partner lookup API: a REST API whose routes are guarded by a partner-key authorizer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.core.config import Env
from functions.lookup import errors, routes
from infra.compliance import acknowledge, skip_check
from infra.lambda_layer import LambdaPackaging

# Stage-wide method throttling (all partners together) ...
RATE_LIMIT = 500
BURST_LIMIT = 1_000
# ... and each partner's own limits: the usage plan applies them per API key, and every
# partner key has its API key in the plan (`dmp partners add --stack`).
PLAN_RATE_LIMIT = 100
PLAN_BURST_LIMIT = 200
PLAN_DAILY_QUOTA = 5_000_000
# The resource template, not the path: a path would log visitor ids. No source IP either.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "partner": "$context.authorizer.principalId",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "error": "$context.error.message",
    "authorizerError": "$context.authorizer.error",
}


@dataclass(frozen=True)
class GatewayError:
    """An answer API Gateway gives itself, in the error shape of the lookup function's answers."""

    name: str  # the construct id: renaming one would replace (and so reset) its response
    response_type: apigw.ResponseType
    error: errors.ApiError
    headers: dict[str, str] = field(default_factory=dict)
    # The catch-alls keep the status and the message API Gateway chose.
    catch_all: bool = False

    @property
    def status(self) -> str | None:
        return None if self.catch_all else str(self.error.status)

    @property
    def body(self) -> str:
        if self.catch_all:
            return f'{{"error": {{"code": "{self.error.code}", "message": $context.error.messageString}}}}'
        return self.error.json()


GATEWAY_ERRORS = (
    # A 401 names the scheme it wants (RFC 9110); header values are quoted literals.
    GatewayError(
        "Unauthorized", apigw.ResponseType.UNAUTHORIZED, errors.UNAUTHORIZED, headers={"WWW-Authenticate": "'Bearer'"}
    ),
    GatewayError("Forbidden", apigw.ResponseType.ACCESS_DENIED, errors.FORBIDDEN),
    # A partner key without an enabled API key in the usage plan.
    GatewayError("InvalidApiKey", apigw.ResponseType.INVALID_API_KEY, errors.FORBIDDEN),
    GatewayError("Throttled", apigw.ResponseType.THROTTLED, errors.THROTTLED),
    GatewayError("QuotaExceeded", apigw.ResponseType.QUOTA_EXCEEDED, errors.QUOTA_EXCEEDED),
    # What a REST API answers for a path or method it does not have.
    GatewayError("NotFound", apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, errors.NOT_FOUND),
    GatewayError("Default4xx", apigw.ResponseType.DEFAULT_4_XX, errors.INVALID_REQUEST, catch_all=True),
    GatewayError("Default5xx", apigw.ResponseType.DEFAULT_5_XX, errors.INTERNAL_ERROR, catch_all=True),
)


class Lookup(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        membership_table: dynamodb.ITable,
        catalog_table: dynamodb.ITable,
        partners_table: dynamodb.ITable,
        id_map_table: dynamodb.ITable,
        bucket: s3.IBucket,
        stage_name: str,
        data_provider_id: str,
        data_provider_name: str,
        openrtb_segtax: int,
        catalog_refresh_seconds: int,
        authorizer_cache: Duration,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        reserved_concurrency: int | None,
        authorizer_reserved_concurrency: int | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stage_name = stage_name
        synchronous = (
            "API Gateway invokes it synchronously: a failure is the partner's 5xx at once (it asks again), "
            "counted by the lookup-5xx alarm."
        )
        self.function = packaging.function(
            self,
            "Function",
            name="lookup",
            description="DMP lookup: the segments of visitors, for partners",
            memory_size=512,
            timeout=Duration.seconds(10),
            reserved_concurrency=reserved_concurrency,
            failures=synchronous,
            environment={
                Env.MEMBERSHIP_TABLE: membership_table.table_name,
                Env.CATALOG_TABLE: catalog_table.table_name,
                Env.ID_MAP_TABLE: id_map_table.table_name,
                Env.SEGMENTS_BUCKET: bucket.bucket_name,
                Env.DATA_PROVIDER_ID: data_provider_id,
                Env.DATA_PROVIDER_NAME: data_provider_name,
                Env.OPENRTB_SEGTAX: str(openrtb_segtax),
                Env.CATALOG_REFRESH_SECONDS: str(catalog_refresh_seconds),
            },
        )
        self.authorizer_function = packaging.function(
            self,
            "AuthorizerFunction",
            name="authorizer",
            description="DMP authorizer: checks a partner's bearer key",
            memory_size=256,
            timeout=Duration.seconds(5),
            reserved_concurrency=authorizer_reserved_concurrency,
            failures=synchronous,
            environment={Env.PARTNERS_TABLE: partners_table.table_name},
        )

        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=removal_policy)
        skip_check(
            self.access_logs,
            "CKV_AWS_158",
            "Encrypted at rest by CloudWatch Logs with AWS-managed keys; the access log holds resource "
            "templates, never paths (no visitor ids), and no IPs (ACCESS_LOG_FORMAT). A customer-managed "
            "key is a deliberate no.",
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{Stack.of(self).stack_name}-lookup",
            description="DMP partner lookup API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # API keys come from the authorizer's `usageIdentifierKey`, never from callers:
            # partners authenticate with their bearer key only.
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            # API Gateway writes REST logs through one role per account and region; CDK keeps
            # the role when a stack is deleted, as other stacks' stages may still rely on it.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                throttling_rate_limit=RATE_LIMIT,
                throttling_burst_limit=BURST_LIMIT,
            ),
        )
        # RestApi always adds an `Endpoint` output; the stack's `LookupUrl` is the one to use.
        self.api.node.try_remove_child("Endpoint")
        self._acknowledge_api_findings()
        for gateway_error in GATEWAY_ERRORS:
            self.api.add_gateway_response(
                gateway_error.name,
                type=gateway_error.response_type,
                status_code=gateway_error.status,
                response_headers=gateway_error.headers or None,
                templates={"application/json": gateway_error.body},
            )

        self.authorizer = apigw.TokenAuthorizer(
            self,
            "PartnerKeyAuthorizer",
            handler=self.authorizer_function,
            identity_source=apigw.IdentitySource.header("Authorization"),
            results_cache_ttl=authorizer_cache,
        )
        integration = apigw.LambdaIntegration(self.function, allow_test_invoke=False)
        # Resources first, then their methods: the order the deployment's hash is taken in.
        partner_routes = [
            (self.api.root.resource_for_path(route), method)
            for route, method in (
                (routes.USER_SEGMENTS, "GET"),
                (routes.LOOKUP, "POST"),
                (routes.SEGMENTS, "GET"),
                (routes.EXPORTS_LATEST, "GET"),
            )
        ]
        for resource, method in partner_routes:
            # The API key (the authorizer's usageIdentifierKey) puts the call in the partner's plan.
            guarded = resource.add_method(method, integration, authorizer=self.authorizer, api_key_required=True)
            acknowledge(
                guarded,
                "AwsSolutions-COG4",
                "Partners are ad platforms calling server to server with a bearer key that the "
                "partner-key Lambda authorizer checks; there are no Cognito users.",
            )
        openapi = self.api.root.resource_for_path(routes.OPENAPI).add_method(
            "GET", integration, authorization_type=apigw.AuthorizationType.NONE
        )
        public_by_contract = (
            "GET /v1/openapi.json is public by contract: it only describes the API, so partners "
            "can read it before they hold a key."
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(openapi, rule, public_by_contract)
        skip_check(openapi, "CKV_AWS_59", public_by_contract)

        self.usage_plan = self.api.add_usage_plan(
            "PartnerUsagePlan",
            description="Each partner's rate limit and daily quota: one API key per partner key",
            throttle=apigw.ThrottleSettings(rate_limit=PLAN_RATE_LIMIT, burst_limit=PLAN_BURST_LIMIT),
            quota=apigw.QuotaSettings(limit=PLAN_DAILY_QUOTA, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )

    @property
    def url(self) -> str:
        """The stage's base URL, without a trailing slash (routes start with /v1/)."""
        stack = Stack.of(self)
        return f"https://{self.api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{self._stage_name}"

    def _acknowledge_api_findings(self) -> None:
        acknowledge(
            self.api,
            "AwsSolutions-APIG2",
            "Requests are validated by the lookup function (uid format, <= 100 uids) so that every "
            "400 carries the API's own JSON error; an API Gateway validator would answer differently.",
        )
        acknowledge(
            self.api.deployment_stage,
            "AwsSolutions-APIG3",
            "No web ACL: the rate limits are API Gateway's own, per partner key (the usage plan's rate, "
            "burst and daily quota) and stage-wide, with the authorizer's and lookup's concurrency "
            "reserved. Partners are a few ad platforms calling server to server from a few IPs at high "
            "rates, so a per-IP limit would throttle the heaviest legitimate callers and stop no one "
            "else: every route but openapi.json needs a valid key.",
        )
        skip_check(
            self.api.deployment_stage,
            "CKV_AWS_120",
            "No API Gateway cache: answers are per partner and per visitor and must change the moment a "
            "visitor opts out (suppression wins at once, DESIGN.md); a cached answer would outlive it. The "
            "lookup function caches the catalog itself (catalog_refresh_seconds).",
        )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role through which API Gateway writes the stage's access and "
            "execution logs; AWS maintains this policy for exactly that purpose.",
        )
