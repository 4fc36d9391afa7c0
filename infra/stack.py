"""The DMP stack: one construct per concern, and who may touch what.

Every permission a function has beyond its own log group and X-Ray is granted below,
so this file is the complete answer to "which function can read or write which data".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.core import layout
from functions.core.layout import EXPORTS_PREFIX, LATEST_KEY, manifest_key, plan_key
from functions.core.storage.partners import PROFILE_KEY_PREFIX
from infra.builder import Builder
from infra.compliance import acknowledge, arn_in_findings
from infra.evaluator import Evaluator
from infra.importer import Importer
from infra.ingest import Ingest
from infra.lambda_layer import LambdaPackaging
from infra.lookup import Lookup
from infra.monitoring import Monitoring
from infra.replay import Replay
from infra.settings import DeploySettings
from infra.storage import Storage, read_segment_definitions, read_source_definitions

LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class DmpStack(Stack):
    def __init__(self, scope: Construct, *, settings: DeploySettings, root: Path, **kwargs: Any) -> None:
        super().__init__(scope, settings.stack_name, **kwargs)
        self.settings = settings
        # Dev stages are disposable: `cdk destroy` deletes their tables, buckets and logs.
        # Every other stage keeps them (and its tables refuse deletion) when the stack goes.
        removal_policy = RemovalPolicy.DESTROY if settings.is_dev_stage else RemovalPolicy.RETAIN

        sources = read_source_definitions(settings.sources_dir)
        self.storage = Storage(
            self,
            "Storage",
            segment_definitions=read_segment_definitions(settings.segments_dir, sources),
            source_definitions=sources,
            removal_policy=removal_policy,
        )
        packaging = LambdaPackaging(
            self, "Packaging", root=root, log_retention=LOG_RETENTION, removal_policy=removal_policy
        )
        self.replay = Replay(
            self,
            "Replay",
            packaging=packaging,
            events_table_name=self.storage.events_table.table_name,
            suppression_table_name=self.storage.suppression_table.table_name,
            reserved_concurrency=settings.reserved_concurrency["replay"],
        )
        self.ingest = Ingest(
            self,
            "Ingest",
            packaging=packaging,
            events_table=self.storage.events_table,
            membership_table=self.storage.membership_table,
            suppression_table=self.storage.suppression_table,
            id_map_table=self.storage.id_map_table,
            partners_table=self.storage.partners_table,
            fallback_queue_url=self.replay.queue.queue_url,
            retention_days=settings.retention_days,
            tcf_vendor_id=settings.tcf_vendor_id,
            cors_origins=settings.cors_origins,
            log_retention=LOG_RETENTION,
            removal_policy=removal_policy,
            price_class=cloudfront.PriceClass[settings.cloudfront_price_class],
            domain=settings.ingest_domain,
            reserved_concurrency=settings.reserved_concurrency["ingest"],
            rate_limit=settings.ingest_rate_limit,
            web_acl_arn=settings.ingest_web_acl_arn,
        )
        self.builder = Builder(
            self,
            "Builder",
            packaging=packaging,
            events_table=self.storage.events_table,
            membership_table=self.storage.membership_table,
            catalog_table=self.storage.catalog_table,
            suppression_table=self.storage.suppression_table,
            id_map_table=self.storage.id_map_table,
            due_table=self.storage.due_table,
            bucket=self.storage.bucket,
            retention_days=settings.retention_days,
            build_shards=settings.build_shards,
            # A build files the changes due before the next one is overdue (the stale-build
            # alarm's window: twice the schedule), so one failed build leaves no gap.
            due_horizon_seconds=int(settings.build_stale_after.total_seconds()),
            schedule=settings.build_schedule,
            log_retention=LOG_RETENTION,
            removal_policy=removal_policy,
            reserved_concurrency=settings.reserved_concurrency["builder"],
        )
        self.lookup = Lookup(
            self,
            "Lookup",
            packaging=packaging,
            membership_table=self.storage.membership_table,
            catalog_table=self.storage.catalog_table,
            partners_table=self.storage.partners_table,
            id_map_table=self.storage.id_map_table,
            bucket=self.storage.bucket,
            stage_name=settings.stage,
            data_provider_id=settings.data_provider_id,
            data_provider_name=settings.data_provider_name,
            openrtb_segtax=settings.openrtb_segtax,
            catalog_refresh_seconds=settings.catalog_refresh_seconds,
            authorizer_cache=Duration.seconds(settings.authorizer_cache_seconds),
            log_retention=LOG_RETENTION,
            removal_policy=removal_policy,
            reserved_concurrency=settings.reserved_concurrency["lookup"],
            authorizer_reserved_concurrency=settings.reserved_concurrency["authorizer"],
        )
        self.importer = Importer(
            self,
            "Importer",
            packaging=packaging,
            bucket=self.storage.bucket,
            events_table_name=self.storage.events_table.table_name,
            suppression_table_name=self.storage.suppression_table.table_name,
            id_map_table_name=self.storage.id_map_table.table_name,
            reserved_concurrency=settings.reserved_concurrency["importer"],
        )
        self.evaluator = Evaluator(
            self,
            "Evaluator",
            packaging=packaging,
            events_table=self.storage.events_table,
            membership_table_name=self.storage.membership_table.table_name,
            suppression_table_name=self.storage.suppression_table.table_name,
            catalog_table_name=self.storage.catalog_table.table_name,
            due_table_name=self.storage.due_table.table_name,
            bucket_name=self.storage.bucket.bucket_name,
            reserved_concurrency=settings.reserved_concurrency["evaluator"],
            sweep_reserved_concurrency=settings.reserved_concurrency["sweep"],
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            ingest_function=self.ingest.function,
            build_state_machine=self.builder.state_machine,
            fallback_queue=self.replay.queue,
            dead_letter_queues={
                "builds": self.builder.dead_letter_queue,
                "deferred hits": self.replay.dead_letter_queue,
                "imports": self.importer.dead_letter_queue,
                "membership evaluations": self.evaluator.dead_letter_queue,
            },
            lookup_stage=self.lookup.api.deployment_stage,
            other_alarms=[
                self.builder.dead_letter_alarm,
                self.builder.errors_alarm,
                self.replay.dead_letter_alarm,
                self.importer.dead_letter_alarm,
                self.evaluator.dead_letter_alarm,
                self.evaluator.iterator_age_alarm,
            ],
            build_stale_after=settings.build_stale_after,
            alarm_email=settings.alarm_email,
            removal_policy=removal_policy,
        )

        self._grant_access()
        self._add_outputs()

    def _grant_access(self) -> None:
        storage = self.storage
        # Hits: one put (the pixel, our side of an ID sync mapping) or a batch of puts
        # (/collect). IAM cannot tell a batch's puts from deletes. The one delete: a sync
        # whose partner id now names this browser deletes the other visitor's mapping to it,
        # on a condition that it still names that id (EventStore.delete_mapping). No updates:
        # an opt-out only suppresses; the build erases the events.
        storage.events_table.grant(
            self.ingest.function, "dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"
        )
        self.replay.queue.grant_send_messages(self.ingest.function)
        # A visitor who says no is suppressed in the request: its record (an update, which
        # keeps the removal notices of an earlier erasure: SuppressionStore.suppress), and a
        # tombstone put in place of its membership. A returning visitor's hit first reads its record.
        storage.suppression_table.grant(self.ingest.function, "dynamodb:UpdateItem", "dynamodb:GetItem")
        storage.membership_table.grant(self.ingest.function, "dynamodb:PutItem")
        # ID sync: the partner's side of a mapping (ours is an events-table item), and the
        # partner's sync registration, read from its profile item alone (never a key hash).
        storage.id_map_table.grant(self.ingest.function, "dynamodb:PutItem", "dynamodb:DeleteItem")
        self._grant_partner_profiles_read(self.ingest.function)
        # A deferred hit is put again under the key it already carries: a put, nothing else.
        storage.events_table.grant(self.replay.function, "dynamodb:PutItem")
        # A deferred hit of a visitor suppressed meanwhile is dropped, not replayed.
        storage.suppression_table.grant(self.replay.function, "dynamodb:BatchGetItem")

        # Reads events to build; deletes them to finish the erasures opt-outs left pending.
        storage.events_table.grant_read_data(self.builder.function)
        storage.events_table.grant(self.builder.function, "dynamodb:BatchWriteItem")
        storage.suppression_table.grant_read_write_data(self.builder.function)
        storage.membership_table.grant_read_write_data(self.builder.function)
        storage.catalog_table.grant_read_write_data(self.builder.function)
        # An erasure deletes the partners' side of the visitor's mappings.
        storage.id_map_table.grant(self.builder.function, "dynamodb:DeleteItem")
        storage.bucket.grant_read_write(self.builder.function)
        # Publish files the visitors whose membership changes before the next build is due.
        storage.due_table.grant(self.builder.function, "dynamodb:BatchWriteItem")
        self._acknowledge_bucket_wildcards(self.builder.function, write=True)

        storage.membership_table.grant_read_data(self.lookup.function)
        storage.catalog_table.grant_read_data(self.lookup.function)
        # A lookup by a partner's own id resolves it through the partner's side of the map.
        storage.id_map_table.grant(self.lookup.function, "dynamodb:GetItem", "dynamodb:BatchGetItem")
        self._grant_published_reads(self.lookup.function)

        storage.partners_table.grant_read_data(self.lookup.authorizer_function)
        self._grant_importer()
        self._grant_evaluator(self.evaluator.function)
        self._grant_evaluator(self.evaluator.sweep_function)
        # The sweep alone reads the due index and keeps its checkpoint; swept entries are
        # left to the table's TTL, so it deletes nothing.
        self.storage.due_table.grant(
            self.evaluator.sweep_function,
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        )

    def _grant_evaluator(self, function: lambda_.IFunction) -> None:
        """What re-evaluating a visitor takes (functions/evaluator/logic.py): the published
        build (catalog item, its plan), the suppression list, the visitor's records, its
        membership item (read, conditional put or delete) and its due index entry."""
        storage = self.storage
        storage.events_table.grant(function, "dynamodb:Query")
        storage.membership_table.grant(function, "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
        storage.suppression_table.grant(function, "dynamodb:BatchGetItem")
        storage.catalog_table.grant(function, "dynamodb:GetItem")
        storage.due_table.grant(function, "dynamodb:BatchWriteItem")
        bucket = storage.bucket
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(plan_key("*"))])
        )
        acknowledge(
            function.role or function,
            f"AwsSolutions-IAM5[Resource::{arn_in_findings(bucket)}/{plan_key('*')}]",
            "GetObject of each build's plan (its segment definitions); the published build's id is only "
            "known at run time.",
        )

    def _grant_importer(self) -> None:
        """The importer reads dropped files and source definitions, writes its reports and
        checkpoints beside the files, writes traits, resolves partner ids, reads the
        suppression list, and puts its own continuation events on the default bus."""
        storage, function = self.storage, self.importer.function
        storage.events_table.grant(function, "dynamodb:BatchWriteItem")
        storage.id_map_table.grant(function, "dynamodb:BatchGetItem")
        storage.suppression_table.grant(function, "dynamodb:BatchGetItem")
        bucket = storage.bucket
        reads = [
            bucket.arn_for_objects(f"{layout.IMPORTS_PREFIX}*"),
            bucket.arn_for_objects(f"{layout.SOURCES_PREFIX}*"),
        ]
        writes = [
            bucket.arn_for_objects(f"{layout.IMPORTS_PREFIX}*{layout.IMPORT_REPORT_SUFFIX}"),
            bucket.arn_for_objects(f"{layout.IMPORTS_PREFIX}*{layout.IMPORT_PROGRESS_SUFFIX}"),
        ]
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=reads))
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=writes))
        # Listing, under those prefixes alone, lets S3 answer 404 (not 403) for a report
        # or checkpoint not written yet.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{layout.IMPORTS_PREFIX}*", f"{layout.SOURCES_PREFIX}*"]}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:event-bus/default"],
            )
        )
        bucket_arn = arn_in_findings(bucket)
        for pattern, scope in (
            (f"{layout.IMPORTS_PREFIX}*", "the dropped files under imports/"),
            (f"{layout.SOURCES_PREFIX}*", "the source definitions under sources/"),
            (f"{layout.IMPORTS_PREFIX}*{layout.IMPORT_REPORT_SUFFIX}", "the import reports it writes"),
            (f"{layout.IMPORTS_PREFIX}*{layout.IMPORT_PROGRESS_SUFFIX}", "the checkpoints of imports under way"),
        ):
            acknowledge(
                function.role or function,
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{pattern}]",
                f"The importer's objects in the segments bucket: {scope}, named by the partners' files.",
            )

    def _grant_partner_profiles_read(self, function: lambda_.IFunction) -> None:
        """GetItem on the partners table, for the profile items (`profile:<name>`) alone:
        the keys' hashes stay out of the function's reach."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem"],
                resources=[self.storage.partners_table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{PROFILE_KEY_PREFIX}*"]},
                },
            )
        )

    def _grant_published_reads(self, function: lambda_.IFunction) -> None:
        """What the lookup reads of the bucket, and nothing else of it: `latest.json` and the
        builds' manifests (the catalog), and the partners' exports (`exports/<partner>/latest.json`,
        and the files whose pre-signed URLs it hands out, which carry its own permission)."""
        bucket = self.storage.bucket
        published = [
            bucket.arn_for_objects(LATEST_KEY),
            bucket.arn_for_objects(manifest_key("*")),
            bucket.arn_for_objects(f"{EXPORTS_PREFIX}*"),
        ]
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=published))
        # Without it, S3 answers a missing key (no build or no export yet) 403 instead of 404,
        # which the lookup takes for "none yet". It lists key names, never an object's content.
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
        bucket_arn = arn_in_findings(bucket)
        for pattern, what in (
            (manifest_key("*"), "the manifest of each build (the one latest.json names)"),
            (f"{EXPORTS_PREFIX}*", "the partners' exports: the lookup reads the calling partner's own alone"),
        ):
            acknowledge(
                function.role or function,
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{pattern}]",
                f"GetObject of {what}; the build and partner ids are only known at run time.",
            )

    def _acknowledge_bucket_wildcards(self, function: lambda_.IFunction, *, write: bool) -> None:
        """The wildcards of CDK's bucket grants, accepted one by one for this function's role."""
        bucket_arn = arn_in_findings(self.storage.bucket)
        wildcards = {
            "Action::s3:GetBucket*": "bucket metadata reads (location, versioning) of the segments bucket",
            "Action::s3:GetObject*": "object reads (and their versions/tags) in the segments bucket",
            "Action::s3:List*": "listing the segments bucket to find definitions and builds",
            f"Resource::{bucket_arn}/*": "every object of the segments bucket, and of no other bucket",
        }
        if write:
            wildcards |= {
                "Action::s3:DeleteObject*": "replacing definitions and builds in the segments bucket",
                "Action::s3:Abort*": "abandoning a multipart upload of a large build part",
            }
        for finding, scope in wildcards.items():
            acknowledge(
                function.role or function,
                f"AwsSolutions-IAM5[{finding}]",
                f"From CDK's grant_read{'_write' if write else ''} on the segments bucket: {scope}.",
            )

    def _add_outputs(self) -> None:
        storage = self.storage
        outputs = {
            # What sites embed: through CloudFront, which adds the viewer's location; on the
            # site's own subdomain (`ingest_domain`) when there is one.
            "IngestUrl": self.ingest.url,
            # The CNAME (or Route 53 alias) target of `ingest_domain`.
            "IngestDistributionDomainName": self.ingest.distribution.distribution_domain_name,
            "IngestApiUrl": self.ingest.api_url,
            "LookupUrl": self.lookup.url,
            # `dmp partners add --stack` puts each new partner key's API key in this plan.
            "LookupUsagePlanId": self.lookup.usage_plan.usage_plan_id,
            "EventsTableName": storage.events_table.table_name,
            "MembershipTableName": storage.membership_table.table_name,
            "PartnersTableName": storage.partners_table.table_name,
            "CatalogTableName": storage.catalog_table.table_name,
            "SuppressionTableName": storage.suppression_table.table_name,
            "IdMapTableName": storage.id_map_table.table_name,
            "BucketName": storage.bucket.bucket_name,
            "BuilderFunctionName": self.builder.function.function_name,
            "BuildStateMachineArn": self.builder.state_machine.state_machine_arn,
            "FallbackQueueUrl": self.replay.queue.queue_url,
            "Region": Aws.REGION,
            # The CLI's backfill (`dmp ingest --stack`) gives events the stack's retention.
            "RetentionDays": str(self.settings.retention_days),
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
