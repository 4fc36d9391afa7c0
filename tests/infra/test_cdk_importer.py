"""The importer: S3 -> EventBridge -> the importer function, its dead letters and its rights."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from aws_cdk.assertions import Match

from tests.infra.synthesis import Synthesised, as_list, role_statements

pytestmark = pytest.mark.slow  # synthesises the CDK app


def test_the_bucket_sends_its_events_to_eventbridge(prod_stack: Synthesised) -> None:
    properties = prod_stack.properties(prod_stack.stack.storage.bucket)
    assert properties["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def test_a_rule_invokes_the_importer_on_files_under_imports_and_on_its_continuations(prod_stack: Synthesised) -> None:
    importer = prod_stack.stack.importer
    prod_stack.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.s3", "dmp.importer"],
                "detail-type": ["Object Created", "Import Continued"],
                "detail": {
                    "bucket": {"name": [prod_stack.ref(prod_stack.stack.storage.bucket)]},
                    "object": {"key": [{"prefix": "imports/"}]},
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": prod_stack.arn(importer.function),
                        "DeadLetterConfig": {"Arn": prod_stack.arn(importer.dead_letter_queue)},
                        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 6 * 3600},
                    }
                )
            ],
        },
    )


def test_a_failed_import_event_ends_in_the_importers_dead_letter_queue_and_alarms(prod_stack: Synthesised) -> None:
    importer = prod_stack.stack.importer
    prod_stack.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": prod_stack.ref(importer.function),
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": prod_stack.arn(importer.dead_letter_queue)}},
        },
    )
    prod_stack.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {
                    "Name": "QueueName",
                    "Value": {"Fn::GetAtt": [prod_stack.logical_id(importer.dead_letter_queue), "QueueName"]},
                }
            ],
            "Threshold": 0,
        },
    )


def test_the_importer_runs_its_handler_with_the_stores_it_needs(prod_stack: Synthesised) -> None:
    properties = prod_stack.properties(prod_stack.stack.importer.function)
    assert properties["Handler"] == "functions.importer.handler.handler"
    assert properties["Timeout"] == 900
    storage = prod_stack.stack.storage
    variables = properties["Environment"]["Variables"]
    assert variables["EVENTS_TABLE"] == prod_stack.ref(storage.events_table)
    assert variables["SUPPRESSION_TABLE"] == prod_stack.ref(storage.suppression_table)
    assert variables["ID_MAP_TABLE"] == prod_stack.ref(storage.id_map_table)
    assert variables["SEGMENTS_BUCKET"] == prod_stack.ref(storage.bucket)


def test_the_importer_may_do_exactly_what_an_import_needs(prod_stack: Synthesised) -> None:
    stack = prod_stack.stack
    function = stack.importer.function
    storage = stack.storage
    owners = {
        prod_stack.logical_id(storage.events_table): "events",
        prod_stack.logical_id(storage.suppression_table): "suppression",
        prod_stack.logical_id(storage.id_map_table): "id_map",
        prod_stack.logical_id(stack.importer.dead_letter_queue): "dead_letters",
        prod_stack.logical_id(function.log_group): "logs",
    }
    bucket_id = prod_stack.logical_id(storage.bucket)
    granted: dict[str, set[str]] = defaultdict(set)
    assert function.role is not None
    for statement in role_statements(prod_stack, function.role):
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            named = [name for logical_id, name in owners.items() if logical_id in text]
            if bucket_id in text:
                # The bucket's ARN alone, or `Fn::Join ["", [<bucket ARN>, "/<key pattern>"]]`.
                named = ["bucket" + ("".join(resource["Fn::Join"][1][1:]) if "Fn::Join" in resource else "")]
            owner = named[0] if named else ("*" if resource == "*" else text)
            granted[owner] |= set(as_list(statement["Action"]))
    assert granted.pop("events") == {"dynamodb:BatchWriteItem"}
    assert granted.pop("suppression") == {"dynamodb:BatchGetItem"}
    assert granted.pop("id_map") == {"dynamodb:BatchGetItem"}
    assert granted.pop("bucket") == {"s3:ListBucket"}
    assert granted.pop("bucket/imports/*") == {"s3:GetObject"}
    assert granted.pop("bucket/sources/*") == {"s3:GetObject"}
    assert granted.pop("bucket/imports/*.report.json") == {"s3:PutObject"}
    assert granted.pop("bucket/imports/*.progress.json") == {"s3:PutObject"}
    assert "sqs:SendMessage" in granted.pop("dead_letters")
    assert granted.pop("logs") == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert granted.pop("*") == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    [(bus, actions)] = granted.items()
    assert actions == {"events:PutEvents"} and "event-bus/default" in bus


def test_listing_is_confined_to_the_importers_prefixes(prod_stack: Synthesised) -> None:
    function = prod_stack.stack.importer.function
    assert function.role is not None
    [listing] = [s for s in role_statements(prod_stack, function.role) if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["imports/*", "sources/*"]}}
