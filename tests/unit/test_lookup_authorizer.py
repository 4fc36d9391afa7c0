"""The authorizer names the partner key's API key, so API Gateway throttles per partner."""

from __future__ import annotations

from typing import Any

import pytest

from functions.core.partners import key_hash, new_key, usage_key
from functions.core.storage.partners import PartnerStore
from tests.conftest import load_event


def authorize(load_handler: Any, lambda_context: Any, key: str) -> dict[str, Any]:
    event = load_event("authorizer_token")
    event["authorizationToken"] = f"Bearer {key}"
    result: dict[str, Any] = load_handler("authorizer").handler(event, lambda_context)
    return result


def test_an_allowed_key_names_its_api_key_for_the_usage_plan(load_handler, aws, lambda_context):
    # GIVEN a partner key stored as its hash
    key = new_key()
    PartnerStore(aws.partners_table).add(key_hash(key), "demo-dsp", "2026-11-28T09:00:00+00:00")
    # WHEN the partner calls with it
    policy = authorize(load_handler, lambda_context, key)
    # THEN the policy allows it and names the API key `dmp partners add --stack` created
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["usageIdentifierKey"] == usage_key(key_hash(key))
    assert key not in str(policy)


@pytest.mark.parametrize("revoked", [False, True], ids=["unknown", "revoked"])
def test_a_refused_key_names_no_api_key(load_handler, aws, lambda_context, revoked):
    key = new_key()
    partners = PartnerStore(aws.partners_table)
    partners.add(key_hash(key), "demo-dsp", "2026-11-28T09:00:00+00:00")
    if revoked:
        partners.revoke_keys("demo-dsp", "2026-11-28T10:00:00+00:00")
    policy = authorize(load_handler, lambda_context, key if revoked else new_key())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "usageIdentifierKey" not in policy


def test_two_keys_of_one_partner_are_throttled_apart():
    # Each key has its own API key; a partner's second key has its own limits.
    first, second = new_key(), new_key()
    assert usage_key(key_hash(first)) != usage_key(key_hash(second))
    # API Gateway wants API key values of at least 20 characters.
    assert len(usage_key(key_hash(first))) >= 20
