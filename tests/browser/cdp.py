"""A small Chrome DevTools Protocol client for the browser tests: a headless Chromium
launched from the system's binary, one websocket to it (stdlib only, RFC 6455 client
side), and pages in isolated browser contexts so each test starts with no cookies.

Only what the tests need: commands with their answers, waiting for an event, and a few
page helpers. Everything blocks with a bounded timeout; nothing is installed or fetched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 15.0
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # The tests talk to 127.0.0.1 only, whatever proxy the machine may configure.
    "--no-proxy-server",
    "--remote-debugging-port=0",
)


class CDPError(RuntimeError):
    """A command answered with an error, or the browser went away."""


class WebSocket:
    """A blocking websocket client: text messages in and out, pings answered."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            (
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buffer:
            self._fill(deadline)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        expected = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        if " 101 " not in f"{status_line} " or headers.get("sec-websocket-accept") != expected:
            raise CDPError(f"websocket handshake with {url} failed: {status_line}")

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message from the browser in time")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no message from the browser in time") from None
        if not chunk:
            raise CDPError("the browser closed the DevTools connection")
        self._buffer += chunk

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        # A client masks every frame (RFC 6455 section 5.3).
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([0x80 | size])
        elif size < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", size)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(_TEXT, text.encode())

    def receive(self, deadline: float) -> str:
        """The next whole text message, answering pings on the way."""
        message = b""
        while True:
            first, second = self._read(2, deadline)
            fin, opcode = first & 0x80, first & 0x0F
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read(2, deadline))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read(8, deadline))
            mask = self._read(4, deadline) if second & 0x80 else b""
            payload = self._read(size, deadline)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == _PING:
                self._send_frame(_PONG, payload)
            elif opcode == _CLOSE:
                raise CDPError("the browser closed the DevTools connection")
            elif opcode in (_TEXT, _BINARY, _CONTINUATION):
                message += payload
                if fin:
                    return message.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(_CLOSE, struct.pack("!H", 1000))
        self._sock.close()


class Browser:
    """The browser-level DevTools connection; pages are flattened sessions on it."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            answer = json.loads(self._ws.receive(deadline))
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self._events.append(answer)

    def wait_for_event(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        session_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """The params of the first (buffered or coming) event `method` of the session that
        satisfies `predicate`; that one is consumed, the others stay buffered."""

        def matches(event: dict[str, Any]) -> bool:
            return event["method"] == method and event.get("sessionId") == session_id and predicate(event["params"])

        for index, event in enumerate(self._events):
            if matches(event):
                return self._events.pop(index)["params"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = json.loads(self._ws.receive(deadline))
            except TimeoutError:
                raise TimeoutError(f"no {method} event within {timeout} s") from None
            if "method" not in event:
                continue
            if matches(event):
                return event["params"]
            self._events.append(event)

    def forget(self, method: str, *, session_id: str | None = None) -> None:
        """Drop the buffered events `method` of the session."""
        self._events = [e for e in self._events if not (e["method"] == method and e.get("sessionId") == session_id)]

    def events(self, method: str, *, session_id: str | None = None) -> list[dict[str, Any]]:
        """The params of buffered events `method` seen so far (not consumed)."""
        return [e["params"] for e in self._events if e["method"] == method and e.get("sessionId") == session_id]

    def drain(self, seconds: float) -> None:
        """Read and buffer whatever events arrive for `seconds`."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while True:
                event = json.loads(self._ws.receive(deadline))
                if "method" in event:
                    self._events.append(event)

    @contextlib.contextmanager
    def new_page(self) -> Iterator[Page]:
        """A tab in a fresh browser context (its own cookie jar), closed afterwards."""
        context_id = self.send("Target.createBrowserContext")["browserContextId"]
        try:
            target_id = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": context_id})[
                "targetId"
            ]
            session_id = self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
            page = Page(self, session_id, context_id)
            page.send("Page.enable")
            page.send("Runtime.enable")
            yield page
        finally:
            with contextlib.suppress(CDPError, TimeoutError):
                self.send("Target.disposeBrowserContext", {"browserContextId": context_id})

    def close(self) -> None:
        with contextlib.suppress(CDPError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        self._ws.close()


class Page:
    def __init__(self, browser: Browser, session_id: str, context_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.context_id = context_id

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def wait_for_event(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        return self.browser.wait_for_event(method, predicate, session_id=self.session_id, timeout=timeout)

    def events(self, method: str) -> list[dict[str, Any]]:
        return self.browser.events(method, session_id=self.session_id)

    def navigate(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Load `url` and wait for its load event (scripts run, page view queued)."""
        self.browser.forget("Page.loadEventFired", session_id=self.session_id)
        answer = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if answer.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {answer['errorText']}")
        self.wait_for_event("Page.loadEventFired", timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the page; a thrown exception is a CDPError."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in answer:
            raise CDPError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def click(self, selector: str) -> None:
        """A real left click (pointer events, not element.click()) at the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"], "y": box["y"]})
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    def cookies(self) -> dict[str, dict[str, Any]]:
        """The cookies this page's browser context holds, by name."""
        answer = self.browser.send("Storage.getCookies", {"browserContextId": self.context_id})
        return {cookie["name"]: cookie for cookie in answer["cookies"]}


def launch_chromium(
    binary: str, user_data_dir: Path, log: Path, *, user_agent: str, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], Browser]:
    """Start headless Chromium and connect to it through the DevToolsActivePort file it
    writes into its profile directory (the port it picked for --remote-debugging-port=0).

    `user_agent` is set on the command line, not per page through CDP: an override by
    CDP does not reach the beacons a page sends while it unloads."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-agent={user_agent}", f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    active_port = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while True:
        lines = active_port.read_text().splitlines() if active_port.exists() else []
        if len(lines) >= 2:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise CDPError(f"Chromium did not open its DevTools port; its output:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    port, path = lines[0].strip(), lines[1].strip()
    return process, Browser(WebSocket(f"ws://127.0.0.1:{port}{path}", timeout=timeout))


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End a process started here in its own session, and what it left in that session,
    by its id (the session's process group has the same id)."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal_number)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
