"""Segment builds: the builder function, started by an EventBridge schedule."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.compliance import acknowledge
from infra.lambda_layer import LambdaPackaging

# 1769 MB is one full vCPU: the build is CPU-bound rule evaluation over scanned events.
MEMORY_MB = 1769
TIMEOUT = Duration.minutes(15)
# Delivery retries; a schedule event older than this is stale (the next run rebuilds anyway).
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.hours(1)


class Builder(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table: dynamodb.ITable,
        membership_table: dynamodb.ITable,
        bucket: s3.IBucket,
        retention_days: int,
        build_shards: int,
        schedule: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = packaging.function(
            self,
            "Function",
            name="builder",
            description="DMP builder: evaluates the segment definitions and publishes a build",
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            environment={
                "EVENTS_TABLE": events_table.table_name,
                "MEMBERSHIP_TABLE": membership_table.table_name,
                "SEGMENTS_BUCKET": bucket.bucket_name,
                "RETENTION_DAYS": str(retention_days),
                "BUILD_SHARDS": str(build_shards),
            },
        )
        # Schedule events that EventBridge could not deliver to the function.
        self.dead_letter_queue = sqs.Queue(
            self,
            "ScheduleDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the build schedule's target.",
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Starts a segment build",
            schedule=events.Schedule.expression(schedule),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )
