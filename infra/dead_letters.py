"""Dead-letter queues and the alarms on them, alike wherever something may fail for good."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.compliance import acknowledge, skip_check

ALARM_PERIOD = Duration.minutes(5)
# checkov's CKV_AWS_27 asks for a KMS key and does not count SQS-managed encryption.
SQS_MANAGED_ENCRYPTION = (
    "Encrypted at rest with SQS-managed keys (SSE-SQS, SqsManagedSseEnabled), and TLS-only by its "
    "policy; a customer-managed KMS key would add a key policy to keep in step with every producer "
    "(EventBridge, the functions) and per-request KMS costs, and guard nothing more."
)


def dead_letter_queue(scope: Construct, construct_id: str, *, holds: str) -> sqs.Queue:
    """An encrypted, TLS-only queue kept 14 days; `holds` says what lands in it."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is itself a dead-letter queue: {holds}.")
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        f"This queue is itself a dead-letter queue ({holds}): its messages stay until an operator moves them.",
    )
    skip_check(queue, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION)
    return queue


def alarm_on_messages(scope: Construct, construct_id: str, queue: sqs.IQueue, *, description: str) -> cloudwatch.Alarm:
    """Goes off as soon as anything is in `queue`. Its action is added with every other
    alarm's: the stack's alarms topic (infra/monitoring.py)."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=ALARM_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
        ),
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
