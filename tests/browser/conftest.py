"""Fixtures of the browser tests: the local stack as `dmp serve` runs it, a web site on
127.0.0.1 that embeds the tag, and a headless Chromium from the system.

Chromium is the distribution's package (`make browser-deps`); nothing is downloaded at
test time. A missing browser fails the tests rather than skipping them, so CI cannot go
green without having run them.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from tests.browser.cdp import Browser, launch_chromium, stop_process
from tests.localstack import dmp_serve

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 30.0
# The stack is told our IAB TCF vendor id, so consent can be granted or refused to it.
TCF_VENDOR_ID = 755
# A visitor's desktop Chromium: the headless one says "HeadlessChrome", a known crawler
# whose hits are (rightly) not stored.
VISITOR_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def chromium_binary() -> str:
    """$CHROMIUM if set, else Debian's chromium; fails (not skips) when there is none."""
    chosen = os.environ.get("CHROMIUM")
    for candidate in [chosen] if chosen else [CHROMIUM, shutil.which("chromium")]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"Chromium is not installed ({chosen or CHROMIUM} not found): run `make browser-deps` "
        "(Debian's chromium package), or set $CHROMIUM to a Chromium binary",
        pytrace=False,
    )


@dataclass(frozen=True)
class Stack:
    """A running `dmp serve`: its gateway and the events table behind it."""

    gateway_url: str
    events_table: str
    tcf_vendor_id: int
    dynamodb: Any

    def stored_events(self, url_prefix: str) -> list[dict[str, Any]]:
        """Every stored event whose page URL starts with `url_prefix`."""
        items: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.events_table):
            items.extend(i for i in page["Items"] if i.get("url", {}).get("S", "").startswith(url_prefix))
        return items


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`dmp serve --port 0` in a fresh directory, knowing our TCF vendor id."""
    cwd = tmp_path_factory.mktemp("dmp-serve")
    with dmp_serve(cwd, env={"TCF_VENDOR_ID": str(TCF_VENDOR_ID)}) as state:
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=state["aws_endpoint_url"],
            region_name=state["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        yield Stack(state["gateway_url"], state["events_table"], TCF_VENDOR_ID, dynamodb)


@dataclass
class Site:
    """A first-party web site on 127.0.0.1: HTML pages by path."""

    origin: str
    pages: dict[str, str] = field(default_factory=dict)

    def publish(self, path: str, html: str) -> str:
        self.pages[path] = html
        return self.origin + path


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    pages: dict[str, str] = {}

    class PageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            html = pages.get(self.path.split("?", 1)[0])
            body = (html or "not found").encode()
            self.send_response(200 if html is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", pages)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = chromium_binary()
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / f"{profile.name}.log"
    process, browser = launch_chromium(binary, profile, log, user_agent=VISITOR_USER_AGENT, timeout=START_TIMEOUT)
    try:
        yield browser
    finally:
        browser.close()
        stop_process(process)
