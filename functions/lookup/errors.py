"""The lookup API's errors: one JSON shape, `{"error": {"code", "message"}}`, whoever
answers. The lookup function answers 400, 404, 415 and 500 itself; API Gateway answers
401/403 (the authorizer), 429 (the usage plan) and its own 4xx/5xx through gateway
responses built from the same definitions (infra/lookup.py). Plain Python: infra imports it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApiError:
    status: int
    code: str
    message: str

    def body(self, message: str | None = None) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message if message is None else message}}

    def json(self) -> str:
        return json.dumps(self.body())


class Refused(Exception):
    """Raised by a route to answer with `error` (and `message` instead of its own)."""

    def __init__(self, error: ApiError, message: str | None = None) -> None:
        super().__init__(message or error.message)
        self.error = error
        self.message = message


INVALID_REQUEST = ApiError(400, "invalid_request", "The request is malformed")
UNAUTHORIZED = ApiError(401, "unauthorized", "Missing or malformed Authorization header")
FORBIDDEN = ApiError(403, "forbidden", "The partner key is unknown or revoked")
NOT_FOUND = ApiError(404, "not_found", "No such route")
NO_EXPORT = ApiError(404, "no_export", "This partner has no export yet")
UNSUPPORTED_MEDIA_TYPE = ApiError(415, "unsupported_media_type", "Send the body as application/json")
THROTTLED = ApiError(429, "throttled", "Too many requests from this partner; retry with backoff")
QUOTA_EXCEEDED = ApiError(429, "quota_exceeded", "This partner's daily request quota is used up")
INTERNAL_ERROR = ApiError(500, "internal_error", "The lookup failed; retry later")
