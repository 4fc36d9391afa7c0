"""No lost hits: the fallback queue the ingest function defers to when DynamoDB would
not take a hit even after retries, and the replay function that writes them later.

A message the replay function cannot write is retried by SQS, then kept in the queue's
own dead-letter queue, and an alarm says so.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.core.config import Env
from infra.compliance import acknowledge, skip_check
from infra.dead_letters import SQS_MANAGED_ENCRYPTION, alarm_on_messages, dead_letter_queue
from infra.lambda_layer import LambdaPackaging

TIMEOUT = Duration.seconds(60)
# SQS needs the visibility timeout to exceed the function's timeout (AWS advises 6x).
VISIBILITY_TIMEOUT = Duration.seconds(6 * 60)
MAX_RECEIVES = 5
BATCH_SIZE = 10
# The most concurrent invocations an SQS event source may be limited to (the fewest is 2).
SQS_MAX_CONCURRENCY = 1000


class Replay(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        events_table_name: str,
        suppression_table_name: str,
        reserved_concurrency: int | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            holds="deferred hits of the fallback queue the replay function could not write after several receives",
        )
        self.queue = sqs.Queue(
            self,
            "FallbackQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVES),
        )
        skip_check(self.queue, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION)
        self.function = packaging.function(
            self,
            "Function",
            name="replay",
            description="DMP replay: writes the hits deferred to the fallback queue, each exactly once",
            memory_size=256,
            timeout=TIMEOUT,
            reserved_concurrency=reserved_concurrency,
            failures=f"The SQS event source invokes it synchronously: a message that fails is received again, "
            f"and after {MAX_RECEIVES} receives kept in the fallback queue's dead-letter queue, which is alarmed.",
            environment={Env.EVENTS_TABLE: events_table_name, Env.SUPPRESSION_TABLE: suppression_table_name},
        )
        # Partial batch responses: one bad message is retried alone, not its whole batch. The
        # event source polls with no more invocations than the function may run, so a backlog
        # is worked off at that pace and never throttled into the dead-letter queue.
        self.event_source = event_sources.SqsEventSource(
            self.queue,
            batch_size=BATCH_SIZE,
            report_batch_item_failures=True,
            max_concurrency=min(reserved_concurrency, SQS_MAX_CONCURRENCY) if reserved_concurrency else None,
        )
        self.function.add_event_source(self.event_source)
        acknowledge(
            self.function,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS event source has no on-failure destination (Lambda offers one for stream and Kafka "
            f"sources): a failed message goes to the queue's own dead-letter queue after {MAX_RECEIVES} "
            "receives, the redrive policy above.",
        )
        self.dead_letter_alarm = alarm_on_messages(
            self,
            "DeadLetterAlarm",
            self.dead_letter_queue,
            description="Deferred hits could not be written after several attempts; they wait in the "
            "fallback dead-letter queue (move them back to the fallback queue once the cause is fixed).",
        )
