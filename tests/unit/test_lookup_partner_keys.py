"""`dmp partners` on a deployed stack gives each partner key an API key in the lookup
usage plan and disables it on revoke; on the local stack keys live only in the table.
The deployed stack is moto's: CloudFormation outputs, API Gateway and DynamoDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from dmp.api_keys import PartnerApiKeys
from dmp.cli import main
from functions.core.partners import key_hash
from functions.core.storage.partners import PartnerStore

STACK = "Dmp-test"


def deploy(aws: Any, **outputs: str) -> str:
    """A stack whose outputs name the moto resources; returns the usage plan id."""
    apigateway = boto3.client("apigateway")
    api_id = apigateway.create_rest_api(name=f"{STACK}-lookup")["id"]
    plan_id: str = apigateway.create_usage_plan(
        name="partners", throttle={"rateLimit": 100.0, "burstLimit": 200}, quota={"limit": 5, "period": "DAY"}
    )["id"]
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            name: {"Value": value}
            for name, value in {
                "EventsTableName": aws.events_table,
                "MembershipTableName": aws.membership_table,
                "PartnersTableName": aws.partners_table,
                "BucketName": aws.bucket,
                "LookupUrl": f"https://{api_id}.execute-api.eu-west-1.amazonaws.com/prod",
                "LookupUsagePlanId": plan_id,
                **outputs,
            }.items()
            if value
        },
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return plan_id


def api_keys() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.client("apigateway").get_api_keys(includeValues=True)["items"]
    return items


def add(capsys: pytest.CaptureFixture[str], name: str, *target: str) -> str:
    assert main(["partners", "add", name, *target]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_a_new_partner_key_gets_an_enabled_api_key_in_the_usage_plan(aws, capsys):
    # GIVEN a deployed stack
    plan_id = deploy(aws)
    # WHEN a partner is added to it
    key = add(capsys, "demo-dsp", "--stack", STACK)
    # THEN its API key's value is the one the authorizer names, enabled and in the plan
    (api_key,) = api_keys()
    assert api_key["value"] == key_hash(key)
    assert api_key["enabled"] is True
    assert api_key["name"].startswith("demo-dsp-")
    plan_keys = boto3.client("apigateway").get_usage_plan_keys(usagePlanId=plan_id)["items"]
    assert [k["id"] for k in plan_keys] == [api_key["id"]]
    # AND the partner key itself is stored as its hash only
    assert [p.name for p in PartnerStore(aws.partners_table).list()] == ["demo-dsp"]


def test_revoking_a_partner_disables_its_api_keys_only(aws, capsys):
    deploy(aws)
    old, new = add(capsys, "demo-dsp", "--stack", STACK), add(capsys, "demo-dsp", "--stack", STACK)
    other = add(capsys, "other-ssp", "--stack", STACK)

    assert main(["partners", "revoke", "demo-dsp", "--stack", STACK]) == 0

    assert "disabled 2 API key(s)" in capsys.readouterr().out
    enabled = {k["value"]: k["enabled"] for k in api_keys()}
    assert enabled == {key_hash(old): False, key_hash(new): False, key_hash(other): True}
    assert PartnerStore(aws.partners_table).active_names() == {"other-ssp"}


def test_a_partner_key_the_table_refuses_leaves_no_api_key_behind(aws, capsys):
    deploy(aws, PartnersTableName="no-such-table")
    with pytest.raises(Exception, match=r"ResourceNotFound|non-existent table"):
        main(["partners", "add", "demo-dsp", "--stack", STACK])
    assert api_keys() == []


def test_an_api_key_the_usage_plan_refuses_is_deleted_again():
    # moto accepts any plan id, so API Gateway's refusal comes from botocore's Stubber.
    client = botocore.session.get_session().create_client("apigateway", region_name="eu-west-1")
    hashed = key_hash("dmp_example")
    with Stubber(client) as stub:
        stub.add_response(
            "create_api_key",
            {"id": "key123", "enabled": True},
            {
                "name": f"demo-dsp-{hashed[:12]}",
                "description": ANY,
                "enabled": True,
                "value": hashed,
                "tags": {"dmp:partner": "demo-dsp"},
            },
        )
        stub.add_client_error(
            "create_usage_plan_key",
            "NotFoundException",
            "Invalid Usage Plan ID specified",
            404,
            expected_params={"usagePlanId": "gone", "keyId": "key123", "keyType": "API_KEY"},
        )
        stub.add_response("delete_api_key", {}, {"apiKey": "key123"})
        with pytest.raises(ClientError, match="Invalid Usage Plan"):
            PartnerApiKeys("gone", client).create("demo-dsp", hashed)
        stub.assert_no_pending_responses()


def test_a_stack_without_the_usage_plan_output_is_named_as_too_old(aws, capsys):
    deploy(aws, LookupUsagePlanId="")
    assert main(["partners", "add", "demo-dsp", "--stack", STACK]) == 2
    assert "LookupUsagePlanId" in capsys.readouterr().err
    assert PartnerStore(aws.partners_table).list() == []


def test_local_partner_keys_live_only_in_the_partners_table(aws, capsys, monkeypatch, tmp_path: Path):
    # GIVEN the local stack's state file (`dmp serve`), on the same emulated account
    monkeypatch.chdir(tmp_path)
    state = {
        "region": aws.region,
        "events_table": aws.events_table,
        "membership_table": aws.membership_table,
        "partners_table": aws.partners_table,
        "bucket": aws.bucket,
        "aws_endpoint_url": None,
        "gateway_url": "http://127.0.0.1:8080",
    }
    (tmp_path / ".dmp").mkdir()
    (tmp_path / ".dmp" / "local.json").write_text(json.dumps(state))
    # WHEN a partner is added and revoked there
    key = add(capsys, "demo-dsp", "--local")
    assert main(["partners", "revoke", "demo-dsp", "--local"]) == 0
    # THEN the table has the key and API Gateway was never asked
    assert [p.key_hash for p in PartnerStore(aws.partners_table).list()] == [key_hash(key)]
    assert api_keys() == []
