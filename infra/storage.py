"""The stored state of the DMP: four DynamoDB tables and the segments bucket.

The tables are made from `functions.core.tables`, the same definitions the storage
adapters and the local stack use, so the deployed keys cannot drift from the code's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct, IConstruct

from functions.core.layout import DEFINITIONS_PREFIX, SOURCES_PREFIX
from functions.core.segments import DefinitionErrors, SegmentDefinition, load_definitions
from functions.core.sources import SourceDefinition, load_sources
from functions.core.tables import CATALOG, DUE, EVENTS, ID_MAP, MEMBERSHIP, PARTNERS, SUPPRESSION, TableDefinition
from infra.compliance import acknowledge, arn_in_findings, ignore_lint, skip_check

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


class InvalidSegmentDefinitions(ValueError):
    """A file of the segments or sources directory is not a valid definition, or a segment
    breaks the data-use control of the sources; synth stops."""


def _definition_files(directory: Path) -> dict[str, str]:
    """The definition files of `directory` (not recursive). A missing directory holds none:
    git does not keep an empty `segments/` or `sources/`."""
    if not directory.is_dir():
        return {}
    return {
        str(path): path.read_text(encoding="utf-8")
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in DEFINITION_SUFFIXES
    }


def read_source_definitions(directory: Path) -> list[SourceDefinition]:
    """Every data-source definition in `directory`, validated as `dmp sources validate` does."""
    try:
        return load_sources(_definition_files(directory))
    except DefinitionErrors as errors:
        raise InvalidSegmentDefinitions(f"invalid source definitions in {directory}:\n{errors}") from errors


def read_segment_definitions(directory: Path, sources: Sequence[SourceDefinition] = ()) -> list[SegmentDefinition]:
    """Every definition in `directory`, validated as the CLI validates them, and against
    the data-use control of `sources` when there are any (as builds check them)."""
    try:
        return load_definitions(_definition_files(directory), sources={source.id: source for source in sources} or None)
    except DefinitionErrors as errors:
        raise InvalidSegmentDefinitions(f"invalid segment definitions in {directory}:\n{errors}") from errors


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        segment_definitions: Sequence[SegmentDefinition],
        source_definitions: Sequence[SourceDefinition] = (),
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        disposable = removal_policy == RemovalPolicy.DESTROY
        self.events_table = self._table(EVENTS, removal_policy=removal_policy)
        self.membership_table = self._table(MEMBERSHIP, removal_policy=removal_policy)
        self.partners_table = self._table(PARTNERS, removal_policy=removal_policy)
        self.suppression_table = self._table(SUPPRESSION, removal_policy=removal_policy)
        self.id_map_table = self._table(ID_MAP, removal_policy=removal_policy)
        # Derived data: the evaluator refiles each visitor it sees, and every build corrects
        # membership whatever the index holds, so there is nothing a restore could bring back.
        self.due_table = self._table(DUE, removal_policy=removal_policy, point_in_time_recovery=False)
        derived_due = (
            "The due index is derived from the events table (each visitor's next due instant), rebuilt by the "
            "evaluator on every hit, and every scheduled build re-evaluates everyone; nothing to recover."
        )
        acknowledge(self.due_table, "AwsSolutions-DDB3", derived_due)
        skip_check(self.due_table, "CKV_AWS_28", derived_due)
        # Derived data: every publish rewrites its one item from latest.json and the
        # manifest, so there is nothing a point-in-time restore could bring back.
        self.catalog_table = self._table(CATALOG, removal_policy=removal_policy, point_in_time_recovery=False)
        derived = (
            "The catalog table holds one item derived from the published build (latest.json and its "
            "manifest in the versioned segments bucket), rewritten by every publish; nothing to recover."
        )
        acknowledge(self.catalog_table, "AwsSolutions-DDB3", derived)
        skip_check(self.catalog_table, "CKV_AWS_28", derived)

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
        skip_check(
            self.access_logs_bucket,
            "CKV_AWS_18",
            "This bucket is the target of the segments bucket's access logs: logging its own access "
            "would need a third bucket, and so on.",
        )
        skip_check(
            self.access_logs_bucket,
            "CKV_AWS_21",
            "Log objects are written once by S3's log delivery and never rewritten; no principal of the "
            "stack may write or delete them, and they expire after a year. Versions would keep nothing more.",
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
        # `dmp segments push` and `dmp sources push` add definitions beside these: a deploy
        # must not delete them.
        for construct_id, prefix, definitions in (
            ("SegmentDefinitions", DEFINITIONS_PREFIX, segment_definitions),
            ("SourceDefinitions", SOURCES_PREFIX, source_definitions),
        ):
            if definitions:
                deployment = s3deploy.BucketDeployment(
                    self,
                    construct_id,
                    destination_bucket=self.bucket,
                    destination_key_prefix=prefix,
                    sources=[
                        s3deploy.Source.json_data(f"{definition.id}.json", _document(definition))
                        for definition in definitions
                    ],
                    prune=False,
                )
                _acknowledge_deployment_handler(deployment, self.bucket)
        if disposable:
            _acknowledge_auto_delete_handler(self)

    def _table(
        self, definition: TableDefinition, *, removal_policy: RemovalPolicy, point_in_time_recovery: bool = True
    ) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            definition.logical_id,
            partition_key=dynamodb.Attribute(name=definition.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=(
                dynamodb.Attribute(name=definition.sort_key, type=dynamodb.AttributeType.STRING)
                if definition.sort_key
                else None
            ),
            time_to_live_attribute=definition.ttl_attribute,
            stream=dynamodb.StreamViewType[definition.stream_view] if definition.stream_view else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=point_in_time_recovery
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
            deletion_protection=removal_policy != RemovalPolicy.DESTROY,
        )
        skip_check(
            table,
            "CKV_AWS_119",
            "Encrypted at rest with DynamoDB's AWS-managed KMS key (aws/dynamodb, AWS_MANAGED): KMS-backed "
            "and logged in CloudTrail. A customer-managed key would add a key policy to keep in step with "
            "every role and KMS charges on the pixel's hot path; who may read what is IAM's, per table and action.",
        )
        return table


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
    findings |= {
        "Serverless-LambdaLatestVersion": "its runtime is chosen by the aws-cdk-lib version, not by this app",
        "Serverless-LambdaTracing": "it runs once per deployment; CloudFormation's events trace it",
        "Serverless-LambdaDLQ": _DEPLOYMENT_TIME,
    }
    for rule_id, reason in findings.items():
        acknowledge(handler, rule_id, because + reason)
    _skip_deployment_function_checks(handler, because)
    log_group = handler.node.try_find_child("LogGroup")
    if log_group is not None:
        skip_check(
            log_group,
            "CKV_AWS_158",
            because + "its log (file names copied) is encrypted with CloudWatch Logs' AWS-managed keys",
        )


# Why CDK's deploy-time functions need no reserved concurrency, dead-letter queue or VPC.
_DEPLOYMENT_TIME = (
    "it runs only while CloudFormation deploys the stack, once per resource, and a failure fails (and "
    "rolls back) that deployment, which is its error channel"
)


def _skip_deployment_function_checks(function: IConstruct, because: str) -> None:
    for check_id, reason in {
        "CKV_AWS_115": _DEPLOYMENT_TIME + "; it needs no share of the account's concurrency",
        "CKV_AWS_116": _DEPLOYMENT_TIME,
        "CKV_AWS_117": "it calls only S3 and CloudFormation's response URL; no resource of the stack is in a VPC",
        "CKV_AWS_173": "its environment holds no secret, and Lambda encrypts it at rest with an AWS-managed key",
    }.items():
        skip_check(function, check_id, because + reason)
    ignore_lint(function, "W3005", because + "CDK makes it depend on its role as well as through Fn::GetAtt")


def _acknowledge_auto_delete_handler(scope: Construct) -> None:
    """CDK's singleton provider that empties the buckets of a disposable stage when it is destroyed."""
    provider = Stack.of(scope).node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
    handler = provider.node.try_find_child("Handler") if provider is not None else None
    assert handler is not None, "auto_delete_objects makes CDK's S3AutoDeleteObjects provider"
    _skip_deployment_function_checks(
        handler, "CDK's handler that empties the buckets of a disposable (dev) stage when it is destroyed: "
    )


def _document(definition: SegmentDefinition | SourceDefinition) -> dict[str, object]:
    """The definition as JSON that `load_definitions` (`load_sources`) reads back to an
    equal definition."""
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)
