"""The collection endpoints: the ingest function, its public HTTP API and the CloudFront
distribution in front of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Validations

from infra.app import cdk_json_context, create_app
from infra.settings import ContextError, DeploySettings, IngestDomain
from tests.infra.synthesis import SKIP_BUNDLING, Synthesised, as_list, role_statements

pytestmark = pytest.mark.slow  # synthesises the CDK app

ROUTE_KEYS = {"GET /p.gif", "POST /collect", "GET /tag.js", "GET /optout", "GET /sync"}
# AWS's managed CachingDisabled policy (the same id in every account).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
GEO_HEADERS = {"CloudFront-Viewer-Country", "CloudFront-Viewer-Country-Region", "CloudFront-Viewer-City"}
REQUEST_HEADERS = {"User-Agent", "DNT", "Sec-GPC", "Origin", "Referer", "Content-Type"}
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}


def distribution_config(synthesised: Synthesised) -> dict[str, Any]:
    return synthesised.properties(synthesised.stack.ingest.distribution)["DistributionConfig"]


def behaviour(synthesised: Synthesised, path: str) -> dict[str, Any]:
    """The cache behaviour for `path`; "*" is the default behaviour."""
    config = distribution_config(synthesised)
    if path == "*":
        return dict(config["DefaultCacheBehavior"])
    (found,) = (b for b in config["CacheBehaviors"] if b["PathPattern"] == path)
    return dict(found)


def test_ingest_function_is_configured_from_context(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest
    properties = prod_stack.properties(ingest.function)
    assert properties["Handler"] == "functions.ingest.handler.handler"
    assert properties["MemorySize"] == 256
    assert properties["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "EVENTS_TABLE": prod_stack.ref(prod_stack.stack.storage.events_table),
        "MEMBERSHIP_TABLE": prod_stack.ref(prod_stack.stack.storage.membership_table),
        "SUPPRESSION_TABLE": prod_stack.ref(prod_stack.stack.storage.suppression_table),
        "ID_MAP_TABLE": prod_stack.ref(prod_stack.stack.storage.id_map_table),
        "PARTNERS_TABLE": prod_stack.ref(prod_stack.stack.storage.partners_table),
        "FALLBACK_QUEUE_URL": prod_stack.ref(prod_stack.stack.replay.queue),
        "RETENTION_DAYS": "30",
        "TCF_VENDOR_ID": "755",
        "CORS_ORIGINS": "https://shop.example,https://www.shop.example",
        "ORIGIN_VERIFY_SECRET": origin_secret_reference(prod_stack),
    }


def test_http_api_has_exactly_the_public_routes(prod_stack: Synthesised) -> None:
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


def test_distribution_forwards_to_the_http_api_over_https_only(prod_stack: Synthesised) -> None:
    config = distribution_config(prod_stack)
    (origin,) = config["Origins"]
    # The $default stage sits at the root of the API's execute-api host name.
    assert origin["DomainName"] == {
        "Fn::Join": [
            "",
            [
                prod_stack.ref(prod_stack.stack.ingest.http_api),
                ".execute-api.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
            ],
        ]
    }
    assert "OriginPath" not in origin
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    behaviours = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    assert {b["TargetOriginId"] for b in behaviours} == {origin["Id"]}


def test_origin_requests_carry_the_viewer_location_consent_headers_cookies_and_query(
    prod_stack: Synthesised,
) -> None:
    policy = prod_stack.properties(prod_stack.stack.ingest.origin_request_policy)["OriginRequestPolicyConfig"]
    assert policy["HeadersConfig"]["HeaderBehavior"] == "whitelist"
    headers = set(policy["HeadersConfig"]["Headers"])
    assert headers >= GEO_HEADERS
    assert headers >= REQUEST_HEADERS
    # The API answers only to its own host name; and CloudFront's default quota is 10 headers.
    assert "Host" not in headers
    assert len(headers) <= 10
    # The visitor cookie goes in (and its Set-Cookie comes back); so does every pixel parameter.
    assert policy["CookiesConfig"] == {"CookieBehavior": "all"}
    assert policy["QueryStringsConfig"] == {"QueryStringBehavior": "all"}


@pytest.mark.parametrize("path", ["/p.gif", "/collect", "/optout", "/sync", "*"])
def test_hits_are_never_cached_and_reach_the_function_with_the_viewer_data(prod_stack: Synthesised, path: str) -> None:
    # GIVEN the behaviour of a collection path (or of any other path, such as routes to come)
    found = behaviour(prod_stack, path)
    # THEN every request goes to the origin, with the origin request policy, over HTTPS
    assert found["CachePolicyId"] == CACHING_DISABLED
    assert found["OriginRequestPolicyId"] == prod_stack.ref(prod_stack.stack.ingest.origin_request_policy)
    assert set(found["AllowedMethods"]) == ALL_METHODS
    assert found["ViewerProtocolPolicy"] == "redirect-to-https"
    # No response headers policy that could touch Set-Cookie or Cache-Control.
    assert "ResponseHeadersPolicyId" not in found


def test_the_tag_is_cached_for_as_long_as_the_function_says(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest
    found = behaviour(prod_stack, "/tag.js")
    assert found["CachePolicyId"] == prod_stack.ref(ingest.tag_cache_policy)
    # A shared cached answer must not depend on one viewer's Origin or cookies.
    assert "OriginRequestPolicyId" not in found
    assert set(found["AllowedMethods"]) == {"GET", "HEAD"}
    assert found["ViewerProtocolPolicy"] == "redirect-to-https"
    policy = prod_stack.properties(ingest.tag_cache_policy)["CachePolicyConfig"]
    # min 0: the origin's Cache-Control (public, max-age=3600) decides; an hour when it is silent.
    assert (policy["MinTTL"], policy["DefaultTTL"]) == (0, 3600)
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}
    assert key["HeadersConfig"] == {"HeaderBehavior": "none"}


def test_distribution_serves_http2_and_3_at_the_configured_price_class(prod_stack: Synthesised) -> None:
    config = distribution_config(prod_stack)
    assert config["Enabled"] is True
    assert config["HttpVersion"] == "http2and3"
    # GIVEN `-c cloudfront_price_class=PriceClass_All` (cdk.json says PRICE_CLASS_100)
    assert config["PriceClass"] == "PriceClass_All"


def test_price_class_defaults_to_the_cheapest(dev_stack: Synthesised) -> None:
    assert distribution_config(dev_stack)["PriceClass"] == "PriceClass_100"


def test_distribution_keeps_no_access_log_of_viewer_ips(prod_stack: Synthesised) -> None:
    # CloudFront's standard logs always hold the viewer's IP; raw IPs are never stored (DESIGN.md).
    assert "Logging" not in distribution_config(prod_stack)


# --- the origin-verify secret: only CloudFront's requests carry it --------------------

ORIGIN_VERIFY_HEADER = "x-dmp-origin-verify"  # functions/ingest/logic.py reads this name


def origin_secret_reference(synthesised: Synthesised) -> dict[str, Any]:
    """A versionless `{{resolve:secretsmanager:...}}` dynamic reference to the origin
    secret: CloudFormation puts the secret's current value there at deploy time."""
    secret = synthesised.ref(synthesised.stack.ingest.origin_verify_secret)
    return {"Fn::Join": ["", ["{{resolve:secretsmanager:", secret, ":SecretString:::}}"]]}


def test_the_origin_secret_is_generated_at_deploy_as_a_header_safe_value(prod_stack: Synthesised) -> None:
    secret = prod_stack.properties(prod_stack.stack.ingest.origin_verify_secret)
    # Secrets Manager generates it: letters and digits only, as it travels as a header value.
    assert "SecretString" not in secret
    generated = secret["GenerateSecretString"]
    assert generated["ExcludePunctuation"] is True
    assert generated["IncludeSpace"] is False
    assert generated["PasswordLength"] >= 32
    assert "SecretStringTemplate" not in generated


@pytest.mark.parametrize("fixture", ["prod_stack", "dev_stack"])
def test_every_origin_request_carries_the_origin_secret_by_dynamic_reference(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    synthesised: Synthesised = request.getfixturevalue(fixture)
    (origin,) = distribution_config(synthesised)["Origins"]
    # One origin behind every behaviour, /tag.js included: all of them add the header.
    assert origin["OriginCustomHeaders"] == [
        {"HeaderName": ORIGIN_VERIFY_HEADER, "HeaderValue": origin_secret_reference(synthesised)}
    ]


def test_the_ingest_function_gets_the_origin_secret_resolved_at_deploy(dev_stack: Synthesised) -> None:
    variables = dev_stack.properties(dev_stack.stack.ingest.function)["Environment"]["Variables"]
    assert variables["ORIGIN_VERIFY_SECRET"] == origin_secret_reference(dev_stack)


def test_the_origin_secret_appears_only_as_dynamic_references(prod_stack: Synthesised) -> None:
    # GIVEN the whole template as text
    template = json.dumps(prod_stack.template.to_json())
    # THEN the secret is used only through `{{resolve:...}}`, in exactly the two places
    # that need it (the origin's header and the function's environment), and no secret
    # in the stack has a value written into the template
    assert template.count('"{{resolve:secretsmanager:"') == 2
    secrets = prod_stack.template.find_resources("AWS::SecretsManager::Secret")
    assert secrets, "no secret"
    assert all("SecretString" not in secret["Properties"] for secret in secrets.values())


def test_viewers_cannot_send_the_verify_header_through_cloudfront(prod_stack: Synthesised) -> None:
    policy = prod_stack.properties(prod_stack.stack.ingest.origin_request_policy)["OriginRequestPolicyConfig"]
    assert ORIGIN_VERIFY_HEADER not in {header.lower() for header in policy["HeadersConfig"]["Headers"]}


def test_the_ingest_function_needs_no_access_to_the_origin_secret(prod_stack: Synthesised) -> None:
    # CloudFormation resolves the reference at deploy time: the function never calls Secrets Manager.
    statements = role_statements(prod_stack, prod_stack.stack.ingest.function.role)
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert not {action for action in actions if action.startswith("secretsmanager:")}


def test_the_sync_route_is_public_and_invokes_the_ingest_function(prod_stack: Synthesised) -> None:
    # GIVEN the ingest API's routes and the integration each names
    ingest = prod_stack.stack.ingest
    routes = prod_stack.template.find_resources(
        "AWS::ApiGatewayV2::Route", {"Properties": {"ApiId": prod_stack.ref(ingest.http_api), "RouteKey": "GET /sync"}}
    )
    # THEN `GET /sync` is one route, without authorisation (browsers call it as partners redirect them)
    (route,) = routes.values()
    assert route["Properties"].get("AuthorizationType", "NONE") == "NONE"
    prefix, integration_ref = route["Properties"]["Target"]["Fn::Join"][1]
    assert prefix == "integrations/"
    # AND it reaches the ingest function, as the pixel does
    integration = prod_stack.template.to_json()["Resources"][integration_ref["Ref"]]["Properties"]
    assert integration["IntegrationUri"] == prod_stack.arn(ingest.function)


# --- the site's own collection domain: a first-party visitor cookie ------------------

CUSTOM_DOMAIN = "collect.shop.example"  # PROD_CONTEXT's ingest_domain
PROD_CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
CERTIFICATE_IN_EU = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def output(synthesised: Synthesised, name: str) -> Any:
    return synthesised.template.find_outputs(name)[name]["Value"]


def acknowledged_rules(synthesised: Synthesised) -> set[str]:
    """The cdk-nag rules acknowledged on the distribution (CDK keeps them as metadata)."""
    return {
        rule.removeprefix("Annotation::")
        for entry in synthesised.stack.ingest.distribution.node.metadata
        if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule in entry.data
    }


def test_with_a_custom_domain_the_distribution_answers_on_it_with_its_certificate_and_tls_1_2(
    prod_stack: Synthesised,
) -> None:
    # GIVEN `-c ingest_domain=collect.shop.example -c ingest_certificate_arn=<its us-east-1 certificate>`
    config = distribution_config(prod_stack)
    # THEN the distribution answers on that name, with that certificate (imported by ARN,
    # not looked up), over SNI and no older protocol than TLS 1.2 (the 2021 policy)
    assert config["Aliases"] == [CUSTOM_DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": PROD_CERTIFICATE,
        "SslSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021",
    }
    assert not prod_stack.template.find_resources("AWS::CertificateManager::Certificate")


def test_with_a_custom_domain_sites_embed_it_and_the_distribution_name_is_the_dns_target(
    prod_stack: Synthesised,
) -> None:
    distribution = prod_stack.logical_id(prod_stack.stack.ingest.distribution)
    # The tag's and the pixel's base URL is the site's own subdomain...
    assert output(prod_stack, "IngestUrl") == f"https://{CUSTOM_DOMAIN}"
    # ...whose CNAME (or Route 53 alias) points at the distribution's own name.
    assert output(prod_stack, "IngestDistributionDomainName") == {"Fn::GetAtt": [distribution, "DomainName"]}


def test_without_a_custom_domain_the_distribution_keeps_its_cloudfront_name_and_certificate(
    dev_stack: Synthesised,
) -> None:
    config = distribution_config(dev_stack)
    assert "Aliases" not in config
    assert "ViewerCertificate" not in config  # CloudFront's default *.cloudfront.net certificate
    distribution = dev_stack.logical_id(dev_stack.stack.ingest.distribution)
    assert output(dev_stack, "IngestDistributionDomainName") == {"Fn::GetAtt": [distribution, "DomainName"]}


def test_with_a_custom_domain_the_outdated_tls_finding_is_fixed_not_acknowledged(
    prod_stack: Synthesised, dev_stack: Synthesised
) -> None:
    # cdk-nag finds nothing unacknowledged in either stack (test_cdk_app.py); CFR4 (viewers
    # may use TLSv1) is acknowledged only where the default certificate makes it true.
    assert "AwsSolutions-CFR4" not in acknowledged_rules(prod_stack)
    assert "AwsSolutions-CFR4" in acknowledged_rules(dev_stack)


@pytest.mark.parametrize(
    ("context", "error"),
    [
        # Both or neither.
        ({"ingest_domain": CUSTOM_DOMAIN}, r"context 'ingest_certificate_arn' is missing"),
        ({"ingest_certificate_arn": PROD_CERTIFICATE}, r"context 'ingest_domain' is missing"),
        # CloudFront only takes certificates from ACM in us-east-1.
        (
            {"ingest_domain": CUSTOM_DOMAIN, "ingest_certificate_arn": CERTIFICATE_IN_EU},
            r"context 'ingest_certificate_arn': CloudFront takes viewer certificates from ACM in us-east-1 only; "
            r"this one is in eu-west-1",
        ),
        (
            {"ingest_domain": CUSTOM_DOMAIN, "ingest_certificate_arn": PROD_CERTIFICATE.replace("aws", "aws-cn", 1)},
            r"context 'ingest_certificate_arn': CloudFront takes ACM certificates of the aws partition only",
        ),
        (
            {
                "ingest_domain": CUSTOM_DOMAIN,
                "ingest_certificate_arn": "arn:aws:iam::123456789012:server-certificate/collect",
            },
            r"context 'ingest_certificate_arn': expected an ACM certificate ARN",
        ),
        (
            {"ingest_domain": CUSTOM_DOMAIN, "ingest_certificate_arn": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"},
            r"context 'ingest_certificate_arn': expected an ACM certificate ARN",
        ),
        # A host name, not a URL, a wildcard or a single label.
        *(
            ({"ingest_domain": domain, "ingest_certificate_arn": PROD_CERTIFICATE}, r"context 'ingest_domain'")
            for domain in (
                "https://collect.shop.example",
                "collect.shop.example/",
                "collect.shop.example:443",
                "*.shop.example",
                "collect",
                "collect..shop.example",
                "-collect.shop.example",
                "192.0.2.10",
            )
        ),
    ],
)
def test_a_bad_custom_domain_stops_synth_with_a_clear_error(
    tmp_path: Path, context: dict[str, str], error: str
) -> None:
    with pytest.raises(ContextError, match=error):
        create_app(context={**SKIP_BUNDLING, **context}, outdir=str(tmp_path))


def test_a_custom_domain_is_taken_in_any_case_as_its_lower_case_name(tmp_path: Path) -> None:
    context = {"ingest_domain": " Collect.Shop.Example ", "ingest_certificate_arn": PROD_CERTIFICATE}
    app = App(context={**cdk_json_context(), **context}, outdir=str(tmp_path))
    settings = DeploySettings.from_context(app.node, root=tmp_path)
    assert settings.ingest_domain == IngestDomain(name=CUSTOM_DOMAIN, certificate_arn=PROD_CERTIFICATE)


def test_no_custom_domain_by_default(tmp_path: Path) -> None:
    app = App(context=cdk_json_context(), outdir=str(tmp_path))
    assert DeploySettings.from_context(app.node, root=tmp_path).ingest_domain is None
