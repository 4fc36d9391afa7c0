"""A rate limit in front of the public collection endpoints: a WAF web ACL whose one rule
blocks an IP that sends more than `limit` requests within RATE_LIMIT_WINDOW, for
CloudFront.

A web ACL for CloudFront (scope CLOUDFRONT) can only be created in us-east-1. The stack is
region-agnostic (its region is `AWS::Region`, known at deploy time), so the web ACL is
created, and attached to the distribution, only when the stack is deployed there; the
stack output `IngestRateLimit` says whether it is on, and how to have it elsewhere (attach
a web ACL made in us-east-1 with `ingest_web_acl_arn`). A default `cdk deploy` thus works
in every region.

WAF's sampled requests are off: they keep the client IP of each sample, and DESIGN.md says
raw IPs are never stored. Its CloudWatch metrics (allowed and blocked counts) stay on.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnCondition, CfnOutput, Fn, Stack
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.compliance import skip_check
from infra.settings import CLOUDFRONT_CERTIFICATE_REGION, RATE_LIMIT_WINDOW

RATE_LIMIT_RULE = "RateLimitPerIp"


def rate_limited_web_acl(scope: Construct, construct_id: str, *, limit: int, description: str) -> str:
    """A CLOUDFRONT web ACL that allows everything but more than `limit` requests of one IP
    per RATE_LIMIT_WINDOW, which it blocks (403) until the IP's rate falls below `limit`,
    created when the stack is deployed in us-east-1. Returns the value of the
    distribution's `WebACLId`: the ACL's ARN there, no value elsewhere."""
    in_cloudfront_region = CfnCondition(
        scope,
        f"{construct_id}Region",
        expression=Fn.condition_equals(Aws.REGION, CLOUDFRONT_CERTIFICATE_REGION),
    )
    metric_prefix = f"{Stack.of(scope).stack_name}-{construct_id}"
    web_acl = wafv2.CfnWebACL(
        scope,
        construct_id,
        scope="CLOUDFRONT",
        description=description,
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=_visibility(metric_prefix),
        rules=[
            wafv2.CfnWebACL.RuleProperty(
                name=RATE_LIMIT_RULE,
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=limit,
                        aggregate_key_type="IP",
                        evaluation_window_sec=int(RATE_LIMIT_WINDOW.total_seconds()),
                    )
                ),
                visibility_config=_visibility(f"{metric_prefix}-{RATE_LIMIT_RULE}"),
            )
        ],
    )
    skip_check(
        web_acl,
        "CKV_AWS_192",
        "No AWS managed rule group for Log4j (KnownBadInputs): nothing behind this web ACL runs Java, "
        "and the pixel must answer odd-looking query strings (URLs, referrers, consent strings) as data.",
    )
    web_acl.cfn_options.condition = in_cloudfront_region
    CfnOutput(
        scope,
        "IngestRateLimit",
        description="Whether the collection endpoints' per-IP rate limit is on",
        value=Fn.condition_if(
            in_cloudfront_region.logical_id,
            f"on: at most {limit} requests per IP per {int(RATE_LIMIT_WINDOW.total_seconds() // 60)} minutes",
            f"off: a CloudFront web ACL can only be made in {CLOUDFRONT_CERTIFICATE_REGION}; make one there and "
            "deploy with -c ingest_web_acl_arn=<its ARN>",
        ).to_string(),
    )
    return Fn.condition_if(in_cloudfront_region.logical_id, web_acl.attr_arn, Aws.NO_VALUE).to_string()


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=False
    )
