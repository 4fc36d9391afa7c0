"""The `dmp` command against a running `dmp serve`, as an operator uses it from a shell."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEGMENTS_DIR
from tests.localstack import dmp_serve, run_dmp

pytestmark = pytest.mark.slow
VISITOR = "cli-visitor-0001"


dmp = run_dmp


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`dmp serve --port 0` in a fresh directory; yields (cwd, .dmp/local.json)."""
    cwd = tmp_path_factory.mktemp("serve")
    # Lookups check the catalog on every request, so each test sees the build it just ran.
    with dmp_serve(cwd, {"CATALOG_REFRESH_SECONDS": "0"}) as state:
        yield cwd, state
    assert not (cwd / ".dmp" / "local.json").exists(), "dmp serve stopped by SIGTERM must remove its state file"


def call(url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_writes_the_state_file_of_the_contract(served):
    _, state = served
    for field in ("gateway_url", "aws_endpoint_url", "region", "events_table", "membership_table", "bucket"):
        assert state[field], field
    with urllib.request.urlopen(state["gateway_url"] + "/p.gif?e=page_view", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/gif"


def test_serve_names_the_catalog_table_in_the_state_file(served):
    # An extra key beside the contract's: the table publish copies the lookup's catalog into.
    _, state = served
    assert state["catalog_table"] == "dmp-local-catalog"


def test_validate_reports_file_path_and_reason_and_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: Bad_Id\nname: x\nrule:\n  all: []\n")
    result = dmp(tmp_path, "segments", "validate", str(SEGMENTS_DIR), str(bad), check=False)
    assert result.returncode == 1
    assert f"{bad}: id:" in result.stderr
    assert f"{bad}: rule.all:" in result.stderr


def test_validate_accepts_the_shipped_examples(tmp_path):
    result = dmp(tmp_path, "segments", "validate", str(SEGMENTS_DIR))
    assert "ok  holiday-returning-london-pricing" in result.stdout


def test_push_ingest_build_and_lookup_from_a_shell(served, tmp_path):
    cwd, state = served
    dmp(cwd, "segments", "push", str(SEGMENTS_DIR), "--local")
    key = dmp(cwd, "partners", "add", "demo-dsp", "--local").stdout.strip().splitlines()[-1]
    assert key.startswith("dmp_")

    # GIVEN a backfill file of a returning Londoner who viewed pricing, plus two bad lines
    now = time.time()
    lines = [
        {"uid": VISITOR, "ts": int((now - 5 * 86400) * 1000), "e": "page_view", "url": "https://shop.example/"},
        {"uid": VISITOR, "ts": int((now - 86400) * 1000), "e": "page_view", "url": "https://shop.example/pricing"},
        {"uid": "x", "ts": int(now * 1000), "e": "page_view"},
        "not json",
    ]
    for line in lines[:2]:
        assert isinstance(line, dict)
        line["geo"] = {"country": "GB", "region": "ENG", "city": "London"}
    backfill = tmp_path / "events.jsonl"
    backfill.write_text("\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines) + "\n")
    ingested = dmp(cwd, "ingest", str(backfill), "--local")
    assert "stored 2 event(s), skipped 2 line(s)" in ingested.stdout
    assert f"{backfill}:3:" in ingested.stderr and f"{backfill}:4:" in ingested.stderr

    # WHEN a build runs
    built = dmp(cwd, "build", "--local", "--shards", "2")
    assert "holiday-returning-london-pricing" in built.stdout
    # AND the partner the London segment names gets its export: the visitor, added
    assert "export demo-dsp: full 1 rows, delta 1 rows" in built.stdout

    # THEN the partner finds the visitor in the London segment through the lookup API
    status, body = call(f"{state['gateway_url']}/v1/users/{VISITOR}/segments", key)
    assert status == 200
    assert "holiday-returning-london-pricing" in [s["id"] for s in body["segments"]]

    # AND once the key is revoked the same call is refused
    dmp(cwd, "partners", "revoke", "demo-dsp", "--local")
    assert call(f"{state['gateway_url']}/v1/users/{VISITOR}/segments", key)[0] == 403
    assert call(f"{state['gateway_url']}/v1/users/{VISITOR}/segments")[0] == 401
    listing = dmp(cwd, "partners", "list", "--local").stdout
    assert "demo-dsp" in listing and "revoked" in listing
    assert key not in listing


def test_build_at_a_given_time_names_the_build_after_it(served):
    cwd, _ = served
    dmp(cwd, "segments", "push", str(SEGMENTS_DIR), "--local")
    result = dmp(cwd, "build", "--local", "--at", "2026-12-01T08:00:00Z")
    assert "build 20261201T080000Z evaluated at 2026-12-01T08:00:00Z" in result.stdout


def test_visitor_show_erase_and_audit_answer_a_data_subject(served, tmp_path):
    cwd, _ = served
    visitor = "erase-me-0001"
    backfill = tmp_path / "one.jsonl"
    backfill.write_text(json.dumps({"uid": visitor, "ts": int(time.time() * 1000), "e": "page_view"}) + "\n")
    dmp(cwd, "ingest", str(backfill), "--local")
    # GIVEN a visitor with one event: a subject access request shows it
    shown = json.loads(dmp(cwd, "visitor", "show", visitor, "--local").stdout)
    assert [e["name"] for e in shown["events"]] == ["page_view"]
    assert shown["suppression"] is None
    # WHEN the operator erases the visitor
    erased = dmp(cwd, "erase", visitor, "--local").stdout
    assert "events_and_traits 1" in erased and "erased 1 visitor(s)" in erased
    # THEN nothing is held about it but its suppression
    shown = json.loads(dmp(cwd, "visitor", "show", visitor, "--local").stdout)
    assert shown["events"] == [] and shown["membership"]["suppressed"] is True
    assert shown["suppression"]["reason"] == "erase" and shown["suppression"]["erased_at"] is not None
    # AND the audit lists the erasure, by the CLI, under the id's hash
    records = [json.loads(line) for line in dmp(cwd, "audit", "--local").stdout.splitlines()]
    assert [r["by"] for r in records if r["visitor_sha256"] == hashlib.sha256(visitor.encode()).hexdigest()] == ["cli"]
    assert visitor not in dmp(cwd, "audit", "--local").stdout
    assert dmp(cwd, "audit", "--local", "--since", "2999-01-01T00:00:00Z").stdout == ""
    # AND a malformed id changes nothing and says why
    refused = dmp(cwd, "erase", "bad id", "--local", check=False)
    assert refused.returncode == 2 and "not visitor ids" in refused.stderr


def test_optout_through_the_gateway_empties_the_visitors_lookups(served):
    cwd, state = served
    gateway = state["gateway_url"]
    key = dmp(cwd, "partners", "add", "optout-dsp", "--local").stdout.strip().splitlines()[-1]
    # GIVEN a visitor whose hits made it a member of a published segment
    request = urllib.request.Request(
        f"{gateway}/p.gif?e=page_view&url=https%3A%2F%2Fshop.example%2F&uid=optout-visitor-1"
    )
    request.add_header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
    urllib.request.urlopen(request, timeout=30).read()
    definition = tmp_segment(cwd, "optout-all", "optout-dsp")
    dmp(cwd, "segments", "push", str(definition), "--local")
    # after every build of this module (one is dated 2026-12-01), so this one is published
    at = max(datetime.now(UTC), datetime(2026, 12, 1, 8, tzinfo=UTC)) + timedelta(hours=1)
    dmp(cwd, "build", "--local", "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    status, body = call(f"{gateway}/v1/users/optout-visitor-1/segments", key)
    assert "optout-all" in [s["id"] for s in body["segments"]]
    # WHEN the browser opts out
    optout = urllib.request.Request(f"{gateway}/optout?format=html", headers={"Cookie": "dmp_uid=optout-visitor-1"})
    with urllib.request.urlopen(optout, timeout=30) as response:
        cookies = response.headers.get_all("Set-Cookie")
        page = response.read().decode()
    # THEN it is told so, remembered, and no partner sees a segment of it any more
    assert "opted out" in page and any(c.startswith("dmp_optout=1") for c in cookies)
    status, body = call(f"{gateway}/v1/users/optout-visitor-1/segments", key)
    assert (status, body["segments"]) == (200, [])


def tmp_segment(cwd: Path, segment_id: str, partner: str) -> Path:
    path = cwd / f"{segment_id}.yaml"
    path.write_text(
        f"id: {segment_id}\nname: Everyone\ndestinations: [{partner}]\nrule: {{last_seen: {{within_days: 30}}}}\n"
    )
    return path


def test_commands_without_a_stack_say_how_to_get_one(tmp_path):
    result = dmp(tmp_path, "build", check=False)
    assert result.returncode == 2
    assert "--local" in result.stderr and "--stack" in result.stderr


def test_demo_shows_the_london_segment_with_members(tmp_path):
    result = dmp(tmp_path, "demo", "--visitors", "60")
    london = [line for line in result.stdout.splitlines() if "holiday-returning-london-pricing" in line]
    assert london, result.stdout
    size = int(london[0].split()[1])
    assert size > 0
    assert "GET /v1/users/" in result.stdout and "format=openrtb" in result.stdout
    assert "without a key -> 401" in result.stdout
    # a visitor who adds to cart after the build is a cart abandoner for the platform, with no build
    (realtime,) = [line for line in result.stdout.splitlines() if "adds to cart" in line]
    assert "with no build" in realtime and "cart-abandoners" in realtime.split("sees it in:")[1]


def test_validate_against_a_stack_reports_unknown_destinations(served, tmp_path):
    cwd, _ = served
    dmp(cwd, "partners", "add", "known-dsp", "--local")
    definition = tmp_path / "seg.yaml"
    definition.write_text(
        "id: two-partners\nname: x\ndestinations: [known-dsp, ghost-dsp]\nrule:\n  geo: {city: London}\n"
    )
    result = dmp(cwd, "segments", "validate", str(definition), "--local", check=False)
    assert result.returncode == 1
    assert f"{definition}: destinations[1]: unknown partner 'ghost-dsp'" in result.stderr
    assert "destinations[0]" not in result.stderr


def raw_exchange(gateway_url: str, request: bytes) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one raw HTTP/1.1 request to the gateway."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(gateway_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        ("TRACE /p.gif HTTP/1.1", 404),  # a method the route does not have: HTTP API's 404
        ("PATCH /collect HTTP/1.1", 404),
        ("BREW /optout HTTP/1.1", 404),
        ("TRACE /no/such/path HTTP/1.1", 404),
        ("GARBAGE", 400),  # not a request line at all
    ],
)
def test_the_local_gateway_answers_any_method_in_json_never_with_a_5xx(served, request_line, status):
    _, state = served
    request = f"{request_line}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    answered, content_type, body = raw_exchange(state["gateway_url"], request)
    assert answered == status
    assert content_type == "application/json"
    assert set(json.loads(body)) <= {"message", "error"}


def test_an_unknown_method_on_the_lookup_api_is_answered_by_it_in_json(served):
    _, state = served
    request = b"TRACE /v1/segments HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    answered, content_type, body = raw_exchange(state["gateway_url"], request)
    assert answered < 500 and content_type == "application/json", (answered, body)
    assert json.loads(body)
