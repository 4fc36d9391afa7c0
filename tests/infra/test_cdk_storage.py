"""The tables and the bucket as deployed, checked against the definitions the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from functions.core.layout import DEFINITIONS_PREFIX, SOURCES_PREFIX
from functions.core.segments import load_definitions
from functions.core.sources import load_sources
from functions.core.tables import (
    ALL_TABLES,
    CATALOG,
    DUE,
    EVENTS,
    ID_MAP,
    MEMBERSHIP,
    PARTNERS,
    SUPPRESSION,
    TableDefinition,
)
from infra.app import ROOT, create_app
from infra.storage import InvalidSegmentDefinitions, read_segment_definitions, read_source_definitions
from tests.infra.synthesis import SKIP_BUNDLING, Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app

TABLES = {
    "events_table": EVENTS,
    "membership_table": MEMBERSHIP,
    "partners_table": PARTNERS,
    "catalog_table": CATALOG,
    "suppression_table": SUPPRESSION,
    "id_map_table": ID_MAP,
    "due_table": DUE,
}
# The tables whose data exists nowhere else; the catalog table is rewritten by every publish.
SOURCE_TABLES = ("events_table", "membership_table", "partners_table", "suppression_table", "id_map_table")


def test_every_table_the_code_uses_is_deployed() -> None:
    assert set(TABLES.values()) == set(ALL_TABLES)


@pytest.mark.parametrize("attribute", TABLES)
def test_deployed_table_keys_are_those_of_the_code(prod_stack: Synthesised, attribute: str) -> None:
    # GIVEN the table definition that the storage adapters and the local stack use
    definition: TableDefinition = TABLES[attribute]
    # WHEN the stack is synthesised
    properties = prod_stack.properties(getattr(prod_stack.stack.storage, attribute))
    # THEN the deployed table has exactly the same keys and TTL attribute
    assert properties["KeySchema"] == definition.key_schema()
    assert properties["AttributeDefinitions"] == definition.attribute_definitions()
    if definition.ttl_attribute:
        assert properties["TimeToLiveSpecification"] == {"AttributeName": definition.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in properties


def test_events_expire_through_the_expires_at_attribute(prod_stack: Synthesised) -> None:
    properties = prod_stack.properties(prod_stack.stack.storage.events_table)
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize("attribute", TABLES)
def test_tables_are_on_demand_and_encrypted(prod_stack: Synthesised, attribute: str) -> None:
    properties = prod_stack.properties(getattr(prod_stack.stack.storage, attribute))
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    # SSE on with no key given: the AWS managed key (aws/dynamodb).
    assert properties["SSESpecification"] == {"SSEEnabled": True}


@pytest.mark.parametrize("attribute", SOURCE_TABLES)
def test_tables_of_source_data_are_recoverable(prod_stack: Synthesised, attribute: str) -> None:
    properties = prod_stack.properties(getattr(prod_stack.stack.storage, attribute))
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_the_derived_catalog_table_has_no_point_in_time_recovery(prod_stack: Synthesised) -> None:
    # GIVEN the catalog table: one item that every publish rewrites from the bucket
    # THEN it pays for no continuous backups (cdk-nag's DDB3 is acknowledged on it)
    prod_stack.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": CATALOG.key_schema(),
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False},
        },
    )


@pytest.mark.parametrize("attribute", TABLES)
def test_a_production_stage_keeps_its_tables(prod_stack: Synthesised, attribute: str) -> None:
    resource = prod_stack.resource(getattr(prod_stack.stack.storage, attribute))
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"
    assert resource["Properties"]["DeletionProtectionEnabled"] is True


def test_a_dev_stage_is_disposable(dev_stack: Synthesised) -> None:
    storage = dev_stack.stack.storage
    for table in (storage.events_table, storage.membership_table, storage.partners_table, storage.catalog_table):
        assert dev_stack.resource(table)["DeletionPolicy"] == "Delete"
        assert dev_stack.properties(table)["DeletionProtectionEnabled"] is False
    for bucket in (storage.bucket, storage.access_logs_bucket):
        assert dev_stack.resource(bucket)["DeletionPolicy"] == "Delete"
    dev_stack.template.resource_count_is("Custom::S3AutoDeleteObjects", 2)


def test_a_production_stage_keeps_its_buckets(prod_stack: Synthesised) -> None:
    storage = prod_stack.stack.storage
    for bucket in (storage.bucket, storage.access_logs_bucket):
        assert prod_stack.resource(bucket)["DeletionPolicy"] == "Retain"
    prod_stack.template.resource_count_is("Custom::S3AutoDeleteObjects", 0)


def test_segments_bucket_is_private_encrypted_versioned_and_logged(prod_stack: Synthesised) -> None:
    storage = prod_stack.stack.storage
    prod_stack.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {"DestinationBucketName": prod_stack.ref(storage.access_logs_bucket)},
        },
    )
    assert prod_stack.properties(storage.bucket)["VersioningConfiguration"] == {"Status": "Enabled"}


@pytest.mark.parametrize("attribute", ["bucket", "access_logs_bucket"])
def test_buckets_refuse_requests_without_tls(prod_stack: Synthesised, attribute: str) -> None:
    bucket = getattr(prod_stack.stack.storage, attribute)
    prod_stack.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": prod_stack.ref(bucket),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Principal": {"AWS": "*"},
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_definitions_are_deployed_as_json_under_segments_prefix(prod_stack: Synthesised) -> None:
    prod_stack.template.has_resource_properties(
        "Custom::CDKBucketDeployment",
        {
            "DestinationBucketName": prod_stack.ref(prod_stack.stack.storage.bucket),
            "DestinationBucketKeyPrefix": DEFINITIONS_PREFIX,
            # Definitions pushed with the CLI live beside these and must survive a deploy.
            "Prune": False,
        },
    )


def test_deployed_definitions_read_back_as_the_source_definitions(prod_stack: Synthesised, segments_dir: Path) -> None:
    # GIVEN the YAML definitions of the segments directory
    expected = read_segment_definitions(segments_dir)
    # WHEN the stack is synthesised, each becomes a JSON source of the bucket deployment
    files = deployed_files(prod_stack, DEFINITIONS_PREFIX)
    # THEN they are named <id>.json and load back to the same definitions
    assert sorted(files) == sorted(f"{definition.id}.json" for definition in expected)
    assert sorted(load_definitions(files), key=lambda d: d.id) == sorted(expected, key=lambda d: d.id)


def deployed_files(synthesised: Synthesised, prefix: str) -> dict[str, str]:
    """{file name: text} of the bucket deployment under `prefix`."""
    deployments = synthesised.template.find_resources(
        "Custom::CDKBucketDeployment", {"Properties": {"DestinationBucketKeyPrefix": prefix}}
    )
    (properties,) = (resource["Properties"] for resource in deployments.values())
    assert properties["Prune"] is False  # what `dmp sources|segments push` added stays
    return {
        path.name: path.read_text()
        for key in properties["SourceObjectKeys"]
        for path in synthesised.asset_dir(key).iterdir()
    }


def test_the_repos_data_sources_are_deployed_under_the_sources_prefix(dev_stack: Synthesised) -> None:
    # GIVEN the repo's sources/ (a second-party CRM and a third-party interest provider)
    expected = read_source_definitions(ROOT / "sources")
    assert {source.kind for source in expected} == {"second", "third"}
    # WHEN the stack is synthesised, THEN each is deployed as sources/<id>.json and reads back equal
    files = deployed_files(dev_stack, SOURCES_PREFIX)
    assert sorted(files) == sorted(f"{source.id}.json" for source in expected)
    assert sorted(load_sources(files), key=lambda s: s.id) == sorted(expected, key=lambda s: s.id)


def test_a_segment_naming_a_destination_its_sources_do_not_allow_stops_synth(tmp_path: Path) -> None:
    # GIVEN the repo's sources, and a segment sending Harbor's CRM traits (demo-dsp only) to other-ssp
    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "leaky.yaml").write_text(
        "id: leaky\nname: Leaky\ndestinations: [demo-dsp, other-ssp]\n"
        "rule: {trait: {name: harbor-crm.tier, equals: gold}}\n"
    )
    # WHEN the app is synthesised, THEN synth stops naming the file, the path and the reason
    with pytest.raises(InvalidSegmentDefinitions, match=r"leaky\.yaml: destinations\[1\]: .*other-ssp"):
        create_app(context={**SKIP_BUNDLING, "segments_dir": str(segments)}, outdir=str(tmp_path / "out"))
