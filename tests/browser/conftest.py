"""Fixtures of the browser tests: the local stack as `dmp serve` runs it, a web site on
127.0.0.1 that embeds the tag, and a headless Chromium from the system driven by Playwright.

Chromium is the distribution's package (`make browser-deps`); Playwright launches that
binary and never downloads one (no `playwright install`). A missing browser fails the
tests rather than skipping them, so CI cannot go green without having run them.

Playwright's sync API runs an asyncio loop of its own and leaves it marked as running in
this thread between its calls, so `asyncio.run()` (or an async test) would fail while it
is started. It is therefore started per test module and stopped at the module's end,
never for the whole session.
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
from playwright.sync_api import Browser, Page, sync_playwright

from tests.localstack import dmp_serve

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 30.0
ACTION_TIMEOUT = 15.0  # the longest one Playwright call (navigation, click, ...) may take
# The stack is told our IAB TCF vendor id, so consent can be granted or refused to it.
TCF_VENDOR_ID = 755
# A visitor's desktop Chromium: the headless one says "HeadlessChrome", a known crawler
# whose hits are (rightly) not stored.
VISITOR_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
CHROMIUM_ARGS = (
    "--disable-quic",
    # The tests talk to 127.0.0.1 only, whatever proxy the machine may configure.
    "--no-proxy-server",
    # On the command line, not per context (`user_agent=`): an override by DevTools does
    # not reach the beacons a page sends while it unloads.
    f"--user-agent={VISITOR_USER_AGENT}",
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
def stack(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Iterator[Stack]:
    """`dmp serve --port 0` in a fresh directory, knowing our TCF vendor id, and allowing
    the shop's origin (CORS) to read `/collect`'s answers, as a deployment's `cors_origins`."""
    cwd = tmp_path_factory.mktemp("dmp-serve")
    with dmp_serve(cwd, env={"TCF_VENDOR_ID": str(TCF_VENDOR_ID), "CORS_ORIGINS": site.origin}) as state:
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
def browser() -> Iterator[Browser]:
    """Headless Chromium of the system, for the module's tests."""
    binary = chromium_binary()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=binary, headless=True, args=list(CHROMIUM_ARGS), timeout=START_TIMEOUT * 1000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab in a fresh browser context (its own cookie jar), closed afterwards."""
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()
