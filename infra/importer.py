"""Second- and third-party data: the importer function and what triggers it.

A file dropped under `imports/<source>/` in the segments bucket raises S3's "Object
Created" event on EventBridge (the bucket sends its events there); a rule with the same
pattern as the local stack's (`import_event_pattern`) invokes the importer, which also
matches the importer's own "Import Continued" events, so a large file goes on in a new
invocation. An event the importer fails on is retried by EventBridge and by Lambda, then
kept in the importer's dead-letter queue, and an alarm says so. A file that cannot be
imported is not a failure: its report says why.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.core.config import Env
from functions.core.storage.imports import import_event_pattern
from infra.dead_letters import alarm_on_messages, dead_letter_queue
from infra.lambda_layer import LambdaPackaging

# Lambda's longest: the importer checkpoints and hands over to a continuation well before.
TIMEOUT = Duration.minutes(15)
MEMORY_MB = 512
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.hours(6)


class Importer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: LambdaPackaging,
        bucket: s3.Bucket,
        events_table_name: str,
        suppression_table_name: str,
        id_map_table_name: str,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            holds="import events (a dropped file, or a continuation of one) the importer failed on after retries",
        )
        self.function = packaging.function(
            self,
            "Function",
            name="importer",
            description="DMP importer: second- and third-party files under imports/<source>/ -> visitors' traits",
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            reserved_concurrency=reserved_concurrency,
            failures="EventBridge invokes it asynchronously: a failed event is retried by Lambda, then sent to "
            "the importer's own dead-letter queue through an on-failure destination (and the rule's target "
            "keeps what it could not deliver in the same queue).",
            environment={
                Env.EVENTS_TABLE: events_table_name,
                Env.SUPPRESSION_TABLE: suppression_table_name,
                Env.ID_MAP_TABLE: id_map_table_name,
                Env.SEGMENTS_BUCKET: bucket.bucket_name,
            },
        )
        # EventBridge invokes the function asynchronously: Lambda retries a failed event,
        # then sends it to the dead-letter queue.
        self.function.configure_async_invoke(
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        # The bucket's events go to EventBridge: a property of the bucket itself, without
        # CDK's notifications custom resource (and its extra function).
        cast(s3.CfnBucket, bucket.node.default_child).add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        pattern = import_event_pattern(bucket.bucket_name)
        self.rule = events.Rule(
            self,
            "Trigger",
            description="Files dropped under imports/ in the segments bucket, and the importer's continuations",
            event_pattern=events.EventPattern(
                source=pattern["source"], detail_type=pattern["detail-type"], detail=pattern["detail"]
            ),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )
        self.dead_letter_alarm = alarm_on_messages(
            self,
            "DeadLetterAlarm",
            self.dead_letter_queue,
            description="The importer failed on a file (or its continuation) after retries; the event waits in "
            "the importer's dead-letter queue. Its log says why; drop the file again once fixed.",
        )
