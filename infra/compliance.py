"""Security and lint findings: cdk-nag (v3) runs its AwsSolutions and Serverless packs on
every synth and fails it on a finding; checkov and cfn-lint read the synthesised template
(`make lint`, tests/infra/test_cdk_scanners.py, through infra/scanners.py).

Every finding that is not fixed is acknowledged on the resource it is about, with a reason:
- cdk-nag v3 replaced `NagSuppressions` with CDK's own `Validations.acknowledge`; a finding
  with several parts (IAM5 wildcards) is acknowledged one part at a time as
  `AwsSolutions-IAM5[<part>]`, the v3 form of v2's `applies_to`;
- checkov reads `Metadata: checkov: skip: [{id, comment}]` of the resource;
- cfn-lint reads `Metadata: cfn-lint: config: ignore_checks: [...]`, which has no room for
  a reason: the reason is where the rule is ignored (`ignore_lint`'s `reason`, and the code).
"""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import Acknowledgment, App, CfnElement, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True), ServerlessChecks(app, verbose=True))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one cdk-nag finding on `scope` (and the resources below it), saying why."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def skip_check(resource: IConstruct, check_id: str, reason: str) -> None:
    """Accept one checkov finding (`CKV_AWS_...`) on `resource` (a CloudFormation resource,
    or the construct whose default child it is), saying why."""
    cfn = cfn_resource(resource)
    metadata = cast(dict[str, Any], cfn.get_metadata("checkov") or {})
    skips = [skip for skip in metadata.get("skip", []) if skip["id"] != check_id]
    cfn.add_metadata("checkov", {**metadata, "skip": [*skips, {"id": check_id, "comment": reason}]})


def ignore_lint(resource: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one cfn-lint finding (`W3005`...) on `resource`. cfn-lint's metadata holds
    no reason: `reason` is for the reader of the call."""
    cfn = cfn_resource(resource)
    metadata = cast(dict[str, Any], cfn.get_metadata("cfn-lint") or {})
    config = cast(dict[str, Any], metadata.get("config", {}))
    ignored = [*config.get("ignore_checks", [])]
    if rule_id not in ignored:
        ignored.append(rule_id)
    cfn.add_metadata("cfn-lint", {**metadata, "config": {**config, "ignore_checks": ignored}})


def cfn_resource(construct: IConstruct) -> CfnResource:
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} is not a CloudFormation resource and has none as its default child")
    return resource


def arn_in_findings(resource: IConstruct) -> str:
    """How cdk-nag writes the ARN of a resource of this stack in a finding: `<LogicalId.Arn>`."""
    cfn = cast(CfnElement, resource.node.default_child)
    return f"<{Stack.of(resource).get_logical_id(cfn)}.Arn>"
