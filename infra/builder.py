"""Segment builds: a Step Functions state machine (plan -> Map over shards -> publish ->
export) running the builder function once per stage, started by an EventBridge schedule.

Each shard is its own Lambda invocation, in parallel, so a build scales with the shard
count while every shard stays well within Lambda's 15 minutes. A schedule event that
could not be delivered and a build execution that failed, timed out or was aborted both
end in one dead-letter queue, and alarms go off on it and on failed executions.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.core.config import Env
from infra.compliance import acknowledge, arn_in_findings, ignore_lint, skip_check
from infra.dead_letters import ALARM_PERIOD, alarm_on_messages, dead_letter_queue
from infra.lambda_layer import LambdaPackaging

# 1769 MB is one full vCPU: the build is CPU-bound rule evaluation over scanned events.
MEMORY_MB = 1769
TIMEOUT = Duration.minutes(15)
# Delivery retries; a schedule event older than this is stale (the next run rebuilds anyway).
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.hours(1)
# Retries of a shard, publish or export stage that raised (their writes are idempotent). The plan
# stage is not retried: its usual failure, invalid definitions, is not transient.
STAGE_RETRY_ATTEMPTS = 2
# Shards running at once; more would only queue on the events table's read capacity.
MAX_PARALLEL_SHARDS = 40
BUILD_TIMEOUT = Duration.hours(3)


class Builder(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table: dynamodb.ITable,
        membership_table: dynamodb.ITable,
        catalog_table: dynamodb.ITable,
        suppression_table: dynamodb.ITable,
        id_map_table: dynamodb.ITable,
        due_table: dynamodb.ITable,
        bucket: s3.IBucket,
        retention_days: int,
        build_shards: int,
        due_horizon_seconds: int,
        schedule: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        reserved_concurrency: int | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = packaging.function(
            self,
            "Function",
            name="builder",
            description="DMP builder: evaluates the segment definitions and publishes a build",
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            # At least the shards a build runs at once (checked in infra/settings.py).
            reserved_concurrency=reserved_concurrency,
            failures="The build state machine invokes it synchronously: a failed stage is retried, then "
            "fails the execution, which lands in the build dead-letter queue (FailedBuilds) and is alarmed.",
            environment={
                Env.EVENTS_TABLE: events_table.table_name,
                Env.MEMBERSHIP_TABLE: membership_table.table_name,
                Env.CATALOG_TABLE: catalog_table.table_name,
                Env.SUPPRESSION_TABLE: suppression_table.table_name,
                Env.ID_MAP_TABLE: id_map_table.table_name,
                Env.DUE_TABLE: due_table.table_name,
                Env.SEGMENTS_BUCKET: bucket.bucket_name,
                Env.RETENTION_DAYS: str(retention_days),
                Env.BUILD_SHARDS: str(build_shards),
                Env.DUE_HORIZON_SECONDS: str(due_horizon_seconds),
            },
        )
        # Schedule events that EventBridge could not deliver to the state machine, and the
        # status changes of build executions that failed, timed out or were aborted.
        self.dead_letter_queue = dead_letter_queue(
            self,
            "ScheduleDeadLetterQueue",
            holds="schedule events the build state machine did not receive, and failed build executions",
        )
        self.state_machine = self._state_machine(build_shards, log_retention, removal_policy)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Starts a segment build",
            schedule=events.Schedule.expression(schedule),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )
        self.failed_builds = events.Rule(
            self,
            "FailedBuilds",
            description="Keeps a record of every build execution that did not succeed",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                },
            ),
            targets=[targets.SqsQueue(self.dead_letter_queue)],
        )
        acknowledge(
            self.failed_builds,
            "Serverless-EventBusDLQ",
            "This rule's target is the build dead-letter queue itself: an event it could not deliver there "
            "has nowhere better to go. A failed execution is also counted by the build-errors alarm "
            "(ExecutionsFailed), which does not depend on this delivery.",
        )
        self._add_alarms()

    def _state_machine(
        self, build_shards: int, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> sfn.StateMachine:
        def stage(name: str, payload: dict[str, object], *, retry: bool) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                name,
                lambda_function=self.function,
                payload=sfn.TaskInput.from_object(payload),
                payload_response_only=True,
            )
            if retry:
                task.add_retry(
                    errors=["States.ALL"],
                    max_attempts=STAGE_RETRY_ATTEMPTS,
                    interval=Duration.seconds(20),
                    backoff_rate=2,
                )
            return task

        plan = stage("Plan", {"stage": "plan", "time": sfn.JsonPath.string_at("$.time")}, retry=False)
        shards = sfn.Map(
            self,
            "Shards",
            items_path="$.shards",
            item_selector={
                "build_id": sfn.JsonPath.string_at("$.build_id"),
                "shard": sfn.JsonPath.string_at("$$.Map.Item.Value"),
            },
            max_concurrency=min(build_shards, MAX_PARALLEL_SHARDS),
            result_path=sfn.JsonPath.DISCARD,
        )
        shards.item_processor(
            stage(
                "Shard",
                {
                    "stage": "shard",
                    "build_id": sfn.JsonPath.string_at("$.build_id"),
                    "shard": sfn.JsonPath.number_at("$.shard"),
                },
                retry=True,
            )
        )
        publish = stage("Publish", {"stage": "publish", "build_id": sfn.JsonPath.string_at("$.build_id")}, retry=True)
        # After publish: each destination partner's files of the published build. A failure
        # fails the execution (dead-lettered, alarmed) with the build already served; the
        # next build's export is then taken against the partner's last complete one.
        export = stage("Export", {"stage": "export", "build_id": sfn.JsonPath.string_at("$.build_id")}, retry=True)
        already = sfn.Succeed(self, "AlreadyPublished", comment="The same scheduled time was built before")
        definition = plan.next(
            sfn.Choice(self, "Published?")
            .when(sfn.Condition.boolean_equals("$.skip", True), already)
            .otherwise(shards.next(publish).next(export))
        )
        self.execution_logs = logs.LogGroup(
            self, "ExecutionLogs", retention=log_retention, removal_policy=removal_policy
        )
        skip_check(
            self.execution_logs,
            "CKV_AWS_158",
            "Encrypted at rest by CloudWatch Logs with AWS-managed keys; execution data (inputs and "
            "outputs) is left out of the log (include_execution_data=False). A customer-managed key is a "
            "deliberate no.",
        )
        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="DMP segment build: plan, shards in parallel, publish, export",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=BUILD_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.execution_logs, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        ignore_lint(
            state_machine,
            "W3005",
            "CDK makes the state machine depend on its role explicitly as well as through Fn::GetAtt: harmless.",
        )
        assert state_machine.role is not None
        acknowledge(
            state_machine.role,
            f"AwsSolutions-IAM5[Resource::{arn_in_findings(self.function)}:*]",
            "Step Functions' LambdaInvoke grant covers the builder function's versions and aliases; "
            "it is scoped to that one function.",
        )
        acknowledge(
            state_machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray and CloudWatch Logs delivery actions of a state machine have no resource-level permissions.",
        )
        return state_machine

    def _add_alarms(self) -> None:
        self.dead_letter_alarm = alarm_on_messages(
            self,
            "DeadLetterAlarm",
            self.dead_letter_queue,
            description="A segment build failed for good or its schedule event was not delivered: "
            "the published build is stale. The messages in the dead-letter queue say which.",
        )
        # Its action, like every alarm's, is the alarms topic (infra/monitoring.py).
        self.errors_alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_description="A segment build execution failed: the published build is unchanged; "
            "see the execution's history and the builder's log.",
            metric=self.state_machine.metric_failed(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
