"""Who may touch what: each function's role, resource by resource."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match

from tests.infra.synthesis import Synthesised, as_list, role_statements

pytestmark = pytest.mark.slow  # synthesises the CDK app

DYNAMODB_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
DYNAMODB_READS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
}
# Table metadata, which every CDK table grant includes.
DESCRIBE = {"dynamodb:DescribeTable"}
S3_WRITE_PREFIXES = ("s3:Put", "s3:Delete", "s3:Abort", "s3:Replicate", "s3:Restore")
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
OWN_LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
SQS_SEND = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def access(synthesised: Synthesised, function: lambda_.Function) -> dict[str, set[str]]:
    """The actions `function` may perform, by what they apply to: a table, the bucket, the
    builder's dead-letter queue, its own log group ("logs"), or "*"."""
    storage = synthesised.stack.storage
    owners = {
        synthesised.logical_id(storage.events_table): "events",
        synthesised.logical_id(storage.membership_table): "membership",
        synthesised.logical_id(storage.partners_table): "partners",
        synthesised.logical_id(storage.catalog_table): "catalog",
        synthesised.logical_id(storage.suppression_table): "suppression",
        synthesised.logical_id(storage.id_map_table): "id_map",
        synthesised.logical_id(storage.due_table): "due",
        synthesised.logical_id(storage.bucket): "bucket",
        synthesised.logical_id(synthesised.stack.builder.dead_letter_queue): "dead_letters",
        synthesised.logical_id(synthesised.stack.replay.queue): "fallback",
        synthesised.logical_id(function.log_group): "logs",
    }
    assert function.role is not None
    granted: dict[str, set[str]] = defaultdict(set)
    for statement in role_statements(synthesised, function.role):
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            named = [name for logical_id, name in owners.items() if logical_id in json.dumps(resource)]
            assert len(named) <= 1, resource
            owner = named[0] if named else ("*" if resource == "*" else json.dumps(resource))
            granted[owner] |= set(as_list(statement["Action"]))
    return dict(granted)


def s3_writes(actions: set[str]) -> set[str]:
    return {action for action in actions if action.startswith(S3_WRITE_PREFIXES) or action == "s3:*"}


def test_ingest_may_only_write_events_defer_them_and_suppress_a_visitor(prod_stack: Synthesised) -> None:
    granted = access(prod_stack, prod_stack.stack.ingest.function)
    assert set(granted) == {"events", "fallback", "suppression", "membership", "id_map", "partners", "logs", "*"}
    # hits are put (one, or a batch from /collect); the one delete is a sync's conditional
    # delete of the mapping another visitor had to the same partner id; never an update
    assert granted["events"] == {"dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}
    # a visitor who says no: its suppression record (an update that keeps earlier removal
    # notices) and a membership tombstone (a put); a returning visitor's hit reads its
    # suppression record first
    assert granted["suppression"] == {"dynamodb:UpdateItem", "dynamodb:GetItem"}
    assert granted["membership"] == {"dynamodb:PutItem"}
    # ID sync: the partner's side of a mapping, and the partner's registration
    assert granted["id_map"] == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert granted["partners"] == {"dynamodb:GetItem"}
    assert "sqs:SendMessage" in granted["fallback"]
    assert granted["fallback"] <= SQS_SEND
    assert granted["logs"] == OWN_LOGS
    assert granted["*"] == XRAY


def test_replay_consumes_the_fallback_queue_and_only_writes_events(prod_stack: Synthesised) -> None:
    granted = access(prod_stack, prod_stack.stack.replay.function)
    assert set(granted) == {"events", "fallback", "suppression", "logs", "*"}
    assert granted["suppression"] == {"dynamodb:BatchGetItem"}
    # a deferred hit is put under the key it already carries: no update, no delete
    assert granted["events"] == {"dynamodb:PutItem"}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= granted["fallback"]
    assert not {a for a in granted["fallback"] if a.startswith("sqs:Send")}
    assert granted["logs"] == OWN_LOGS
    assert granted["*"] == XRAY


def test_builder_reads_events_and_maintains_membership_catalog_and_builds(prod_stack: Synthesised) -> None:
    granted = access(prod_stack, prod_stack.stack.builder.function)
    assert set(granted) == {"events", "membership", "catalog", "suppression", "id_map", "due", "bucket", "logs", "*"}
    # an erasure deletes the partners' side of the visitor's mappings, and only that
    assert granted["id_map"] == {"dynamodb:DeleteItem"}
    # publish files the visitors whose membership changes before the next build: puts only
    assert granted["due"] == {"dynamodb:BatchWriteItem"}
    assert "dynamodb:Scan" in granted["events"]
    # reads, and deletes (BatchWriteItem) of a suppressed visitor's events; never updates
    assert granted["events"] <= DYNAMODB_READS | DESCRIBE | {"dynamodb:BatchWriteItem"}
    assert {"dynamodb:Scan", "dynamodb:UpdateItem"} <= granted["suppression"]
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"} <= granted["membership"]
    assert {"dynamodb:GetItem", "dynamodb:PutItem"} <= granted["catalog"]
    assert {"s3:GetObject*", "s3:PutObject"} <= granted["bucket"]
    assert granted["*"] == XRAY


def test_only_the_build_state_machine_invokes_the_builder(prod_stack: Synthesised) -> None:
    builder = prod_stack.stack.builder
    assert builder.state_machine.role is not None
    statements = role_statements(prod_stack, builder.state_machine.role)
    invokes = [s for s in statements if "lambda:InvokeFunction" in as_list(s["Action"])]
    (invoke,) = invokes
    resources = json.dumps(as_list(invoke["Resource"]))
    assert prod_stack.logical_id(builder.function) in resources
    for other in (prod_stack.stack.ingest.function, prod_stack.stack.lookup.function):
        assert prod_stack.logical_id(other) not in resources


def test_lookup_may_only_read_membership_the_catalog_and_the_bucket(prod_stack: Synthesised) -> None:
    granted = access(prod_stack, prod_stack.stack.lookup.function)
    assert set(granted) == {"membership", "catalog", "id_map", "bucket", "logs", "*"}
    assert "dynamodb:GetItem" in granted["membership"]
    # a partner's own id resolved through the partner's side of the map, read-only
    assert granted["id_map"] == {"dynamodb:GetItem", "dynamodb:BatchGetItem"}
    assert granted["membership"] <= DYNAMODB_READS | DESCRIBE
    # The catalog item is the builder's to write: the lookup only reads it.
    assert "dynamodb:GetItem" in granted["catalog"]
    assert granted["catalog"] <= DYNAMODB_READS | DESCRIBE
    assert not granted["catalog"] & DYNAMODB_WRITES
    # the published documents and the partners' exports alone (below); listing only so a
    # missing one is a 404
    assert granted["bucket"] == {"s3:GetObject", "s3:ListBucket"}
    assert granted["*"] == XRAY


def test_lookup_reads_only_the_pointers_manifests_and_exports_of_the_bucket(prod_stack: Synthesised) -> None:
    lookup = prod_stack.stack.lookup.function
    assert lookup.role is not None
    bucket_arn = prod_stack.arn(prod_stack.stack.storage.bucket)

    def objects(pattern: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [bucket_arn, f"/{pattern}"]]}

    for statement in (
        # (IAM policy minimisation sorts the resources)
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [objects("builds/*/manifest.json"), objects("exports/*"), objects("latest.json")],
        },
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
    ):
        prod_stack.template.has_resource_properties(
            "AWS::IAM::Policy",
            {"Roles": [prod_stack.ref(lookup.role)], "PolicyDocument": {"Statement": Match.array_with([statement])}},
        )
    # Nothing else of the bucket: not the part files, members, audit records or definitions.
    s3_statements = [s for s in role_statements(prod_stack, lookup.role) if "s3:" in json.dumps(s["Action"])]
    assert len(s3_statements) == 2


def test_ingest_reads_only_the_partners_profile_items(prod_stack: Synthesised) -> None:
    ingest = prod_stack.stack.ingest.function
    assert ingest.role is not None
    partners = prod_stack.logical_id(prod_stack.stack.storage.partners_table)
    (statement,) = [s for s in role_statements(prod_stack, ingest.role) if partners in json.dumps(s["Resource"])]
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["profile:*"]}}


def test_authorizer_may_only_read_partners(prod_stack: Synthesised) -> None:
    granted = access(prod_stack, prod_stack.stack.lookup.authorizer_function)
    assert set(granted) == {"partners", "logs", "*"}
    assert "dynamodb:GetItem" in granted["partners"]
    assert granted["partners"] <= DYNAMODB_READS | DESCRIBE
    assert granted["*"] == XRAY


@pytest.mark.parametrize("name", ["ingest", "builder", "lookup", "authorizer"])
def test_function_roles_have_no_managed_or_inline_policies(prod_stack: Synthesised, name: str) -> None:
    stack = prod_stack.stack
    function = {
        "ingest": stack.ingest.function,
        "builder": stack.builder.function,
        "lookup": stack.lookup.function,
        "authorizer": stack.lookup.authorizer_function,
    }[name]
    assert function.role is not None
    role = prod_stack.properties(function.role)
    assert "ManagedPolicyArns" not in role
    assert "Policies" not in role
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
