"""Operations: the alarms an on-call engineer acts on, the topic that tells them, and the
dashboard `Dmp-<stage>-<region>`.

Most metrics are AWS's own (Lambda, Step Functions, API Gateway, SQS). The DMP's own are
the Powertools EMF metrics the functions publish: namespace `DMP` (their
POWERTOOLS_METRICS_NAMESPACE), one dimension, `service`, whose value is the function's
name (`Metrics(service="builder")`). An alarm on a name nobody emits would never go off,
so tests/infra/test_cdk_monitoring.py runs the functions and reads what they print.

Every alarm, the builder's and the replay's included, notifies one SNS topic
(`Dmp-<stage>-alarms`): subscribe email (`alarm_email`), chat or a pager to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.compliance import acknowledge
from infra.dead_letters import ALARM_PERIOD
from infra.lambda_layer import METRICS_NAMESPACE

# Powertools' dimension of every EMF metric, and the functions' service names.
SERVICE_DIMENSION = "service"
INGEST, BUILDER, LOOKUP, REPLAY = "ingest", "builder", "lookup", "replay"
# The builder's count of builds put in service, one per successful publish.
BUILDS_PUBLISHED = "builds_published"
HITS_LOST = "hits_lost"
# Below an hour, CloudWatch looks back at most a day; with hourly periods, a week.
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# Deferred hits normally wait seconds; older ones mean the replay is failing or stopped.
FALLBACK_MAX_AGE = Duration.minutes(15)
# The share of lookup requests answered 5xx, over two periods in a row.
LOOKUP_SERVER_ERROR_RATE = 0.01
GRAPH_HEIGHT = 6


def service_metric(
    service: str, name: str, *, statistic: str = cloudwatch.Stats.SUM, period: Duration = ALARM_PERIOD
) -> cloudwatch.Metric:
    """A metric one of the functions publishes through Powertools."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={SERVICE_DIMENSION: service},
        statistic=statistic,
        period=period,
    )


def service_metrics_named(service: str, prefix: str) -> cloudwatch.SearchExpression:
    """Every `<prefix>_<reason>` metric of `service`, one line each: the reasons are
    open-ended (consent, bots, malformed input...), so a search finds them. CloudWatch
    splits names into words at `_`, and `MetricName=<prefix>` matches on a word."""
    schema = f"{{{METRICS_NAMESPACE},{SERVICE_DIMENSION}}}"
    return cloudwatch.SearchExpression(
        expression=f"SEARCH('{schema} {SERVICE_DIMENSION}=\"{service}\" MetricName={prefix}', "
        f"'{cloudwatch.Stats.SUM}', {int(ALARM_PERIOD.to_seconds())})",
        # No label of its own: each line is named after its metric (refused_bot...).
        label="",
        period=ALARM_PERIOD,
    )


def stale_build_periods(stale_after: timedelta) -> tuple[Duration, int]:
    """The stale-build alarm's period and evaluation periods, covering `stale_after`: one
    period up to a day; beyond, hourly periods, every one of which must be without a
    publish (CloudWatch looks back a day with shorter periods, a week with hourly ones)."""
    if stale_after <= DAY:
        return Duration.seconds(stale_after.total_seconds()), 1
    return Duration.hours(1), math.ceil(stale_after / HOUR)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ingest_function: lambda_.IFunction,
        build_state_machine: sfn.IStateMachine,
        fallback_queue: sqs.IQueue,
        dead_letter_queues: Mapping[str, sqs.IQueue],
        lookup_stage: apigw.Stage,
        other_alarms: Sequence[cloudwatch.IAlarm],
        build_stale_after: timedelta,
        alarm_email: str | None,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack_name = Stack.of(self).stack_name
        self.topic = self._alarm_topic(alarm_email, removal_policy)

        period, evaluation_periods = stale_build_periods(build_stale_after)
        self.stale_build_alarm = self._alarm(
            "StaleBuildAlarm",
            "build-stale",
            metric=service_metric(BUILDER, BUILDS_PUBLISHED, period=period),
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            threshold=1,
            evaluation_periods=evaluation_periods,
            # No data is no publish: no build ran, or none got as far as publishing.
            missing=cloudwatch.TreatMissingData.BREACHING,
            description=(
                f"No segment build has been published for {_in_words(build_stale_after)}: partners and cohort "
                "tools are being served stale audiences. Open the build state machine (output "
                "BuildStateMachineArn) and check the latest executions: none started means the EventBridge "
                "schedule is disabled or its events are dead-lettered (builder dead-letter queue); failed "
                "means read the failed state's error and the builder function's log (invalid segment "
                "definitions are refused at the Plan stage). A fixed build is rerun by starting the state "
                'machine with {"time": "<now, ISO 8601>"}. A new stack is in alarm until its first build.'
            ),
        )
        self.lookup_errors_alarm = self._alarm(
            "LookupServerErrorsAlarm",
            "lookup-5xx",
            metric=lookup_stage.metric_server_error(statistic=cloudwatch.Stats.AVERAGE, period=ALARM_PERIOD),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=LOOKUP_SERVER_ERROR_RATE,
            evaluation_periods=2,
            missing=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=(
                f"More than {LOOKUP_SERVER_ERROR_RATE:.0%} of partner lookups answered 5xx for 10 minutes. "
                "Check the lookup function's and the authorizer function's errors, throttles and logs (a "
                "throttled or timed-out function is a 5xx too), then the API stage's execution log (ERROR "
                "level) and the catalog and membership tables' throttling."
            ),
        )
        self.fallback_age_alarm = self._alarm(
            "FallbackQueueAgeAlarm",
            "fallback-queue-age",
            metric=fallback_queue.metric_approximate_age_of_oldest_message(
                statistic=cloudwatch.Stats.MAXIMUM, period=ALARM_PERIOD
            ),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=FALLBACK_MAX_AGE.to_seconds(),
            evaluation_periods=1,
            missing=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=(
                f"A hit deferred to the fallback queue has waited more than {FALLBACK_MAX_AGE.to_minutes()} "
                "minutes: the replay function is failing or not reading the queue. Check the replay "
                "function's errors and log and the events table's throttling; a message that keeps "
                "failing moves to the fallback dead-letter queue after 5 receives (its own alarm). "
                "Deferred hits are kept 14 days, so none is lost yet."
            ),
        )
        self.ingest_errors_alarm = self._alarm(
            "IngestErrorsAlarm",
            "ingest-errors",
            metric=ingest_function.metric_errors(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=0,
            evaluation_periods=1,
            missing=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=(
                "The ingest function failed invocations (crash at start-up, timeout, or an unexpected "
                "error in POST /collect): the hits of those requests were not stored. Read the ingest "
                "function's log for the error; a failure right after a deployment is rolled back by "
                "redeploying the previous version."
            ),
        )
        self.ingest_throttles_alarm = self._alarm(
            "IngestThrottlesAlarm",
            "ingest-throttles",
            metric=ingest_function.metric_throttles(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=0,
            evaluation_periods=1,
            missing=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=(
                "Lambda throttled the ingest function: those hits were answered with an error and not "
                "stored. It ran as many at once as it may (ingest_reserved_concurrency): if the traffic "
                "is real, raise that setting (and the account's Lambda concurrency quota with it); if "
                "unreserved (0), the account's concurrent executions are exhausted, other functions included."
            ),
        )
        self.hits_lost_alarm = self._alarm(
            "HitsLostAlarm",
            "hits-lost",
            metric=service_metric(INGEST, HITS_LOST),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=0,
            evaluation_periods=1,
            missing=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=(
                "Hits were lost: neither the events table nor the fallback queue took them (or the pixel "
                "failed before storing). Read the ingest function's log ('pixel hit not stored', 'events "
                "table and fallback queue both failed'); check the events table's throttling and the "
                "fallback queue's health."
            ),
        )
        self.alarms = [
            self.stale_build_alarm,
            self.lookup_errors_alarm,
            self.fallback_age_alarm,
            self.ingest_errors_alarm,
            self.ingest_throttles_alarm,
            self.hits_lost_alarm,
        ]
        for alarm in other_alarms:
            self._notify(alarm)

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            # Dashboard names are account-wide, across regions.
            dashboard_name=f"{self._stack_name}-{Aws.REGION}",
            widgets=[
                [cloudwatch.AlarmStatusWidget(title="Alarms", alarms=[*self.alarms, *other_alarms], width=24)],
                self._collection_widgets(ingest_function),
                self._build_widgets(build_state_machine),
                self._lookup_widgets(lookup_stage),
                self._queue_widgets(fallback_queue, dead_letter_queues),
            ],
        )

    def _alarm_topic(self, email: str | None, removal_policy: RemovalPolicy) -> sns.Topic:
        """An encrypted, TLS-only topic that CloudWatch alarms of this account may publish to."""
        cloudwatch_service = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        # Its own key: CloudWatch cannot publish to a topic under the AWS-managed SNS key.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{self._stack_name}: encrypts the alarm notifications topic",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        # CloudWatch encrypts each notification itself; without this it drops them silently.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_service],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{self._stack_name}-alarms",
            display_name=f"{self._stack_name} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # The topic policy replaces SNS's default one, which let the account's alarms publish.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_service],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                    },
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        if email:
            subscription = topic.add_subscription(subscriptions.EmailSubscription(email))
            acknowledge(
                subscription,
                "Serverless-SNSRedrivePolicy",
                "An alarm email SNS could not deliver would wait in a dead-letter queue nobody reads: "
                "the alarm's state stays in CloudWatch and on the dashboard whatever the email's fate, "
                "and a queue of undelivered alarms would need an alarm of its own.",
            )
        return topic

    def _alarm(
        self,
        construct_id: str,
        name: str,
        *,
        metric: cloudwatch.IMetric,
        comparison: cloudwatch.ComparisonOperator,
        threshold: float,
        evaluation_periods: int,
        missing: cloudwatch.TreatMissingData,
        description: str,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._stack_name}-{name}",
            alarm_description=description,
            metric=metric,
            comparison_operator=comparison,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            treat_missing_data=missing,
        )
        self._notify(alarm)
        return alarm

    def _notify(self, alarm: cloudwatch.IAlarm) -> None:
        """Tell the topic when `alarm` goes off and when it is back to OK."""
        if isinstance(alarm, cloudwatch.Alarm):
            action = cloudwatch_actions.SnsAction(self.topic)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _collection_widgets(self, ingest_function: lambda_.IFunction) -> list[cloudwatch.IWidget]:
        hits = [service_metric(INGEST, name) for name in ("hits_stored", "hits_duplicate", "hits_deferred", HITS_LOST)]
        return [
            _graph(
                "Hits: stored, duplicate, deferred, lost; replayed",
                [*hits, service_metric(REPLAY, "hits_replayed")],
            ),
            _graph("Hits refused, by reason", [service_metrics_named(INGEST, "refused")], stacked=True),
            _graph("Events rejected, by reason", [service_metrics_named(INGEST, "rejected")], stacked=True),
            _graph(
                "Ingest function",
                [
                    ingest_function.metric_errors(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
                    ingest_function.metric_throttles(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
                ],
                right=[ingest_function.metric_invocations(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD)],
            ),
        ]

    def _build_widgets(self, state_machine: sfn.IStateMachine) -> list[cloudwatch.IWidget]:
        hourly = Duration.hours(1)
        return [
            _graph(
                "Builds published; executions succeeded, failed, timed out",
                [
                    service_metric(BUILDER, BUILDS_PUBLISHED, period=hourly),
                    state_machine.metric_succeeded(statistic=cloudwatch.Stats.SUM, period=hourly),
                    state_machine.metric_failed(statistic=cloudwatch.Stats.SUM, period=hourly),
                    state_machine.metric_timed_out(statistic=cloudwatch.Stats.SUM, period=hourly),
                ],
                width=8,
            ),
            _graph(
                "Build duration (ms)",
                [
                    state_machine.metric_time(statistic=cloudwatch.Stats.AVERAGE, period=hourly),
                    state_machine.metric_time(statistic=cloudwatch.Stats.MAXIMUM, period=hourly),
                ],
                width=8,
            ),
            _graph(
                "Build size: visitors, memberships; membership changes",
                [
                    service_metric(
                        BUILDER, "build_visitors_scanned", statistic=cloudwatch.Stats.MAXIMUM, period=hourly
                    ),
                    service_metric(BUILDER, "build_memberships", statistic=cloudwatch.Stats.MAXIMUM, period=hourly),
                ],
                right=[service_metric(BUILDER, "membership_changes", period=hourly)],
                width=8,
            ),
        ]

    def _lookup_widgets(self, stage: apigw.Stage) -> list[cloudwatch.IWidget]:
        latency = [
            metric(statistic=statistic, period=ALARM_PERIOD)
            for metric in (stage.metric_latency, stage.metric_integration_latency)
            for statistic in (cloudwatch.Stats.p(50), cloudwatch.Stats.p(99))
        ]
        return [
            _graph("Lookup latency p50 and p99 (ms): API, integration", latency, width=8),
            _graph(
                "Lookup requests: 4xx, 5xx; all",
                [
                    stage.metric_client_error(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
                    stage.metric_server_error(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
                ],
                right=[stage.metric_count(statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD)],
                width=8,
            ),
            _graph("Lookup answers, by route", [service_metrics_named(LOOKUP, "answers")], width=8),
        ]

    def _queue_widgets(
        self, fallback_queue: sqs.IQueue, dead_letter_queues: Mapping[str, sqs.IQueue]
    ) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.GraphWidget(
                title="Fallback queue: age of the oldest deferred hit (s); hits waiting",
                left=[
                    fallback_queue.metric_approximate_age_of_oldest_message(
                        statistic=cloudwatch.Stats.MAXIMUM, period=ALARM_PERIOD
                    )
                ],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=FALLBACK_MAX_AGE.to_seconds(), label="alarm")],
                right=[
                    fallback_queue.metric_approximate_number_of_messages_visible(
                        statistic=cloudwatch.Stats.MAXIMUM, period=ALARM_PERIOD
                    )
                ],
                width=12,
                height=GRAPH_HEIGHT,
            ),
            _graph(
                "Dead-letter queues: messages waiting",
                [
                    queue.metric_approximate_number_of_messages_visible(
                        statistic=cloudwatch.Stats.MAXIMUM, period=ALARM_PERIOD, label=label
                    )
                    for label, queue in dead_letter_queues.items()
                ],
                width=12,
            ),
        ]


def _graph(
    title: str,
    left: Sequence[cloudwatch.IMetric],
    *,
    right: Sequence[cloudwatch.IMetric] = (),
    stacked: bool = False,
    width: int = 6,
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title, left=list(left), right=list(right), stacked=stacked, width=width, height=GRAPH_HEIGHT
    )


def _in_words(duration: timedelta) -> str:
    hours = duration / HOUR
    return f"{hours:g} hours" if hours >= 1 else f"{duration.total_seconds() / 60:g} minutes"
