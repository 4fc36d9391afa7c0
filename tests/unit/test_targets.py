"""Where `--stack NAME` finds a deployed stack's resources: its CloudFormation outputs."""

from __future__ import annotations

import json
from typing import Any

import boto3

from dmp.targets import stack_target

STACK = "Dmp-test"


def deploy(aws: Any, **extra_outputs: str) -> None:
    """A stack on moto with the outputs every DMP stack has, and `extra_outputs`."""
    outputs = {
        "EventsTableName": aws.events_table,
        "MembershipTableName": aws.membership_table,
        "PartnersTableName": aws.partners_table,
        "BucketName": aws.bucket,
        **extra_outputs,
    }
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def test_a_stack_target_names_the_catalog_table_of_the_stack_output(aws):
    # GIVEN a deployed stack with the CatalogTableName output
    deploy(aws, CatalogTableName="Dmp-test-CatalogTable-1")
    # WHEN the CLI reads the stack
    target = stack_target(STACK)
    # THEN the builder and lookup it runs locally are given that table
    assert target.catalog_table == "Dmp-test-CatalogTable-1"
    assert target.environment()["CATALOG_TABLE"] == "Dmp-test-CatalogTable-1"


def test_a_stack_deployed_before_the_catalog_table_is_still_a_target(aws):
    # GIVEN a stack without the CatalogTableName output (deployed before it existed)
    deploy(aws)
    # WHEN the CLI reads the stack
    target = stack_target(STACK)
    # THEN it is usable, with no catalog table (`dmp build` then writes no catalog item)
    assert (target.membership_table, target.catalog_table) == (aws.membership_table, "")
