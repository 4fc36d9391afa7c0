"""Segment builds: the builder function, started by an EventBridge schedule.

A schedule event that could not be delivered and a build that failed for good both end
in one dead-letter queue, and an alarm goes off when anything is in it.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_destinations as destinations
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
# Lambda's own retries of a build that raised. One: a failure that is not transient
# (invalid definitions) would only burn up to 15 more minutes each time.
BUILD_RETRY_ATTEMPTS = 1
ALARM_PERIOD = Duration.minutes(5)


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
        # Schedule events that EventBridge could not deliver to the function, and the
        # invocation records of builds that still failed after Lambda's retries.
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
            "This queue is itself the dead-letter queue of the build schedule's target and of the "
            "builder's failed invocations.",
        )
        # EventBridge invokes asynchronously: a build that raises is retried by Lambda, and
        # then only this destination keeps a trace of it. (It grants itself SendMessage.)
        self.function.configure_async_invoke(
            retry_attempts=BUILD_RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
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
        self._add_alarms()

    def _add_alarms(self) -> None:
        # No actions here: who is told (SNS, chat, pager) is the operator's choice.
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description="A segment build failed for good or its schedule event was not delivered: "
            "the published build is stale. The messages in the dead-letter queue say which.",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=ALARM_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.errors_alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_description="A segment build raised (it may still succeed when Lambda retries it); "
            "see the builder's log.",
            metric=self.function.metric_errors(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
