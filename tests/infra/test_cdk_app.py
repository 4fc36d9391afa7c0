"""The app as a whole: its outputs, its security findings and how it refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.app import create_app
from infra.settings import ContextError
from infra.storage import InvalidSegmentDefinitions
from tests.infra.synthesis import SKIP_BUNDLING, Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app

OUTPUTS = {
    "IngestUrl",
    "IngestDistributionDomainName",
    "IngestApiUrl",
    "LookupUrl",
    "EventsTableName",
    "MembershipTableName",
    "PartnersTableName",
    "CatalogTableName",
    "SuppressionTableName",
    "IdMapTableName",
    "BucketName",
    "BuilderFunctionName",
    "BuildStateMachineArn",
    "LookupUsagePlanId",
    "FallbackQueueUrl",
    "Region",
    "RetentionDays",
}


def test_stack_is_named_after_the_stage(prod_stack: Synthesised, dev_stack: Synthesised) -> None:
    assert prod_stack.stack.stack_name == "Dmp-prod"
    assert dev_stack.stack.stack_name == "Dmp-dev"


def test_stack_is_environment_agnostic(prod_stack: Synthesised) -> None:
    # No account or region baked in: no lookups, no AWS calls at synth time.
    assert prod_stack.stack.resolve(prod_stack.stack.account) == {"Ref": "AWS::AccountId"}
    assert prod_stack.stack.resolve(prod_stack.stack.region) == {"Ref": "AWS::Region"}


def test_outputs_are_exactly_those_the_cli_reads(prod_stack: Synthesised) -> None:
    outputs = prod_stack.template.find_outputs("*")
    assert set(outputs) == OUTPUTS
    stack = prod_stack.stack
    assert outputs["EventsTableName"]["Value"] == prod_stack.ref(stack.storage.events_table)
    assert outputs["MembershipTableName"]["Value"] == prod_stack.ref(stack.storage.membership_table)
    assert outputs["PartnersTableName"]["Value"] == prod_stack.ref(stack.storage.partners_table)
    assert outputs["CatalogTableName"]["Value"] == prod_stack.ref(stack.storage.catalog_table)
    assert outputs["SuppressionTableName"]["Value"] == prod_stack.ref(stack.storage.suppression_table)
    assert outputs["IdMapTableName"]["Value"] == prod_stack.ref(stack.storage.id_map_table)
    assert outputs["BucketName"]["Value"] == prod_stack.ref(stack.storage.bucket)
    assert outputs["BuilderFunctionName"]["Value"] == prod_stack.ref(stack.builder.function)
    assert outputs["FallbackQueueUrl"]["Value"] == prod_stack.ref(stack.replay.queue)
    assert outputs["IngestApiUrl"]["Value"] == {
        "Fn::GetAtt": [prod_stack.logical_id(stack.ingest.http_api), "ApiEndpoint"]
    }
    assert outputs["Region"]["Value"] == {"Ref": "AWS::Region"}
    assert outputs["RetentionDays"]["Value"] == "30"


def test_ingest_url_is_the_distribution_so_hits_carry_the_viewer_location(dev_stack: Synthesised) -> None:
    # GIVEN no custom domain (cdk.json's default; see test_cdk_ingest.py for one)
    value = dev_stack.template.find_outputs("IngestUrl")["IngestUrl"]["Value"]
    distribution = dev_stack.logical_id(dev_stack.stack.ingest.distribution)
    assert value == {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}]]}


def test_lookup_url_is_the_stage_base_url_without_trailing_slash(prod_stack: Synthesised) -> None:
    value = prod_stack.template.find_outputs("LookupUrl")["LookupUrl"]["Value"]
    assert value == {
        "Fn::Join": [
            "",
            [
                "https://",
                prod_stack.ref(prod_stack.stack.lookup.api),
                ".execute-api.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
                "/prod",
            ],
        ]
    }


@pytest.mark.parametrize("pack", [AwsSolutionsChecks, ServerlessChecks])
@pytest.mark.parametrize("fixture", ["prod_stack", "dev_stack"])
def test_cdk_nag_packs_find_nothing_unacknowledged(
    request: pytest.FixtureRequest, fixture: str, pack: type[AwsSolutionsChecks | ServerlessChecks]
) -> None:
    synthesised: Synthesised = request.getfixturevalue(fixture)
    report = pack().validate_scope(synthesised.app)
    findings = [
        f"{violation.rule_name} at {resource.construct_path}"
        for violation in report.violations
        for resource in violation.violating_resources
    ]
    assert findings == []


def test_a_finding_of_either_cdk_nag_pack_fails_synth(tmp_path: Path) -> None:
    # GIVEN the app with one more queue, which has no dead-letter queue of its own
    app, stack = create_app(context=SKIP_BUNDLING, outdir=str(tmp_path))
    sqs.Queue(stack, "Unacknowledged", enforce_ssl=True)
    # WHEN synthesised (`make synth`) THEN it fails, and each pack names the queue
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    failed = {
        (plugin["pluginName"], violation["ruleName"], resource["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for resource in violation["violatingConstructs"]
    }
    assert ("AwsSolutions", "AwsSolutions-SQS3", "Dmp-dev/Unacknowledged/Resource") in failed
    assert ("Serverless", "Serverless-SQSRedrivePolicy", "Dmp-dev/Unacknowledged/Resource") in failed


@pytest.mark.parametrize("fixture", ["prod_stack", "dev_stack"])
def test_synth_raises_no_warnings_or_errors(request: pytest.FixtureRequest, fixture: str) -> None:
    # cdk-nag v3 reports through the validation plugin above, not as annotations; these
    # are CDK's own (deprecations, misconfigurations).
    annotations = Annotations.from_stack(request.getfixturevalue(fixture).stack)
    messages = [*annotations.find_error("*", Match.any_value()), *annotations.find_warning("*", Match.any_value())]
    assert [f"{message.id}: {message.entry.data}" for message in messages] == []


def test_an_invalid_segment_definition_stops_synth_naming_the_file(tmp_path: Path) -> None:
    # GIVEN a segments directory with one good and one broken definition
    (tmp_path / "good.yaml").write_text("id: good\nname: Good\nrule: {visits: {min: 2}}\n")
    (tmp_path / "broken-rule.yaml").write_text("id: broken\nname: Broken\nrule: {visits: {min: 3, max: 1}}\n")
    # WHEN the app is synthesised from it
    # THEN synth stops, naming the file, the path inside it and the reason
    with pytest.raises(InvalidSegmentDefinitions, match=r"broken-rule\.yaml: rule\.visits: min \(3\) is greater"):
        create_app(context={**SKIP_BUNDLING, "segments_dir": str(tmp_path)}, outdir=str(tmp_path / "out"))


def test_unparseable_yaml_stops_synth_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "garbled.yaml").write_text("id: [unclosed\n")
    with pytest.raises(InvalidSegmentDefinitions, match=r"garbled\.yaml: not valid YAML"):
        create_app(context={**SKIP_BUNDLING, "segments_dir": str(tmp_path)}, outdir=str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("build_shards", "four"),
        ("retention_days", "0"),
        ("build_schedule", "every hour"),
        ("stage", "Prod_1"),
        ("cors_origins", "shop.example"),
        ("authorizer_cache_seconds", "7200"),
        ("openrtb_segtax", "-1"),
        ("catalog_refresh_seconds", "0"),
        ("cloudfront_price_class", "PriceClass_50"),
    ],
)
def test_a_malformed_context_value_stops_synth_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ContextError, match=rf"context '{key}'"):
        create_app(context={**SKIP_BUNDLING, key: value}, outdir=str(tmp_path))
