"""Authorizer: checks a partner's `Authorization: Bearer <key>` for the lookup API.

No key or a malformed header -> 401 (raising "Unauthorized" is API Gateway's signal);
an unknown or revoked key -> a Deny policy, which API Gateway answers with 403. An
allowed key's policy covers the whole API, because API Gateway caches it per token.

An allowed key also names its API Gateway API key (`usageIdentifierKey`): the API takes
API keys from the authorizer, and the partner's key in the lookup usage plan is what
API Gateway throttles and counts against the plan's quota, one partner at a time."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.core.config import Settings
from functions.core.partners import bearer_key, key_hash, same_hash, usage_key
from functions.core.storage.partners import PartnerStore

settings = Settings.from_env(require=("partners_table",))
logger = Logger(service="authorizer")
partners = PartnerStore(settings.partners_table)


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__("Unauthorized")


def authorize(token: str | None, method_arn: str) -> dict[str, Any]:
    """The policy document for `token`; raises Unauthorized when there is no usable key."""
    event = APIGatewayAuthorizerTokenEvent({"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn})
    key = bearer_key(token)
    if key is None:
        raise Unauthorized()
    presented = key_hash(key)
    partner = partners.get(presented)
    arn = event.parsed_arn
    granted = partner is not None and partner.active and same_hash(partner.key_hash, presented)
    policy = APIGatewayAuthorizerResponse(
        principal_id=partner.name if granted and partner else "anonymous",
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"partner": partner.name} if granted and partner else None,
        usage_identifier_key=usage_key(presented) if granted else None,
        partition=arn.partition,
    )
    if granted:
        policy.allow_all_routes()
    else:
        logger.info("partner key refused", known=partner is not None)
        policy.deny_all_routes()
    return policy.asdict()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event.get("authorizationToken"), event["methodArn"])
