"""Synthesising the DMP app in tests, and reading the result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnElement
from aws_cdk.assertions import Template
from constructs import IConstruct

from infra.app import create_app
from infra.stack import DmpStack

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}

RETURNING_VISITORS = """\
id: returning-visitors
name: Returning visitors
destinations: [demo-dsp]
rule:
  visits: {min: 2, within_days: 30}
"""
NON_BUYERS = """\
id: non-buyers
name: Visitors who never bought
description: Everyone without a purchase
rule:
  all:
    - not: {event: {name: purchase}}
    - trait: {name: harbor-crm.tier, in: [bronze, silver]}
"""

PROD_WEB_ACL = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/dmp-edge/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"

# What `cdk deploy -c ...` would pass: strings, and different from every cdk.json default.
PROD_CONTEXT = {
    "stage": "prod",
    "retention_days": "30",
    "build_schedule": "cron(15 3 * * ? *)",
    "build_shards": "8",
    "tcf_vendor_id": "755",
    "cors_origins": "https://shop.example, https://www.shop.example",
    "authorizer_cache_seconds": "120",
    "data_provider_id": "acme-dmp",
    "data_provider_name": "Acme DMP",
    "openrtb_segtax": "4",
    "catalog_refresh_seconds": "45",
    # CloudFront's spelling; cdk.json uses CDK's (PRICE_CLASS_100).
    "cloudfront_price_class": "PriceClass_All",
    # The site's own subdomain for collection (cdk.json: none, the *.cloudfront.net name).
    "ingest_domain": "collect.shop.example",
    "ingest_certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
    # Each function's share of a raised account quota (cdk.json: 300, 100, 50, 50, 10, 10 of 1000).
    "lambda_account_concurrency": "3000",
    "ingest_reserved_concurrency": "600",
    "lookup_reserved_concurrency": "200",
    "authorizer_reserved_concurrency": "40",
    "builder_reserved_concurrency": "8",
    "replay_reserved_concurrency": "20",
    "importer_reserved_concurrency": "5",
    # A web ACL made in us-east-1 apart from the stack (cdk.json: the stack's own, 2000 per IP).
    "ingest_rate_limit": "5000",
    "ingest_web_acl_arn": PROD_WEB_ACL,
}


@dataclass
class Synthesised:
    app: App
    stack: DmpStack
    template: Template
    assembly: Path

    def logical_id(self, construct: IConstruct) -> str:
        element = construct if isinstance(construct, CfnElement) else construct.node.default_child
        assert isinstance(element, CfnElement), f"{construct.node.path} has no CloudFormation resource"
        return self.stack.get_logical_id(element)

    def resource(self, construct: IConstruct) -> dict[str, Any]:
        return self.template.to_json()["Resources"][self.logical_id(construct)]

    def properties(self, construct: IConstruct) -> dict[str, Any]:
        return self.resource(construct)["Properties"]

    def ref(self, construct: IConstruct) -> dict[str, str]:
        return {"Ref": self.logical_id(construct)}

    def arn(self, construct: IConstruct) -> dict[str, list[str]]:
        return {"Fn::GetAtt": [self.logical_id(construct), "Arn"]}

    @property
    def template_file(self) -> Path:
        """The synthesised template, as `make synth` writes it into cdk.out."""
        return self.assembly / self.stack.template_file

    def asset_dir(self, s3_key: str) -> Path:
        """The staged directory of the asset uploaded as `s3_key` (`<hash>.zip`)."""
        return self.assembly / f"asset.{s3_key.removesuffix('.zip')}"


def synthesise(context: dict[str, Any], outdir: Path) -> Synthesised:
    app, stack = create_app(context=context, outdir=str(outdir))
    assembly = app.synth()
    return Synthesised(app, stack, Template.from_stack(stack), Path(assembly.directory))


def role_statements(synthesised: Synthesised, role: IConstruct) -> list[dict[str, Any]]:
    """Every statement of every policy attached to `role`."""
    policies = synthesised.template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [synthesised.ref(role)]}}
    )
    return [
        statement for policy in policies.values() for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
