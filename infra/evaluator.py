"""Real-time membership (DESIGN.md, "Freshness"): the evaluator on the events table's
stream and the due-time sweep on a one-minute schedule.

The stream's event source batches up to `BATCH_SIZE` records for at most
`MAX_BATCHING_WINDOW` (functions/evaluator/stream.py, which `dmp serve`'s poller follows
too). The evaluator reports the visitors it failed on (partial batch response): the stream
is retried from the first record of a failed visitor, the rest of the batch stands. A batch
that fails as a whole is retried and halved to isolate a bad record. After `RETRY_ATTEMPTS`
the failed part's description goes to the evaluator's dead-letter queue (the next build
corrects what it missed). Alarms: the stream's iterator age (the evaluator falling behind
the hits) and the dead-letter queue. A sweep that fails is not retried: the next minute's
run starts from the same checkpoint.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from functions.core.config import Env
from functions.evaluator.stream import BATCH_SIZE, RETRY_ATTEMPTS
from infra.compliance import acknowledge
from infra.dead_letters import ALARM_PERIOD, alarm_on_messages, dead_letter_queue
from infra.lambda_layer import LambdaPackaging

EVALUATOR_TIMEOUT = Duration.seconds(60)
SWEEP_TIMEOUT = Duration.minutes(5)
MEMORY_MB = 512
MAX_BATCHING_WINDOW = Duration.seconds(1)
SWEEP_SCHEDULE = events.Schedule.rate(Duration.minutes(1))
# The evaluator is this far behind the hits (the age of the newest record it read) before
# the alarm goes off: lookups then lag the site by as much.
ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000


class Evaluator(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table: dynamodb.Table,
        membership_table_name: str,
        suppression_table_name: str,
        catalog_table_name: str,
        due_table_name: str,
        bucket_name: str,
        reserved_concurrency: int | None,
        sweep_reserved_concurrency: int | None,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {
            Env.EVENTS_TABLE: events_table.table_name,
            Env.MEMBERSHIP_TABLE: membership_table_name,
            Env.SUPPRESSION_TABLE: suppression_table_name,
            Env.CATALOG_TABLE: catalog_table_name,
            Env.DUE_TABLE: due_table_name,
            Env.SEGMENTS_BUCKET: bucket_name,
        }
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            holds="descriptions of stream batches the evaluator failed on after retries (the shard and "
            "sequence numbers, not the hits: those stay in the events table)",
        )
        self.function = packaging.function(
            self,
            "Function",
            name="evaluator",
            description="DMP evaluator: re-evaluates the visitors of each batch of hits against the published build",
            memory_size=MEMORY_MB,
            timeout=EVALUATOR_TIMEOUT,
            reserved_concurrency=reserved_concurrency,
            failures=f"The DynamoDB Streams event source invokes it synchronously: the records of the visitors "
            f"it reports failed (or a failed batch, halved to isolate a bad record) are retried {RETRY_ATTEMPTS} "
            "times, then described in the evaluator's dead-letter queue (on-failure destination), which is alarmed.",
            environment=environment,
        )
        self.event_source = event_sources.DynamoEventSource(
            events_table,
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=BATCH_SIZE,
            max_batching_window=MAX_BATCHING_WINDOW,
            bisect_batch_on_error=True,
            # The handler answers which visitors failed: only their part of the batch is retried.
            report_batch_item_failures=True,
            retry_attempts=RETRY_ATTEMPTS,
            on_failure=event_sources.SqsDlq(self.dead_letter_queue),
        )
        self.function.add_event_source(self.event_source)
        self.iterator_age_alarm = cloudwatch.Alarm(
            self,
            "IteratorAgeAlarm",
            alarm_description=(
                f"The evaluator is more than {ITERATOR_AGE_ALARM_MS // 60_000} minutes behind the hits: lookups "
                "lag the site by as much (builds still correct everyone). Check the evaluator's errors, "
                "throttles (evaluator_reserved_concurrency) and duration, and the membership and events "
                "tables' throttling."
            ),
            metric=self.function.metric(
                "IteratorAge",
                statistic=cloudwatch.Stats.MAXIMUM,
                period=ALARM_PERIOD,
                unit=cloudwatch.Unit.MILLISECONDS,
            ),
            threshold=ITERATOR_AGE_ALARM_MS,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letter_alarm = alarm_on_messages(
            self,
            "DeadLetterAlarm",
            self.dead_letter_queue,
            description="The evaluator failed on a batch of hits after retries: those visitors' membership "
            "waits for their next hit, due instant or build. The evaluator's log says why.",
        )

        self.sweep_function = packaging.function(
            self,
            "SweepFunction",
            name="sweep",
            description="DMP sweep: re-evaluates the visitors whose membership falls due, every minute",
            memory_size=MEMORY_MB,
            timeout=SWEEP_TIMEOUT,
            reserved_concurrency=sweep_reserved_concurrency,
            failures="EventBridge invokes it every minute and a failed run is not retried: the next run "
            "starts from the same checkpoint (the last minute swept), so nothing due is skipped.",
            environment=environment,
        )
        self.sweep_function.configure_async_invoke(retry_attempts=0)
        acknowledge(
            self.sweep_function,
            "Serverless-LambdaAsyncFailureDestination",
            "A failed sweep needs no failure destination: the next minute's run sweeps from the same "
            "checkpoint, and the function's errors are in its log and metrics.",
        )
        self.schedule = events.Rule(
            self,
            "SweepSchedule",
            description="The due-time sweep of real-time membership",
            schedule=SWEEP_SCHEDULE,
            targets=[targets.LambdaFunction(self.sweep_function, retry_attempts=0)],
        )
        acknowledge(
            self.schedule,
            "Serverless-EventBusDLQ",
            "A sweep event lost is harmless: the next minute's event sweeps from the same checkpoint.",
        )
