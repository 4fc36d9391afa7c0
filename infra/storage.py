"""The stored state of the DMP: four DynamoDB tables and the segments bucket.

The tables are made from `functions.core.tables`, the same definitions the storage
adapters and the local stack use, so the deployed keys cannot drift from the code's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from functions.core.layout import DEFINITIONS_PREFIX
from functions.core.segments import DefinitionErrors, SegmentDefinition, load_definitions
from functions.core.tables import CATALOG, EVENTS, ID_MAP, MEMBERSHIP, PARTNERS, SUPPRESSION, TableDefinition
from infra.compliance import acknowledge, arn_in_findings

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


class InvalidSegmentDefinitions(ValueError):
    """A file of the segments directory is not a valid definition; synth stops."""


def read_segment_definitions(directory: Path) -> list[SegmentDefinition]:
    """Every definition in `directory` (not recursive), validated as the CLI validates them.

    A missing directory holds no definitions: git does not keep an empty `segments/`.
    """
    if not directory.is_dir():
        return []
    files = {
        str(path): path.read_text(encoding="utf-8")
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in DEFINITION_SUFFIXES
    }
    try:
        return load_definitions(files)
    except DefinitionErrors as errors:
        raise InvalidSegmentDefinitions(f"invalid segment definitions in {directory}:\n{errors}") from errors


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        segment_definitions: Sequence[SegmentDefinition],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        disposable = removal_policy == RemovalPolicy.DESTROY
        self.events_table = self._table(EVENTS, removal_policy=removal_policy)
        self.membership_table = self._table(MEMBERSHIP, removal_policy=removal_policy)
        self.partners_table = self._table(PARTNERS, removal_policy=removal_policy)
        self.suppression_table = self._table(SUPPRESSION, removal_policy=removal_policy)
        self.id_map_table = self._table(ID_MAP, removal_policy=removal_policy)
        # Derived data: every publish rewrites its one item from latest.json and the
        # manifest, so there is nothing a point-in-time restore could bring back.
        self.catalog_table = self._table(CATALOG, removal_policy=removal_policy, point_in_time_recovery=False)
        acknowledge(
            self.catalog_table,
            "AwsSolutions-DDB3",
            "The catalog table holds one item derived from the published build (latest.json and its "
            "manifest in the versioned segments bucket), rewritten by every publish; nothing to recover.",
        )

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            # Server access log delivery writes only to SSE-S3 buckets. (cdk-nag's S1 accepts a
            # bucket without access logs of its own when it is another bucket's log target.)
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=removal_policy,
            auto_delete_objects=disposable,
        )
        self.bucket = s3.Bucket(
            self,
            "SegmentsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="segments-bucket/",
            lifecycle_rules=[
                # latest.json is rewritten by every build: old versions are only an undo window.
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=removal_policy,
            auto_delete_objects=disposable,
        )
        if segment_definitions:
            deployment = s3deploy.BucketDeployment(
                self,
                "SegmentDefinitions",
                destination_bucket=self.bucket,
                destination_key_prefix=DEFINITIONS_PREFIX,
                sources=[
                    s3deploy.Source.json_data(f"{definition.id}.json", _document(definition))
                    for definition in segment_definitions
                ],
                # `dmp segments push` adds definitions beside these: a deploy must not delete them.
                prune=False,
            )
            _acknowledge_deployment_handler(deployment, self.bucket)

    def _table(
        self, definition: TableDefinition, *, removal_policy: RemovalPolicy, point_in_time_recovery: bool = True
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            definition.logical_id,
            partition_key=dynamodb.Attribute(name=definition.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=(
                dynamodb.Attribute(name=definition.sort_key, type=dynamodb.AttributeType.STRING)
                if definition.sort_key
                else None
            ),
            time_to_live_attribute=definition.ttl_attribute,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=point_in_time_recovery
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
            deletion_protection=removal_policy != RemovalPolicy.DESTROY,
        )


def _acknowledge_deployment_handler(deployment: s3deploy.BucketDeployment, bucket: s3.Bucket) -> None:
    """The findings of CDK's own copy function, shared by the stack's bucket deployments."""
    handler = deployment.handler_role.node.scope
    assert handler is not None
    because = "CDK's BucketDeployment handler, which copies the definitions from the CDK asset bucket: "
    findings = {
        "AwsSolutions-L1": "its runtime is chosen by the aws-cdk-lib version, not by this app",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]": (
            "CDK attaches the basic execution role for the handler's logs"
        ),
        "AwsSolutions-IAM5[Action::s3:GetBucket*]": "CDK's grant_read on the asset and segments buckets",
        "AwsSolutions-IAM5[Action::s3:GetObject*]": "CDK's grant_read on the asset and segments buckets",
        "AwsSolutions-IAM5[Action::s3:List*]": "CDK's grant_read on the asset and segments buckets",
        "AwsSolutions-IAM5[Action::s3:Abort*]": "CDK's grant_read_write on the segments bucket",
        "AwsSolutions-IAM5[Action::s3:DeleteObject*]": "CDK's grant_read_write on the segments bucket",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]": (
            "reads the staged asset objects of the CDK bootstrap bucket"
        ),
        f"AwsSolutions-IAM5[Resource::{arn_in_findings(bucket)}/*]": (
            "writes objects under segments/ of the segments bucket"
        ),
    }
    for rule_id, reason in findings.items():
        acknowledge(handler, rule_id, because + reason)


def _document(definition: SegmentDefinition) -> dict[str, object]:
    """The definition as JSON that `load_definitions` reads back to an equal definition."""
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)
