"""cdk-nag (v3) wiring: the AWS Solutions checks run on every synth and fail it on a finding.

cdk-nag v3 replaced `NagSuppressions` with CDK's own `Validations.acknowledge`; a finding
with several parts (IAM5 wildcards) is acknowledged one part at a time as
`AwsSolutions-IAM5[<part>]`, the v3 form of v2's `applies_to`.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Acknowledgment, App, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one finding on `scope` (and the resources below it), saying why."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def arn_in_findings(resource: IConstruct) -> str:
    """How cdk-nag writes the ARN of a resource of this stack in a finding: `<LogicalId.Arn>`."""
    cfn = cast(CfnElement, resource.node.default_child)
    return f"<{Stack.of(resource).get_logical_id(cfn)}.Arn>"
