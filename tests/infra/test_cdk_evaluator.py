"""Real-time membership in CDK: the events table's stream feeding the evaluator, its
dead letters and alarms, the sweep's schedule, and exactly what each function may do."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.infra.synthesis import Synthesised, as_list, role_statements

pytestmark = pytest.mark.slow  # synthesises the CDK app

STORES = ("EVENTS_TABLE", "MEMBERSHIP_TABLE", "SUPPRESSION_TABLE", "CATALOG_TABLE", "DUE_TABLE", "SEGMENTS_BUCKET")


def test_the_events_table_streams_new_images(prod_stack: Synthesised) -> None:
    properties = prod_stack.properties(prod_stack.stack.storage.events_table)
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_the_stream_invokes_the_evaluator_in_batches_and_dead_letters_what_fails(prod_stack: Synthesised) -> None:
    # The evaluator answers which visitors failed (partial batch response): only the stream from
    # the first of their records is retried; a batch failing whole is still halved and retried.
    evaluator = prod_stack.stack.evaluator
    prod_stack.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": prod_stack.ref(evaluator.function),
            "EventSourceArn": {
                "Fn::GetAtt": [prod_stack.logical_id(prod_stack.stack.storage.events_table), "StreamArn"]
            },
            "StartingPosition": "LATEST",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "DestinationConfig": {"OnFailure": {"Destination": prod_stack.arn(evaluator.dead_letter_queue)}},
        },
    )


def test_the_evaluator_falling_behind_or_dead_lettering_alarms(prod_stack: Synthesised) -> None:
    evaluator = prod_stack.stack.evaluator
    prod_stack.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "IteratorAge",
            "Namespace": "AWS/Lambda",
            "Dimensions": [{"Name": "FunctionName", "Value": prod_stack.ref(evaluator.function)}],
            "Statistic": "Maximum",
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 5 * 60 * 1000,
            "AlarmActions": Match.any_value(),
        },
    )
    prod_stack.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {
                    "Name": "QueueName",
                    "Value": {"Fn::GetAtt": [prod_stack.logical_id(evaluator.dead_letter_queue), "QueueName"]},
                }
            ],
            "Threshold": 0,
            "AlarmActions": Match.any_value(),
        },
    )


def test_the_sweep_runs_every_minute_without_retries(prod_stack: Synthesised) -> None:
    evaluator = prod_stack.stack.evaluator
    prod_stack.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": prod_stack.arn(evaluator.sweep_function)})],
        },
    )
    prod_stack.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": prod_stack.ref(evaluator.sweep_function), "MaximumRetryAttempts": 0},
    )


@pytest.mark.parametrize(("attribute", "name"), [("function", "evaluator"), ("sweep_function", "sweep")])
def test_both_functions_run_their_handler_with_the_stores_they_need(
    prod_stack: Synthesised, attribute: str, name: str
) -> None:
    properties = prod_stack.properties(getattr(prod_stack.stack.evaluator, attribute))
    assert properties["Handler"] == f"functions.{name}.handler.handler"
    assert properties["ReservedConcurrentExecutions"] == {"evaluator": 10, "sweep": 1}[name]
    storage = prod_stack.stack.storage
    variables = properties["Environment"]["Variables"]
    assert {k: variables[k] for k in STORES} == {
        "EVENTS_TABLE": prod_stack.ref(storage.events_table),
        "MEMBERSHIP_TABLE": prod_stack.ref(storage.membership_table),
        "SUPPRESSION_TABLE": prod_stack.ref(storage.suppression_table),
        "CATALOG_TABLE": prod_stack.ref(storage.catalog_table),
        "DUE_TABLE": prod_stack.ref(storage.due_table),
        "SEGMENTS_BUCKET": prod_stack.ref(storage.bucket),
    }


def granted(prod_stack: Synthesised, function: Any, dead_letters: Any = None) -> dict[str, set[str]]:
    """{owner: actions} of every statement of the function's role."""
    stack, storage = prod_stack.stack, prod_stack.stack.storage
    owners = {
        prod_stack.logical_id(storage.events_table): "events",
        prod_stack.logical_id(storage.membership_table): "membership",
        prod_stack.logical_id(storage.suppression_table): "suppression",
        prod_stack.logical_id(storage.catalog_table): "catalog",
        prod_stack.logical_id(storage.due_table): "due",
        prod_stack.logical_id(stack.evaluator.dead_letter_queue): "dead_letters",
        prod_stack.logical_id(function.log_group): "logs",
    }
    bucket_id = prod_stack.logical_id(storage.bucket)
    found: dict[str, set[str]] = defaultdict(set)
    for statement in role_statements(prod_stack, function.role):
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            named = [name for logical_id, name in owners.items() if logical_id in text]
            if "StreamArn" in text:
                named = ["events_stream"]
            if bucket_id in text:
                named = ["bucket" + ("".join(resource["Fn::Join"][1][1:]) if "Fn::Join" in resource else "")]
            owner = named[0] if named else ("*" if resource == "*" else text)
            found[owner] |= set(as_list(statement["Action"]))
    return dict(found)


EVALUATES = {
    "events": {"dynamodb:Query"},
    "membership": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"},
    "suppression": {"dynamodb:BatchGetItem"},
    "catalog": {"dynamodb:GetItem"},
    "bucket/builds/*/plan.json": {"s3:GetObject"},
    "logs": {"logs:CreateLogStream", "logs:PutLogEvents"},
}


def test_the_evaluator_may_do_exactly_what_re_evaluating_a_visitor_needs(prod_stack: Synthesised) -> None:
    actions = granted(prod_stack, prod_stack.stack.evaluator.function)
    assert actions.pop("events_stream") == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert "sqs:SendMessage" in actions.pop("dead_letters")
    assert actions.pop("*") == {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}
    assert actions == {**EVALUATES, "due": {"dynamodb:BatchWriteItem"}}


def test_the_sweep_may_do_what_the_evaluator_does_and_keep_the_due_index_but_delete_nothing(
    prod_stack: Synthesised,
) -> None:
    actions = granted(prod_stack, prod_stack.stack.evaluator.sweep_function)
    assert actions.pop("*") == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert actions == {
        **EVALUATES,
        "due": {
            "dynamodb:BatchWriteItem",
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        },
    }
