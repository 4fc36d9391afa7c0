"""The fallback queue: hits DynamoDB would not take even after retries, kept durably in
SQS until a replay (the replay function in AWS, `dmp replay` anywhere) writes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from functions.core.storage.aws import Adapter


class FallbackQueue(Adapter[Any]):
    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None) -> None:
        super().__init__(client)
        self.queue_url = queue_url

    def defer(self, items: Sequence[dict[str, Any]]) -> None:
        """One message per request: at most 50 events of <= 1 KB, far below SQS's 256 KB."""
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"items": list(items)}))

    def receive(self, wait_seconds: int = 1, max_messages: int = 10) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
        )
        return list(response.get("Messages", []))

    def delete(self, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)


def deferred_items(message_body: str) -> list[dict[str, Any]]:
    """The stored-form items of one fallback message."""
    return list(json.loads(message_body)["items"])
