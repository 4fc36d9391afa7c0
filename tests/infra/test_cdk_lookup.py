"""The partner lookup API: routes, the partner-key authorizer, errors and limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.core.config import Settings
from functions.lookup import errors
from infra.lookup import BURST_LIMIT, PLAN_BURST_LIMIT, PLAN_DAILY_QUOTA, PLAN_RATE_LIMIT, RATE_LIMIT
from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app

GUARDED = {
    ("GET", "/v1/users/{uid}/segments"),
    ("POST", "/v1/lookup"),
    ("GET", "/v1/segments"),
    ("GET", "/v1/exports/latest"),
}
PUBLIC = {("GET", "/v1/openapi.json")}


def rest_methods(synthesised: Synthesised) -> dict[tuple[str, str], dict[str, Any]]:
    """The API's methods by (HTTP method, full path), rebuilt from the resource tree."""
    api = synthesised.stack.lookup.api
    resources = synthesised.template.find_resources(
        "AWS::ApiGateway::Resource", {"Properties": {"RestApiId": synthesised.ref(api)}}
    )
    root_id = synthesised.logical_id(api)

    def path(logical_id: str) -> str:
        properties = resources[logical_id]["Properties"]
        parent = properties["ParentId"]
        prefix = "" if parent == {"Fn::GetAtt": [root_id, "RootResourceId"]} else path(parent["Ref"])
        return f"{prefix}/{properties['PathPart']}"

    methods = synthesised.template.find_resources(
        "AWS::ApiGateway::Method", {"Properties": {"RestApiId": synthesised.ref(api)}}
    )
    return {
        (method["Properties"]["HttpMethod"], path(method["Properties"]["ResourceId"]["Ref"])): method["Properties"]
        for method in methods.values()
    }


def test_lookup_and_authorizer_functions_are_configured_from_context(prod_stack: Synthesised) -> None:
    storage, lookup = prod_stack.stack.storage, prod_stack.stack.lookup
    function = prod_stack.properties(lookup.function)
    assert function["Handler"] == "functions.lookup.handler.handler"
    assert function["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "lookup",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "MEMBERSHIP_TABLE": prod_stack.ref(storage.membership_table),
        "CATALOG_TABLE": prod_stack.ref(storage.catalog_table),
        "ID_MAP_TABLE": prod_stack.ref(storage.id_map_table),
        "SEGMENTS_BUCKET": prod_stack.ref(storage.bucket),
        "DATA_PROVIDER_ID": "acme-dmp",
        "DATA_PROVIDER_NAME": "Acme DMP",
        "OPENRTB_SEGTAX": "4",
        "CATALOG_REFRESH_SECONDS": "45",
    }
    authorizer = prod_stack.properties(lookup.authorizer_function)
    assert authorizer["Handler"] == "functions.authorizer.handler.handler"
    assert authorizer["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "authorizer",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "PARTNERS_TABLE": prod_stack.ref(storage.partners_table),
    }


def test_api_has_exactly_the_contract_routes(prod_stack: Synthesised) -> None:
    assert set(rest_methods(prod_stack)) == GUARDED | PUBLIC


@pytest.mark.parametrize("route", sorted(GUARDED))
def test_partner_routes_require_the_partner_key_authorizer(prod_stack: Synthesised, route: tuple[str, str]) -> None:
    method = rest_methods(prod_stack)[route]
    assert method["AuthorizationType"] == "CUSTOM"
    assert method["AuthorizerId"] == prod_stack.ref(prod_stack.stack.lookup.authorizer)


def test_openapi_document_is_public(prod_stack: Synthesised) -> None:
    method = rest_methods(prod_stack)[("GET", "/v1/openapi.json")]
    assert method["AuthorizationType"] == "NONE"
    assert "AuthorizerId" not in method


def test_every_route_is_proxied_to_the_lookup_function(prod_stack: Synthesised) -> None:
    lookup_arn = prod_stack.arn(prod_stack.stack.lookup.function)
    for method in rest_methods(prod_stack).values():
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert lookup_arn in method["Integration"]["Uri"]["Fn::Join"][1]


def test_authorizer_reads_the_bearer_header_and_caches_for_the_configured_time(prod_stack: Synthesised) -> None:
    lookup = prod_stack.stack.lookup
    properties = prod_stack.properties(lookup.authorizer)
    assert properties["Type"] == "TOKEN"
    assert properties["IdentitySource"] == "method.request.header.Authorization"
    assert properties["AuthorizerResultTtlInSeconds"] == 120
    assert prod_stack.arn(lookup.authorizer_function) in properties["AuthorizerUri"]["Fn::Join"][1]


def test_authorizer_cache_defaults_to_a_minute(dev_stack: Synthesised) -> None:
    assert dev_stack.properties(dev_stack.stack.lookup.authorizer)["AuthorizerResultTtlInSeconds"] == 60


def gateway_response(synthesised: Synthesised, response_type: str) -> dict[str, Any]:
    responses = synthesised.template.find_resources(
        "AWS::ApiGateway::GatewayResponse", {"Properties": {"ResponseType": response_type}}
    )
    (response,) = (resource["Properties"] for resource in responses.values())
    assert response["RestApiId"] == synthesised.ref(synthesised.stack.lookup.api)
    return response


@pytest.mark.parametrize(
    ("response_type", "error"),
    [
        ("UNAUTHORIZED", errors.UNAUTHORIZED),
        ("ACCESS_DENIED", errors.FORBIDDEN),
        ("INVALID_API_KEY", errors.FORBIDDEN),
        ("THROTTLED", errors.THROTTLED),
        ("QUOTA_EXCEEDED", errors.QUOTA_EXCEEDED),
        ("MISSING_AUTHENTICATION_TOKEN", errors.NOT_FOUND),
    ],
)
def test_api_gateways_own_answers_have_the_api_error_shape(
    prod_stack: Synthesised, response_type: str, error: errors.ApiError
) -> None:
    response = gateway_response(prod_stack, response_type)
    assert response["StatusCode"] == str(error.status)
    assert set(response["ResponseTemplates"]) == {"application/json"}
    # The very body the lookup function sends for the same refusal.
    assert json.loads(response["ResponseTemplates"]["application/json"]) == error.body()


@pytest.mark.parametrize(
    ("response_type", "code"), [("DEFAULT_4XX", "invalid_request"), ("DEFAULT_5XX", "internal_error")]
)
def test_any_other_gateway_error_keeps_its_status_in_the_api_error_shape(
    prod_stack: Synthesised, response_type: str, code: str
) -> None:
    response = gateway_response(prod_stack, response_type)
    assert "StatusCode" not in response
    template = response["ResponseTemplates"]["application/json"]
    # $context.error.messageString is API Gateway's message, already a quoted JSON string.
    body = json.loads(template.replace("$context.error.messageString", '"Request Too Long"'))
    assert body == {"error": {"code": code, "message": "Request Too Long"}}


def test_a_missing_key_answer_names_the_bearer_scheme(prod_stack: Synthesised) -> None:
    response = gateway_response(prod_stack, "UNAUTHORIZED")
    assert response["ResponseParameters"] == {"gatewayresponse.header.WWW-Authenticate": "'Bearer'"}


def test_stage_is_named_after_the_stage_traced_logged_and_throttled(prod_stack: Synthesised) -> None:
    lookup = prod_stack.stack.lookup
    stage = prod_stack.properties(lookup.api.deployment_stage)
    assert stage["StageName"] == "prod"
    assert stage["TracingEnabled"] is True
    assert prod_stack.logical_id(lookup.access_logs) in json.dumps(stage["AccessLogSetting"]["DestinationArn"])
    assert json.loads(stage["AccessLogSetting"]["Format"])["requestId"] == "$context.requestId"
    # Paths carry visitor ids: the log has the route template instead, and no source IP.
    assert "$context.path" not in stage["AccessLogSetting"]["Format"]
    assert "sourceIp" not in stage["AccessLogSetting"]["Format"]
    (settings,) = stage["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")
    assert settings["ThrottlingRateLimit"] > 0
    assert settings["ThrottlingBurstLimit"] > 0


def test_api_keys_come_from_the_authorizer_not_from_callers(prod_stack: Synthesised) -> None:
    assert prod_stack.properties(prod_stack.stack.lookup.api)["ApiKeySourceType"] == "AUTHORIZER"


@pytest.mark.parametrize("route", sorted(GUARDED))
def test_partner_routes_require_the_partners_api_key(prod_stack: Synthesised, route: tuple[str, str]) -> None:
    assert rest_methods(prod_stack)[route]["ApiKeyRequired"] is True


def test_the_openapi_document_needs_no_api_key(prod_stack: Synthesised) -> None:
    assert not rest_methods(prod_stack)[("GET", "/v1/openapi.json")].get("ApiKeyRequired", False)


def test_the_usage_plan_throttles_and_counts_each_partner_on_the_stage(prod_stack: Synthesised) -> None:
    lookup = prod_stack.stack.lookup
    plans = prod_stack.template.find_resources("AWS::ApiGateway::UsagePlan")
    assert list(plans) == [prod_stack.logical_id(lookup.usage_plan)]
    plan = prod_stack.properties(lookup.usage_plan)
    (api_stage,) = plan["ApiStages"]
    assert api_stage["ApiId"] == prod_stack.ref(lookup.api)
    assert api_stage["Stage"] == prod_stack.ref(lookup.api.deployment_stage)
    # Per API key, so per partner key: below the stage-wide limits every partner shares.
    assert plan["Throttle"] == {"RateLimit": PLAN_RATE_LIMIT, "BurstLimit": PLAN_BURST_LIMIT}
    assert 0 < PLAN_RATE_LIMIT < RATE_LIMIT and 0 < PLAN_BURST_LIMIT < BURST_LIMIT
    assert plan["Quota"] == {"Limit": PLAN_DAILY_QUOTA, "Period": "DAY"}
    # API keys are added by `dmp partners add --stack`, never by the stack.
    assert prod_stack.template.find_resources("AWS::ApiGateway::ApiKey") == {}


def test_the_cli_finds_the_usage_plan_through_an_output(prod_stack: Synthesised) -> None:
    output = prod_stack.template.find_outputs("LookupUsagePlanId")["LookupUsagePlanId"]
    assert output["Value"] == prod_stack.ref(prod_stack.stack.lookup.usage_plan)


def test_the_lookup_reads_back_every_setting_the_stack_gives_it(prod_stack: Synthesised) -> None:
    # GIVEN the lookup function's environment as the template sets it (unresolved refs aside)
    variables = prod_stack.properties(prod_stack.stack.lookup.function)["Environment"]["Variables"]
    env = {name: value if isinstance(value, str) else f"<{name}>" for name, value in variables.items()}
    # WHEN the function reads its settings at cold start
    settings = Settings.from_env(env, require=("membership_table", "catalog_table", "id_map_table", "bucket"))
    # THEN it finds the context's values under the names the stack wrote them with
    assert (settings.data_provider_id, settings.data_provider_name) == ("acme-dmp", "Acme DMP")
    assert (settings.segtax, settings.catalog_refresh_seconds) == (4, 45)


def test_a_dev_stack_sends_no_segtax_and_refreshes_every_30_seconds(dev_stack: Synthesised) -> None:
    variables = dev_stack.properties(dev_stack.stack.lookup.function)["Environment"]["Variables"]
    settings = Settings.from_env({k: v for k, v in variables.items() if isinstance(v, str)})
    assert (settings.segtax, settings.catalog_refresh_seconds) == (None, 30)
