"""Which stack a CLI command works on: `--local` (the stack of `dmp serve`, found through
`./.dmp/local.json`) or `--stack NAME` (a deployed stack, found through its outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dmp.local import STATE_FILE, StackTarget


class TargetError(RuntimeError):
    pass


def local_target(state_file: Path = STATE_FILE) -> StackTarget:
    if not state_file.exists():
        raise TargetError(f"{state_file} not found: start the local stack with `dmp serve` in this directory")
    state = json.loads(state_file.read_text())
    return StackTarget(
        region=state["region"],
        events_table=state["events_table"],
        membership_table=state["membership_table"],
        partners_table=state["partners_table"],
        catalog_table=state.get("catalog_table", ""),
        suppression_table=state.get("suppression_table", ""),
        id_map_table=state.get("id_map_table", ""),
        bucket=state["bucket"],
        fallback_queue_url=state.get("fallback_queue_url", ""),
        aws_endpoint_url=state["aws_endpoint_url"],
        gateway_url=state["gateway_url"],
        lookup_url=state["gateway_url"],
        retention_days=int(state.get("retention_days", 90)),
    )


def stack_target(name: str) -> StackTarget:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except (BotoCoreError, ClientError) as error:
        raise TargetError(f"cannot read stack {name!r}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    try:
        return StackTarget(
            region=outputs.get("Region") or boto3.session.Session().region_name or "us-east-1",
            events_table=outputs["EventsTableName"],
            membership_table=outputs["MembershipTableName"],
            partners_table=outputs["PartnersTableName"],
            catalog_table=outputs.get("CatalogTableName", ""),
            suppression_table=outputs.get("SuppressionTableName", ""),
            id_map_table=outputs.get("IdMapTableName", ""),
            bucket=outputs["BucketName"],
            fallback_queue_url=outputs.get("FallbackQueueUrl", ""),
            gateway_url=outputs.get("IngestUrl"),
            lookup_url=outputs.get("LookupUrl"),
            lookup_usage_plan_id=outputs.get("LookupUsagePlanId", ""),
            retention_days=int(outputs.get("RetentionDays", 90)),
        )
    except KeyError as missing:
        raise TargetError(f"stack {name!r} has no output {missing}; is it a DMP stack?") from None


def resolve(local: bool, stack: str | None) -> StackTarget:
    """The chosen target, with this process's AWS environment pointed at it."""
    if local and stack:
        raise TargetError("choose one of --local and --stack NAME")
    if stack:
        return stack_target(stack)
    if not local and not STATE_FILE.exists():
        raise TargetError("choose a stack: --local (after `dmp serve`) or --stack NAME")
    target = local_target()
    os.environ.update(target.environment())
    return target
