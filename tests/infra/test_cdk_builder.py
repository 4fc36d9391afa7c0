"""Segment builds: the builder function and the schedule that starts it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match
from pydantic import ValidationError

from functions.builder.stages import (
    BuildAnswer,
    ExportStage,
    PlanAnswer,
    PlanStage,
    PublishStage,
    ShardStage,
    StageEvent,
)
from tests.conftest import load_event
from tests.infra.synthesis import Synthesised

pytestmark = pytest.mark.slow  # synthesises the CDK app


def test_builder_function_is_configured_from_context(prod_stack: Synthesised) -> None:
    storage = prod_stack.stack.storage
    properties = prod_stack.properties(prod_stack.stack.builder.function)
    assert properties["Handler"] == "functions.builder.handler.handler"
    assert properties["Timeout"] == 15 * 60
    assert properties["MemorySize"] == 1769
    assert properties["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "builder",
        "POWERTOOLS_METRICS_NAMESPACE": "DMP",
        "EVENTS_TABLE": prod_stack.ref(storage.events_table),
        "MEMBERSHIP_TABLE": prod_stack.ref(storage.membership_table),
        "CATALOG_TABLE": prod_stack.ref(storage.catalog_table),
        "SUPPRESSION_TABLE": prod_stack.ref(storage.suppression_table),
        "ID_MAP_TABLE": prod_stack.ref(storage.id_map_table),
        "DUE_TABLE": prod_stack.ref(storage.due_table),
        "SEGMENTS_BUCKET": prod_stack.ref(storage.bucket),
        "RETENTION_DAYS": "30",
        "BUILD_SHARDS": "8",
        # a daily cron schedule: builds look 48 hours ahead, the stale-build alarm's window
        "DUE_HORIZON_SECONDS": str(48 * 3600),
    }


def test_schedule_expression_comes_from_context(prod_stack: Synthesised) -> None:
    # GIVEN `-c build_schedule=cron(15 3 * * ? *)` (cdk.json says rate(1 hour))
    builder = prod_stack.stack.builder
    # THEN the rule uses it, and starts the build state machine
    properties = prod_stack.properties(builder.schedule)
    assert properties["ScheduleExpression"] == "cron(15 3 * * ? *)"
    (target,) = properties["Targets"]
    assert target["Arn"] == prod_stack.ref(builder.state_machine)


def test_undelivered_schedule_events_are_retried_then_dead_lettered(prod_stack: Synthesised) -> None:
    builder = prod_stack.stack.builder
    (target,) = prod_stack.properties(builder.schedule)["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["DeadLetterConfig"] == {"Arn": prod_stack.arn(builder.dead_letter_queue)}


def test_dead_letter_queue_is_encrypted_and_tls_only(prod_stack: Synthesised) -> None:
    queue = prod_stack.stack.builder.dead_letter_queue
    assert prod_stack.properties(queue)["SqsManagedSseEnabled"] is True
    prod_stack.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [prod_stack.ref(queue)],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "sqs:SendMessage",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Condition": {
                                    "ArnEquals": {"aws:SourceArn": prod_stack.arn(prod_stack.stack.builder.schedule)}
                                },
                            }
                        ),
                    ]
                )
            },
        },
    )


def _states(prod_stack: Synthesised) -> dict:
    definition = prod_stack.properties(prod_stack.stack.builder.state_machine)["DefinitionString"]
    # {"Fn::Join": ["", [...strings and tokens...]]}: the tokens are ARNs, never state names
    text = "".join(part if isinstance(part, str) else "ARN" for part in definition["Fn::Join"][1])
    return json.loads(text)


def test_the_state_machine_plans_maps_over_shards_and_publishes(prod_stack: Synthesised) -> None:
    machine = _states(prod_stack)
    states = machine["States"]
    assert machine["StartAt"] == "Plan"
    assert states["Plan"]["Parameters"] == {"stage": "plan", "time.$": "$.time"}
    assert "Retry" not in states["Plan"] or all("States.ALL" not in r["ErrorEquals"] for r in states["Plan"]["Retry"])
    assert states["Plan"]["Next"] == "Published?"
    choice = states["Published?"]
    assert choice["Choices"][0]["Variable"] == "$.skip" and choice["Choices"][0]["Next"] == "AlreadyPublished"
    shards = states["Shards"]
    assert shards["Type"] == "Map" and shards["ItemsPath"] == "$.shards"
    assert shards["MaxConcurrency"] == 8  # build_shards of the prod context
    assert shards["ResultPath"] is None
    shard = shards["ItemProcessor"]["States"]["Shard"]
    assert shard["Parameters"] == {"stage": "shard", "build_id.$": "$.build_id", "shard.$": "$.shard"}
    assert any("States.ALL" in r["ErrorEquals"] for r in shard["Retry"])
    assert shards["Next"] == "Publish"
    assert states["Publish"]["Parameters"] == {"stage": "publish", "build_id.$": "$.build_id"}
    assert states["Publish"]["Next"] == "Export"


def test_the_export_stage_follows_publish_and_is_retried_like_it(prod_stack: Synthesised) -> None:
    states = _states(prod_stack)["States"]
    export, publish = states["Export"], states["Publish"]
    # THEN Export runs the builder function after Publish, on the published build's id
    assert export["Type"] == "Task" and export["Resource"] == publish["Resource"]
    assert export["Parameters"] == {"stage": "export", "build_id.$": "$.build_id"}
    assert export["End"] is True
    # AND it is retried as publish is (both idempotent), with no catch: a failure that
    # outlasts the retries fails the execution, which the DLQ rule and the alarm watch
    assert export["Retry"] == publish["Retry"]
    assert any("States.ALL" in r["ErrorEquals"] for r in export["Retry"])
    assert "Catch" not in export


def test_the_state_machine_logs_and_traces(prod_stack: Synthesised) -> None:
    properties = prod_stack.properties(prod_stack.stack.builder.state_machine)
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["LoggingConfiguration"]["Level"] == "ALL"


def test_failed_build_executions_land_in_the_dead_letter_queue(prod_stack: Synthesised) -> None:
    builder = prod_stack.stack.builder
    properties = prod_stack.properties(builder.failed_builds)
    assert properties["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
    assert properties["EventPattern"]["detail"] == {
        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
        "stateMachineArn": [prod_stack.ref(builder.state_machine)],
    }
    (target,) = properties["Targets"]
    assert target["Arn"] == prod_stack.arn(builder.dead_letter_queue)


def test_an_alarm_goes_off_when_anything_is_dead_lettered(prod_stack: Synthesised) -> None:
    builder = prod_stack.stack.builder
    alarm = prod_stack.properties(builder.dead_letter_alarm)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [prod_stack.logical_id(builder.dead_letter_queue), "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_an_alarm_goes_off_when_a_build_execution_fails(prod_stack: Synthesised) -> None:
    builder = prod_stack.stack.builder
    alarm = prod_stack.properties(builder.errors_alarm)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/States", "ExecutionsFailed", "Sum")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": prod_stack.ref(builder.state_machine)}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def _resolve(parameters: dict[str, Any], state_input: dict[str, Any], item: Any = None) -> dict[str, Any]:
    """A state's Parameters as Step Functions fills them (the simple paths this machine uses)."""
    resolved: dict[str, Any] = {}
    for key, value in parameters.items():
        if not key.endswith(".$"):
            resolved[key] = value
        elif value == "$$.Map.Item.Value":
            resolved[key[:-2]] = item
        else:
            resolved[key[:-2]] = state_input[value.removeprefix("$.")]
    return resolved


def test_every_stage_event_the_state_machine_sends_is_one_the_builder_accepts(prod_stack: Synthesised) -> None:
    states = _states(prod_stack)["States"]
    # GIVEN the schedule's event, as EventBridge starts the machine with it
    scheduled = load_event("scheduled_build")
    # WHEN the machine fills each stage's payload from the state before it
    plan = StageEvent.validate_python(_resolve(states["Plan"]["Parameters"], scheduled))
    assert isinstance(plan, PlanStage) and plan.time == scheduled["time"]
    answer = PlanAnswer(build_id="20261128T100000Z", skip=False, shards=[0, 1]).model_dump()
    # THEN the Choice and the Map read fields the plan's answer has
    assert states["Published?"]["Choices"][0]["Variable"].removeprefix("$.") in answer
    shards = states["Shards"]
    items = answer[shards["ItemsPath"].removeprefix("$.")]
    shard_events = [
        StageEvent.validate_python(
            _resolve(
                shards["ItemProcessor"]["States"]["Shard"]["Parameters"],
                _resolve(shards["ItemSelector"], answer, item),
            )
        )
        for item in items
    ]
    assert shard_events == [ShardStage(stage="shard", build_id="20261128T100000Z", shard=s) for s in (0, 1)]
    # AND publish gets the plan's answer (the Map discards its own results)
    publish = StageEvent.validate_python(_resolve(states["Publish"]["Parameters"], answer))
    assert publish == PublishStage(stage="publish", build_id="20261128T100000Z")
    # AND export gets the publish's answer
    published = BuildAnswer(build_id="20261128T100000Z", evaluated_at="2026-11-28T10:00:00Z", sizes={}).model_dump()
    export = StageEvent.validate_python(_resolve(states["Export"]["Parameters"], published))
    assert export == ExportStage(stage="export", build_id="20261128T100000Z")


@pytest.mark.parametrize(
    "event",
    [
        {"stage": "shard", "build_id": "../../latest", "shard": 0},
        {"stage": "shard", "build_id": "20261128T100000Z", "shard": -1},
        {"stage": "publish"},
        {"stage": "export", "build_id": "../../exports"},
        {"stage": "unpublish", "build_id": "20261128T100000Z"},
    ],
    ids=["build-id-not-a-time", "negative-shard", "no-build-id", "export-build-id-not-a-time", "unknown-stage"],
)
def test_a_malformed_stage_event_is_refused_before_anything_is_read(event: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StageEvent.validate_python(event)
