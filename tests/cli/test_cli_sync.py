"""ID sync from an operator's shell: `dmp partners add --sync-url`, `partners update`,
`partners list`, then `/sync` through the gateway of `dmp serve`, `dmp visitor show` and
`dmp erase` on the mappings it stored."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow
TEMPLATE = "https://sync.dsp.example/match?dmp={uid}&gdpr={gdpr}"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

dmp = run_dmp


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("serve-sync")
    with dmp_serve(cwd) as state:
        yield cwd, state


def get(gateway: str, target: str, cookie: str | None = None) -> http.client.HTTPResponse:
    """One GET through the gateway, redirects not followed (a browser would follow them)."""
    url = urlsplit(gateway)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    headers = {"User-Agent": CHROME, **({"Cookie": cookie} if cookie else {})}
    connection.request("GET", target, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def listing_line(cwd: Path, name: str) -> str:
    (line,) = [line for line in dmp(cwd, "partners", "list", "--local").stdout.splitlines() if line.startswith(name)]
    return line


def test_add_with_a_sync_url_registers_the_partner_and_still_prints_the_key_last(served):
    cwd, _ = served
    result = dmp(cwd, "partners", "add", "sync-dsp", "--sync-url", TEMPLATE, "--local")
    assert result.stdout.strip().splitlines()[-1].startswith("dmp_")
    line = listing_line(cwd, "sync-dsp")
    assert "active" in line and "sync on" in line and TEMPLATE in line


def test_add_without_sync_options_registers_no_sync(served):
    cwd, _ = served
    dmp(cwd, "partners", "add", "plain-dsp", "--local")
    assert "sync off" in listing_line(cwd, "plain-dsp")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("http://dsp.example/{uid}", "not_https"),
        ("javascript:alert(1)", "not_https"),
        ("https://{uid}.evil.example/", "macro_in_host"),
        ("https://a@b", "userinfo"),
        ("//evil.example/{uid}", "not_https"),
        ("https://dsp.example/?next={redirect}", "unknown_macro"),
        ("https://dsp.example/ {uid}", "whitespace_or_control"),
    ],
)
def test_an_invalid_sync_url_is_refused_with_its_reason_and_nothing_is_stored(served, template, reason):
    cwd, _ = served
    result = dmp(cwd, "partners", "add", "bad-sync-dsp", "--sync-url", template, "--local", check=False)
    assert result.returncode != 0
    assert f"invalid --sync-url ({reason})" in result.stderr
    assert "dmp_" not in result.stdout
    assert "bad-sync-dsp" not in dmp(cwd, "partners", "list", "--local").stdout


def test_update_turns_sync_and_the_template_on_and_off(served):
    cwd, _ = served
    dmp(cwd, "partners", "add", "changing-dsp", "--sync", "--local")
    assert "sync on  (inbound only: no template)" in listing_line(cwd, "changing-dsp")
    dmp(cwd, "partners", "update", "changing-dsp", "--sync-url", "https://c.example/{uid}", "--local")
    assert "sync on  https://c.example/{uid}" in listing_line(cwd, "changing-dsp")
    dmp(cwd, "partners", "update", "changing-dsp", "--no-sync", "--local")
    assert "sync off" in listing_line(cwd, "changing-dsp")
    dmp(cwd, "partners", "update", "changing-dsp", "--sync", "--no-sync-url", "--local")
    assert "sync on  (inbound only: no template)" in listing_line(cwd, "changing-dsp")
    # AND an invalid template changes nothing
    refused = dmp(cwd, "partners", "update", "changing-dsp", "--sync-url", "https://{uid}.x/", "--local", check=False)
    assert refused.returncode != 0 and "macro_in_host" in refused.stderr
    assert "sync on  (inbound only: no template)" in listing_line(cwd, "changing-dsp")


def test_update_refuses_an_unknown_partner_and_a_change_of_nothing(served):
    cwd, _ = served
    unknown = dmp(cwd, "partners", "update", "never-added", "--sync", "--local", check=False)
    assert unknown.returncode == 1 and "never-added" in unknown.stderr
    dmp(cwd, "partners", "add", "idle-dsp", "--local")
    nothing = dmp(cwd, "partners", "update", "idle-dsp", "--local", check=False)
    assert nothing.returncode == 2 and "nothing to update" in nothing.stderr


def test_sync_through_the_gateway_then_visitor_show_and_erase(served):
    cwd, state = served
    gateway = state["gateway_url"]
    dmp(cwd, "partners", "add", "e2e-dsp", "--sync-url", TEMPLATE, "--local")
    # GIVEN a new browser sent out to the partner
    out = get(gateway, "/sync?partner=e2e-dsp&gdpr=0")
    assert out.status == 302 and out.headers["Cache-Control"].startswith("no-store")
    location = urlsplit(out.headers["Location"])
    assert (location.scheme, location.hostname, location.path) == ("https", "sync.dsp.example", "/match")
    visitor = parse_qs(location.query)["dmp"][0]
    cookie = out.headers["Set-Cookie"]
    assert cookie.startswith(f"dmp_uid={visitor};")
    # WHEN the partner sends it back with its own id
    back = get(gateway, "/sync?partner=e2e-dsp&puid=E2E-1", cookie=f"dmp_uid={visitor}")
    assert back.status == 200 and back.headers["Content-Type"] == "image/gif"
    # THEN a subject access request lists the mapping
    shown = json.loads(dmp(cwd, "visitor", "show", visitor, "--local").stdout)
    assert [(m["partner"], m["partner_uid"]) for m in shown["mappings"]] == [("e2e-dsp", "E2E-1")]
    # AND an erasure removes it and says so
    erased = dmp(cwd, "erase", visitor, "--local").stdout
    assert "mappings 1" in erased
    assert json.loads(dmp(cwd, "visitor", "show", visitor, "--local").stdout)["mappings"] == []
    # AND an unregistered partner gets the GIF, never a redirect
    refused = get(gateway, "/sync?partner=plain-dsp-unknown&redirect=https://evil.example/")
    assert refused.status == 200 and refused.headers["Content-Type"] == "image/gif"
