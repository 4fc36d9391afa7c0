"""The local API gateway: turns HTTP requests into the API Gateway events the Lambda
handlers receive in AWS (HTTP API payload 2.0 for ingest, REST API proxy events with a
TOKEN authorizer for lookup) and their answers back into HTTP.

Local only. With `simulate_time`, a request may carry `X-Dmp-Simulated-Time` (epoch ms)
to stand in for API Gateway's receive time, so `dmp demo` can replay weeks of traffic.
"""

from __future__ import annotations

import base64
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dmp.lambda_context import LocalContext
from functions.lookup import routes
from functions.lookup.errors import FORBIDDEN, UNAUTHORIZED

INGEST_ROUTES = {
    ("GET", "/p.gif"),
    ("POST", "/collect"),
    ("OPTIONS", "/collect"),
    ("GET", "/tag.js"),
    ("GET", "/optout"),
    ("GET", "/sync"),
}
SIMULATED_TIME_HEADER = "x-dmp-simulated-time"
MAX_BODY = 1024 * 1024  # API Gateway's own limits are larger; the handlers enforce theirs


INGEST_PATHS = frozenset(path for _method, path in INGEST_ROUTES)
JSON = [("Content-Type", "application/json")]


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _gateway_message(message: str) -> bytes:
    """API Gateway's own error body, for requests it answers without a function."""
    return json.dumps({"message": message}).encode()


class Handlers:
    """The Lambda handler modules, imported after the environment points at the stack."""

    def __init__(self) -> None:
        self.ingest = self._load("functions.ingest.handler")
        self.lookup = self._load("functions.lookup.handler")
        self.authorizer = self._load("functions.authorizer.handler")

    @staticmethod
    def _load(name: str) -> ModuleType:
        module = importlib.import_module(name)
        # Re-run module set-up so settings and clients follow the current environment.
        return importlib.reload(module)


class Gateway:
    def __init__(self, handlers: Handlers, *, simulate_time: bool = False, stage: str = "local") -> None:
        self.handlers = handlers
        self.simulate_time = simulate_time
        self.stage = stage
        self.authorizer_cache: dict[str, tuple[float, dict[str, Any]]] = {}

    # -- events -----------------------------------------------------------------
    def _received_ms(self, headers: dict[str, str]) -> int:
        simulated = headers.pop(SIMULATED_TIME_HEADER, None)
        if self.simulate_time and simulated and simulated.isdigit():
            return int(simulated)
        return int(time.time() * 1000)

    def http_api_event(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> dict[str, Any]:
        received_ms = self._received_ms(headers)
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        return {
            "version": "2.0",
            "routeKey": f"{method} {path}",
            "rawPath": path,
            "rawQueryString": query,
            "cookies": cookies or None,
            "headers": headers,
            "queryStringParameters": {k: ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()}
            or None,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "domainName": headers.get("host", "localhost"),
                "domainPrefix": "local",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": f"{method} {path}",
                "stage": "$default",
                "time": datetime.fromtimestamp(received_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": received_ms,
            },
            "body": base64.b64encode(body).decode() if body else None,
            "isBase64Encoded": bool(body),
        }

    def rest_api_event(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        source_ip: str,
        authorizer: dict[str, Any] | None,
    ) -> dict[str, Any]:
        resource, path_parameters = routes.resource_of(path)
        parsed = parse_qs(query, keep_blank_values=True)
        now_ms = int(time.time() * 1000)
        return {
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in parsed.items()} or None,
            "multiValueQueryStringParameters": parsed or None,
            "pathParameters": path_parameters,
            "stageVariables": None,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "authorizer": authorizer,
                "httpMethod": method,
                "identity": {"sourceIp": source_ip, "userAgent": headers.get("user-agent", "")},
                "path": f"/{self.stage}{path}",
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": now_ms,
                "resourceId": "local",
                "resourcePath": resource,
                "stage": self.stage,
            },
            "body": body.decode("utf-8", errors="replace") if body else None,
            "isBase64Encoded": False,
        }

    # -- the authorizer, as API Gateway runs it -----------------------------------
    def authorize(self, authorization: str | None, method: str, path: str) -> tuple[int, dict[str, Any] | None]:
        """(status, authorizer context): 401 without a usable key, 403 when denied."""
        if not authorization:
            return 401, None
        method_arn = f"arn:aws:execute-api:us-east-1:000000000000:local/{self.stage}/{method}{path}"
        try:
            policy = self.handlers.authorizer.handler(
                {"type": "TOKEN", "authorizationToken": authorization, "methodArn": method_arn},
                LocalContext("authorizer"),
            )
        except Exception as error:
            if str(error) == "Unauthorized":
                return 401, None
            raise
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not any(s.get("Effect") == "Allow" for s in statements):
            return 403, None
        return 200, {"principalId": policy.get("principalId"), **(policy.get("context") or {})}

    # -- dispatch ---------------------------------------------------------------
    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        split = urlsplit(target)
        path, query = split.path, split.query
        if (method, path) in INGEST_ROUTES:
            event = self.http_api_event(method, path, query, headers, body, source_ip)
            return self._answer(self._invoke(self.handlers.ingest, event, "ingest"))
        if path in INGEST_PATHS:
            # An HTTP API answers a method its route does not have as it answers no route.
            return 404, JSON, _gateway_message("Not Found")
        if path.startswith(routes.PREFIX):
            authorizer: dict[str, Any] | None = None
            if path not in routes.PUBLIC:
                status, authorizer = self.authorize(headers.get("authorization"), method, path)
                if status in (401, 403):
                    # The same bodies API Gateway's gateway responses give in AWS.
                    error = UNAUTHORIZED if status == 401 else FORBIDDEN
                    return status, [("Content-Type", "application/json")], error.json().encode()
            event = self.rest_api_event(method, path, query, headers, body, source_ip, authorizer)
            return self._answer(self._invoke(self.handlers.lookup, event, "lookup"))
        return 404, [("Content-Type", "application/json")], _error_body("not_found", f"no route {method} {path}")

    @staticmethod
    def _invoke(module: ModuleType, event: dict[str, Any], name: str) -> dict[str, Any]:
        try:
            return module.handler(event, LocalContext(name))  # type: ignore[no-any-return]
        finally:
            # Locally metrics go nowhere; Powertools keeps disabled metrics in memory
            # until it flushes them, so drop them after each invocation.
            metrics = getattr(module, "metrics", None)
            if metrics is not None:
                metrics.clear_metrics()

    @staticmethod
    def _answer(response: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        headers: list[tuple[str, str]] = list((response.get("headers") or {}).items())
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers.extend((name, v) for v in values if (name, v) not in headers)
        headers.extend(("Set-Cookie", c) for c in response.get("cookies") or [])
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        return int(response.get("statusCode", 200)), headers, body


def make_request_handler(gateway: Gateway, log: Callable[[str], None] | None = None) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "dmp-local"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, [("Content-Type", "application/json")], _error_body("payload_too_large", "too large"))
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers and key != "cookie" else value
            try:
                status, response_headers, payload = gateway.dispatch(
                    self.command, self.path, headers, body, self.client_address[0]
                )
            except Exception as error:  # an integration failure is a 502 in API Gateway too
                status, response_headers, payload = (
                    502,
                    [("Content-Type", "application/json")],
                    _error_body("bad_gateway", f"{type(error).__name__}: {error}"),
                )
            self._send(status, response_headers, payload)

        def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def __getattr__(self, name: str) -> Any:
            # Every method reaches the gateway (TRACE, PATCH, made-up ones), which answers
            # it as API Gateway would, never with the HTTP server's own 501 page.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The server's own refusals (a malformed request line, an over-long header),
            in JSON as API Gateway gives them, not as an HTML page."""
            self.close_connection = True
            if self.request_version == "HTTP/0.9":  # no version read yet: answer as HTTP/1.1
                self.request_version = self.protocol_version
            self._send(code, JSON, _gateway_message(message or self.responses.get(code, ("Error",))[0]))

        def log_message(self, format: str, *args: Any) -> None:
            if log is not None:
                log(format % args)

    return RequestHandler


class GatewayServer:
    def __init__(self, gateway: Gateway, host: str, port: int, log: Callable[[str], None] | None = None) -> None:
        self.server = ThreadingHTTPServer((host, port), make_request_handler(gateway, log))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
