"""The standard scanners on the synthesised templates: checkov and cfn-lint find nothing
that is not acknowledged on its resource with a reason (cdk-nag: test_cdk_app.py).

They run from .venv-scan (`make scan-deps`, which `make test` runs first); without it
these tests fail, never skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.scanners import SCAN_VENV, ScannerMissing, cfn_lint, checkov, executable
from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app and runs the scanners

# A function with nothing set: no reserved concurrency, no dead-letter queue, no VPC, and
# CDK's redundant DependsOn on its role.
BARE_FUNCTION_TEMPLATE = {
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["Role"],
            "Properties": {
                "Runtime": "python3.11",
                "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "def handler(event, context): pass"},
            },
        },
    }
}


def bare_function(tmp_path: Path, metadata: dict[str, object] | None = None) -> Path:
    template = json.loads(json.dumps(BARE_FUNCTION_TEMPLATE))
    if metadata:
        template["Resources"]["Function"]["Metadata"] = metadata
    path = tmp_path / "bare.template.json"
    path.write_text(json.dumps(template))
    return path


@pytest.mark.parametrize("fixture", ["prod_stack", "dev_stack"])
def test_checkov_finds_nothing_unacknowledged(request: pytest.FixtureRequest, fixture: str) -> None:
    synthesised: Synthesised = request.getfixturevalue(fixture)
    assert [str(finding) for finding in checkov(synthesised.template_file)] == []


@pytest.mark.parametrize("fixture", ["prod_stack", "dev_stack"])
def test_cfn_lint_finds_nothing_unacknowledged(request: pytest.FixtureRequest, fixture: str) -> None:
    synthesised: Synthesised = request.getfixturevalue(fixture)
    assert [str(finding) for finding in cfn_lint(synthesised.template_file)] == []


def test_the_scanners_report_what_they_find(tmp_path: Path) -> None:
    # GIVEN a template whose function has none of what the checks ask for
    template = bare_function(tmp_path)
    # WHEN scanned THEN the findings are reported, by rule and resource
    assert {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117"} <= {f.rule for f in checkov(template)}
    assert ("W3005", "Resources/Function") in {(f.rule, f.resource) for f in cfn_lint(template)}


def test_an_acknowledgement_silences_only_its_own_check_and_needs_a_reason(tmp_path: Path) -> None:
    # GIVEN a function that skips one check with a reason, one without, and ignores W3005
    template = bare_function(
        tmp_path,
        {
            "checkov": {"skip": [{"id": "CKV_AWS_115", "comment": "a reason"}, {"id": "CKV_AWS_117", "comment": ""}]},
            "cfn-lint": {"config": {"ignore_checks": ["W3005"]}},
        },
    )
    # WHEN scanned
    findings = {(f.rule, f.message) for f in checkov(template)}
    # THEN the skipped check is gone, the unexplained skip is a finding, the rest remain
    assert "CKV_AWS_115" not in {rule for rule, _ in findings}
    assert ("CKV_AWS_117", "skipped without a reason") in findings
    assert "CKV_AWS_116" in {rule for rule, _ in findings}
    assert cfn_lint(template) == []


def test_the_scanners_come_from_their_own_venv_and_are_required(tmp_path: Path) -> None:
    # The project's venv holds the runtime pins (boto3...); checkov's pins live apart.
    assert executable("checkov").is_relative_to(SCAN_VENV)
    assert executable("cfn-lint").is_relative_to(SCAN_VENV)
    with pytest.raises(ScannerMissing, match=r"make scan-deps"):
        executable("checkov", venv=tmp_path / ".venv-scan")
