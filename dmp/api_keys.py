"""API Gateway API keys of partner keys, on a deployed stack: one per partner key, in
the lookup usage plan, so API Gateway throttles and counts each partner on its own (the
authorizer names the key, see functions/core/partners.usage_key). A local stack has none:
there partner keys live only in the partners table."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class PartnerApiKeys:
    """The API keys of one stack's lookup usage plan."""

    def __init__(self, usage_plan_id: str, client: Any = None) -> None:
        import boto3

        self.usage_plan_id = usage_plan_id
        self.client = client or boto3.client("apigateway")

    def create(self, partner: str, key_hash: str) -> str:
        """The id of a new enabled API key for the partner key, in the usage plan."""
        from functions.core.partners import usage_key

        key_id: str = self.client.create_api_key(
            name=f"{partner}-{key_hash[:12]}",
            description=f"DMP partner {partner}: usage plan key of one partner key",
            enabled=True,
            value=usage_key(key_hash),
            tags={"dmp:partner": partner},
        )["id"]
        try:
            self.client.create_usage_plan_key(usagePlanId=self.usage_plan_id, keyId=key_id, keyType="API_KEY")
        except Exception:
            self.delete(key_id)
            raise
        return key_id

    def delete(self, key_id: str) -> None:
        self.client.delete_api_key(apiKey=key_id)

    def disable(self, key_hashes: Collection[str]) -> int:
        """Disable the API keys of these partner keys; returns how many were enabled."""
        from functions.core.partners import usage_key

        values = {usage_key(h) for h in key_hashes}
        disabled = 0
        for page in self.client.get_paginator("get_api_keys").paginate(includeValues=True):
            for api_key in page.get("items", []):
                if api_key.get("value") in values and api_key.get("enabled"):
                    self.client.update_api_key(
                        apiKey=api_key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
                    )
                    disabled += 1
        return disabled
