"""The collection endpoints: the ingest function and its public HTTP API."""

from __future__ import annotations

import json

import pytest

from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app

ROUTE_KEYS = {"GET /p.gif", "POST /collect", "GET /tag.js"}


def test_ingest_function_is_configured_from_context(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest
    properties = prod_stack.properties(ingest.function)
    assert properties["Handler"] == "functions.ingest.handler.handler"
    assert properties["MemorySize"] == 256
    assert properties["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "EVENTS_TABLE": prod_stack.ref(prod_stack.stack.storage.events_table),
        "RETENTION_DAYS": "30",
        "TCF_VENDOR_ID": "755",
        "CORS_ORIGINS": "https://shop.example,https://www.shop.example",
    }


def test_http_api_has_exactly_the_three_public_routes(prod_stack: Synthesised) -> None:
    routes = prod_stack.template.find_resources(
        "AWS::ApiGatewayV2::Route", {"Properties": {"ApiId": prod_stack.ref(prod_stack.stack.ingest.http_api)}}
    )
    assert {route["Properties"]["RouteKey"] for route in routes.values()} == ROUTE_KEYS
    assert {route["Properties"].get("AuthorizationType", "NONE") for route in routes.values()} == {"NONE"}


def test_every_route_invokes_the_ingest_function_with_payload_v2(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest
    integrations = prod_stack.template.find_resources(
        "AWS::ApiGatewayV2::Integration", {"Properties": {"ApiId": prod_stack.ref(ingest.http_api)}}
    )
    assert integrations, "no integration"
    for integration in integrations.values():
        assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
        assert integration["Properties"]["IntegrationUri"] == prod_stack.arn(ingest.function)
        assert integration["Properties"]["PayloadFormatVersion"] == "2.0"


def test_cors_allows_posts_from_the_configured_origins(prod_stack: Synthesised) -> None:
    cors = prod_stack.properties(prod_stack.stack.ingest.http_api)["CorsConfiguration"]
    assert cors["AllowOrigins"] == ["https://shop.example", "https://www.shop.example"]
    assert cors["AllowMethods"] == ["POST"]
    assert cors["AllowHeaders"] == ["content-type"]
    # The dmp_uid cookie travels with the beacon.
    assert cors["AllowCredentials"] is True


def test_no_cors_when_no_origin_is_configured(dev_stack: Synthesised) -> None:
    assert "CorsConfiguration" not in dev_stack.properties(dev_stack.stack.ingest.http_api)


def test_default_stage_is_throttled_and_access_logged_without_ips(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest
    stage = prod_stack.properties(ingest.stage)
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    throttle = stage["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] > 0
    assert throttle["ThrottlingBurstLimit"] >= throttle["ThrottlingRateLimit"]
    assert stage["AccessLogSettings"]["DestinationArn"] == prod_stack.arn(ingest.access_logs)
    log_format = stage["AccessLogSettings"]["Format"]
    assert json.loads(log_format)["requestId"] == "$context.requestId"
    # Raw IPs are never stored (DESIGN.md), not even in access logs.
    assert "sourceIp" not in log_format
