"""What bounds the stack's use of the account: each function's reserved concurrency, and
the rate limit (a WAF web ACL) in front of the public collection endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.app import create_app
from infra.scanners import checkov
from infra.settings import ContextError
from tests.infra.synthesis import PROD_WEB_ACL, SKIP_BUNDLING, Synthesised, synthesise

pytestmark = pytest.mark.slow  # synthesises the CDK app

FUNCTIONS = ("ingest", "lookup", "authorizer", "builder", "replay", "importer", "evaluator", "sweep")
# No reservation at all: an account whose quota leaves nothing to reserve (new accounts).
UNRESERVED = {f"{name}_reserved_concurrency": "0" for name in FUNCTIONS}


@pytest.fixture(scope="module")
def small_account_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesised:
    """Nothing reserved, and no rate limit (so no web ACL)."""
    return synthesise({**SKIP_BUNDLING, **UNRESERVED, "ingest_rate_limit": "0"}, tmp_path_factory.mktemp("small"))


def function_of(synthesised: Synthesised, name: str) -> Any:
    stack = synthesised.stack
    return {
        "ingest": stack.ingest.function,
        "lookup": stack.lookup.function,
        "authorizer": stack.lookup.authorizer_function,
        "builder": stack.builder.function,
        "replay": stack.replay.function,
        "importer": stack.importer.function,
        "evaluator": stack.evaluator.function,
        "sweep": stack.evaluator.sweep_function,
    }[name]


def reserved(synthesised: Synthesised) -> dict[str, int | None]:
    return {
        name: synthesised.properties(function_of(synthesised, name)).get("ReservedConcurrentExecutions")
        for name in FUNCTIONS
    }


def test_each_function_reserves_the_concurrency_its_context_says(prod_stack: Synthesised) -> None:
    assert reserved(prod_stack) == {
        "ingest": 600,
        "lookup": 200,
        "authorizer": 40,
        "builder": 8,
        "replay": 20,
        "importer": 5,
        "evaluator": 10,
        "sweep": 1,
    }


def test_by_default_a_pixel_flood_cannot_starve_the_lookup_of_a_default_account(dev_stack: Synthesised) -> None:
    # GIVEN cdk.json's defaults, for a new account's 1000 concurrent executions
    by_function = reserved(dev_stack)
    # THEN ingest is capped, the lookup and its authorizer have their own share, and what is
    # reserved leaves Lambda its unreserved minimum of 100
    assert by_function == {
        "ingest": 300,
        "lookup": 100,
        "authorizer": 50,
        "builder": 50,
        "replay": 10,
        "importer": 10,
        "evaluator": 10,
        "sweep": 1,
    }
    assert sum(value or 0 for value in by_function.values()) <= 1000 - 100


def test_the_replay_polls_no_more_at_once_than_it_may_run(prod_stack: Synthesised) -> None:
    # Polls beyond its reservation would be throttled, and a throttled message counts a
    # receive towards the dead-letter queue.
    prod_stack.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": prod_stack.ref(prod_stack.stack.replay.function),
            "ScalingConfig": {"MaximumConcurrency": 20},
        },
    )


def test_zero_leaves_a_function_unreserved_and_says_why(small_account_stack: Synthesised) -> None:
    assert reserved(small_account_stack) == dict.fromkeys(FUNCTIONS)
    for name in FUNCTIONS:
        (skip,) = (
            skip
            for skip in small_account_stack.resource(function_of(small_account_stack, name))["Metadata"]["checkov"][
                "skip"
            ]
            if skip["id"] == "CKV_AWS_115"
        )
        assert f"{name}_reserved_concurrency=0" in skip["comment"]
    mapping = small_account_stack.template.find_resources("AWS::Lambda::EventSourceMapping")
    assert all("ScalingConfig" not in m["Properties"] for m in mapping.values())


@pytest.mark.parametrize(
    ("context", "error"),
    [
        # 300 + 100 + 50 + 50 + 10 + 10 + 10 (evaluator) + 1 (sweep) = 531 of 500 - 100 reservable
        ({"lambda_account_concurrency": "500"}, r"reserve 531 .*more than the 400 .*account concurrency of 500"),
        ({"ingest_reserved_concurrency": "700"}, r"reserve 931 .*more than the 900"),
        # a build runs min(build_shards, 40) shards at once
        (
            {"build_shards": "16", "builder_reserved_concurrency": "10"},
            r"context 'builder_reserved_concurrency': 10 is fewer than the 16 shards",
        ),
        ({"replay_reserved_concurrency": "1"}, r"context 'replay_reserved_concurrency': expected 0 .* or at least 2"),
        ({"lookup_reserved_concurrency": "-1"}, r"context 'lookup_reserved_concurrency': expected 0\.\.10000"),
    ],
)
def test_an_unreservable_concurrency_stops_synth(tmp_path: Path, context: dict[str, str], error: str) -> None:
    with pytest.raises(ContextError, match=error):
        create_app(context={**SKIP_BUNDLING, **context}, outdir=str(tmp_path))


def test_the_pixel_is_rate_limited_per_ip_at_the_edge(dev_stack: Synthesised) -> None:
    # GIVEN cdk.json's defaults: the stack's own web ACL, 2000 requests per IP per 5 minutes
    dev_stack.template.has_resource_properties(
        "AWS::WAFv2::WebACL",
        {
            "Scope": "CLOUDFRONT",
            "DefaultAction": {"Allow": {}},
            "Rules": [
                {
                    "Name": "RateLimitPerIp",
                    "Priority": 0,
                    "Action": {"Block": {}},
                    "Statement": {
                        "RateBasedStatement": {"Limit": 2000, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
                    },
                    # no samples: they keep the client's IP
                    "VisibilityConfig": Match.object_like({"SampledRequestsEnabled": False}),
                }
            ],
            "VisibilityConfig": Match.object_like({"CloudWatchMetricsEnabled": True, "SampledRequestsEnabled": False}),
        },
    )
    (web_acl,) = dev_stack.template.find_resources("AWS::WAFv2::WebACL")
    config = dev_stack.properties(dev_stack.stack.ingest.distribution)["DistributionConfig"]
    condition = dev_stack.template.to_json()["Resources"][web_acl]["Condition"]
    assert config["WebACLId"] == {"Fn::If": [condition, {"Fn::GetAtt": [web_acl, "Arn"]}, {"Ref": "AWS::NoValue"}]}


def test_the_web_acl_is_made_in_us_east_1_only_and_an_output_says_whether_it_is_on(dev_stack: Synthesised) -> None:
    # A CLOUDFRONT web ACL can be made in us-east-1 only: elsewhere the stack deploys without
    # it, and its output says so and how to attach one.
    template = dev_stack.template.to_json()
    (web_acl,) = dev_stack.template.find_resources("AWS::WAFv2::WebACL")
    condition = template["Resources"][web_acl]["Condition"]
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    output = next(o for name, o in template["Outputs"].items() if name.startswith("IngestIngestRateLimit"))
    on, off = output["Value"]["Fn::If"][1:]
    assert on.startswith("on: at most 2000 requests per IP") and "ingest_web_acl_arn" in off
    assert "AWS::Region" not in json_text(template.get("Rules", {}))  # nothing stops a deploy in another region


def test_a_web_acl_made_elsewhere_is_attached_instead(prod_stack: Synthesised) -> None:
    config = prod_stack.properties(prod_stack.stack.ingest.distribution)["DistributionConfig"]
    assert config["WebACLId"] == PROD_WEB_ACL
    assert prod_stack.template.find_resources("AWS::WAFv2::WebACL") == {}
    assert "IngestWebAclRegion" not in prod_stack.template.to_json().get("Conditions", {})


def test_without_a_rate_limit_there_is_no_web_acl_and_the_scanners_are_told_why(
    small_account_stack: Synthesised,
) -> None:
    assert small_account_stack.template.find_resources("AWS::WAFv2::WebACL") == {}
    config = small_account_stack.properties(small_account_stack.stack.ingest.distribution)["DistributionConfig"]
    assert "WebACLId" not in config
    skips = small_account_stack.resource(small_account_stack.stack.ingest.distribution)["Metadata"]["checkov"]["skip"]
    assert any(skip["id"] == "CKV_AWS_68" and "ingest_rate_limit=0" in skip["comment"] for skip in skips)
    # and every other acknowledgement of this configuration holds too
    assert [str(finding) for finding in checkov(small_account_stack.template_file)] == []


@pytest.mark.parametrize("value", ["5", "-1", "2000000001", "many"])
def test_a_rate_limit_waf_cannot_take_stops_synth(tmp_path: Path, value: str) -> None:
    with pytest.raises(ContextError, match=r"context 'ingest_rate_limit': expected"):
        create_app(context={**SKIP_BUNDLING, "ingest_rate_limit": value}, outdir=str(tmp_path))


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/dmp/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
            r"CloudFront takes web ACLs of CLOUDFRONT scope only, which are made in us-east-1",
        ),
        ("dmp-edge", r"expected a WAF web ACL ARN"),
    ],
)
def test_a_web_acl_cloudfront_cannot_take_stops_synth(tmp_path: Path, value: str, error: str) -> None:
    with pytest.raises(ContextError, match=rf"context 'ingest_web_acl_arn': {error}"):
        create_app(context={**SKIP_BUNDLING, "ingest_web_acl_arn": value}, outdir=str(tmp_path))


def json_text(value: object) -> str:
    return json.dumps(value)
