"""The fallback queue and the replay function: hits DynamoDB refused are kept and written later."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app


def test_fallback_queue_is_encrypted_ssl_only_and_dead_letters_after_retries(prod_stack: Synthesised) -> None:
    replay = prod_stack.stack.replay
    properties = prod_stack.properties(replay.queue)
    assert properties["SqsManagedSseEnabled"] is True
    assert properties["MessageRetentionPeriod"] == 14 * 86_400
    assert properties["VisibilityTimeout"] == 360
    assert properties["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [prod_stack.logical_id(replay.dead_letter_queue), "Arn"]},
        "maxReceiveCount": 5,
    }
    prod_stack.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [prod_stack.ref(replay.queue)],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )


def test_replay_function_reads_the_queue_with_partial_batch_responses(prod_stack: Synthesised) -> None:
    replay = prod_stack.stack.replay
    assert prod_stack.properties(replay.function)["Handler"] == "functions.replay.handler.handler"
    prod_stack.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [prod_stack.logical_id(replay.queue), "Arn"]},
            "FunctionName": prod_stack.ref(replay.function),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": 10,
        },
    )


def test_an_alarm_watches_the_fallback_dead_letter_queue(prod_stack: Synthesised) -> None:
    prod_stack.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Namespace": "AWS/SQS",
            "Dimensions": [
                {
                    "Name": "QueueName",
                    "Value": {
                        "Fn::GetAtt": [prod_stack.logical_id(prod_stack.stack.replay.dead_letter_queue), "QueueName"]
                    },
                }
            ],
            "Threshold": 0,
        },
    )
