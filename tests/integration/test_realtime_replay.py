"""Real-time membership gives a build's answer (DESIGN.md, "Freshness"; issue 15): the
demo's traffic (dmp/demo.py) replayed hit by hit on moto, each hit through the local
gateway and the pixel at its own time, the events table's stream read by `dmp serve`'s
poller and evaluated at that time, and the sweep run at each minute a visitor is filed
under (where the step its item holds ends); then the demo's imports, and a build at the
demo's build time. That build must find every membership already stored: it writes
nothing, and each of its member lines is the item the evaluator left, as lookups read it."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from dmp import demo
from dmp.gateway import SIMULATED_TIME_HEADER, Gateway, Handlers
from dmp.local import StreamPoller, drain_imports
from functions.builder.build import build
from functions.builder.changes import read_member_lines
from functions.core import layout
from functions.core.config import Settings
from functions.core.segments import load_definitions
from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.due import MINUTE_MS, DueStore, minute_of
from functions.core.storage.membership import Membership, MembershipStore
from functions.evaluator import logic as evaluator_logic
from functions.evaluator.logic import STEPS, EvaluatorStores, evaluate_visitors, visitors_of
from functions.evaluator.stores import REQUIRED, connect
from functions.evaluator.stream import batch_item_failures
from functions.sweep.logic import sweep
from tests.conftest import SEGMENTS_DIR

# The demo's first browsers (of its 120, as `dmp demo` simulates them): enough for a
# member in every demo segment, few enough to replay in well under a minute.
BROWSERS = 36
SEED = 2026  # the demo's
SHARDS = 2  # the demo's
HITS = ("/p.gif", "/collect")
BUILD_AHEAD_MINUTES = 30


@dataclass(frozen=True)
class BrowserRequest:
    """One request a demo browser sent, as the local gateway receives it."""

    at_ms: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class InProcessBrowsers:
    """The demo's `Browser` transport, in this process: recording, each browser's
    requests are kept (with the cookie the pixel would have set on its first hit) to be
    replayed later in time order; sending, a request goes straight to the local gateway
    (the demo sends only requests answered without a redirect then: ID sync callbacks)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.recording = True
        self.recorded: list[BrowserRequest] = []
        self._visitors = 0

    def send(self, browser: demo.Browser, request: urllib.request.Request, *, follow_redirects: bool = True) -> bytes:
        if self.recording and browser.cookie is None:
            self._visitors += 1
            browser.cookie = f"dmp_uid=demo-visitor-{self._visitors:04d}"
        headers = {name.lower(): value for name, value in request.header_items()}
        if browser.cookie:
            headers["cookie"] = browser.cookie
        split = urlsplit(request.full_url)
        target = split.path + (f"?{split.query}" if split.query else "")
        body = request.data if isinstance(request.data, bytes) else b""
        sent = BrowserRequest(int(headers[SIMULATED_TIME_HEADER]), request.get_method(), target, headers, body)
        if self.recording:
            self.recorded.append(sent)
            return b""
        return self.dispatch(sent)

    def dispatch(self, request: BrowserRequest) -> bytes:
        status, _headers, body = self.gateway.dispatch(
            request.method, request.target, dict(request.headers), request.body, "203.0.113.7"
        )
        assert status < 300, (status, request.target, body)
        return body


class SweptDue:
    """The evaluator's due index, noting the minutes that have visitors due: the test's
    stand-in for the sweep's one-minute schedule, which visits only those minutes."""

    def __init__(self, store: DueStore) -> None:
        self.store = store
        self.minutes: set[int] = set()

    def put_due(self, due_ms: Mapping[str, int], *, now_ms: int | None = None) -> int:
        floor = minute_of(now_ms) if now_ms is not None else 0
        self.minutes.update(max(minute_of(due), floor) for due in due_ms.values())
        return self.store.put_due(due_ms, now_ms=now_ms)


class Replay:
    """The real-time path at a simulated clock: the stream's poller, the evaluator at the
    clock's time, and the sweep at every due minute up to it."""

    def __init__(self, aws: Any) -> None:
        stores, due = connect(Settings.from_env(require=REQUIRED))
        self.due = due
        self.swept = SweptDue(due)
        self.stores: EvaluatorStores = replace(stores, due=self.swept)
        self.now_ms = 0
        self.failed: list[str] = []
        self.sweeps = 0
        self.logged: list[str] = []
        region = boto3.client("dynamodb").meta.region_name
        # The regional endpoint, which moto's in-process mock routes (see test_realtime_membership).
        streams = boto3.client("dynamodbstreams", endpoint_url=f"https://streams.dynamodb.{region}.amazonaws.com")
        arn = boto3.client("dynamodb").describe_table(TableName=aws.events_table)["Table"]["LatestStreamArn"]
        self.poller = StreamPoller(streams, arn, self._evaluate_batch, log=self.logged.append)

    def _evaluate_batch(self, event: dict[str, Any]) -> Mapping[str, Any]:
        """What the evaluator's handler does, at the replay's clock instead of Lambda's."""
        evaluation = evaluate_visitors(visitors_of(event), self.stores, self.now_ms)
        self.failed.extend(evaluation.failed)
        return batch_item_failures(event, evaluation.failed)

    def _evaluate_due(self, visitor_ids: Sequence[str]) -> None:
        evaluation = evaluate_visitors(visitor_ids, self.stores, self.now_ms)
        self.failed.extend(evaluation.failed)

    def advance(self, to_ms: int) -> None:
        """Run the sweep of every due minute that has passed by `to_ms`, in order, then
        set the clock there. A sweep runs at the start of the minute after the due one and
        sweeps just that minute: the runs in between would find nothing due."""
        while passed := [m for m in self.swept.minutes if (m + 1) * MINUTE_MS <= to_ms]:
            minute = min(passed)
            self.swept.minutes.discard(minute)
            self.now_ms = (minute + 1) * MINUTE_MS
            self.due.put_swept_minute(minute - 1)
            sweep(self.due, self._evaluate_due, self.now_ms)
            self.sweeps += 1
        self.now_ms = to_ms

    def evaluate_stream(self) -> None:
        """Hand the stream's new records to the evaluator until none are left."""
        while self.poller.poll():
            pass


@pytest.fixture
def browsers(aws: Any, monkeypatch: pytest.MonkeyPatch) -> InProcessBrowsers:
    # Handlers() imports the handlers afresh, so they follow the moto stack's environment.
    transport = InProcessBrowsers(Gateway(Handlers(), simulate_time=True))

    def send(browser: demo.Browser, request: urllib.request.Request, *, follow_redirects: bool = True) -> bytes:
        return transport.send(browser, request, follow_redirects=follow_redirects)

    monkeypatch.setattr(demo.Browser, "_send", send)
    return transport


@pytest.fixture
def importer_running(load_handler: Any, aws: Any) -> Iterator[None]:
    """The importer on every file dropped under imports/, as `dmp serve` runs it."""
    importer = load_handler("importer")
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            drain_imports(aws.import_queue_url, importer.handler, wait_seconds=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def members_of(bucket: SegmentsBucket, build_id: str) -> dict[str, Membership]:
    members: dict[str, Membership] = {}
    for shard in range(SHARDS):
        for visitor_id, membership in read_member_lines(bucket.iter_lines(layout.members_key(build_id, shard))):
            if membership is not None:
                members[visitor_id] = membership
    return members


@pytest.mark.parametrize("steps", [STEPS, 1], ids=["items-hold-their-steps", "one-step-so-the-sweep-works"])
def test_the_demos_traffic_evaluated_hit_by_hit_leaves_the_membership_a_build_finds(
    aws: Any, browsers: InProcessBrowsers, importer_running: None, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN items that hold `steps` changes ahead: with one, most changes after the first
    # are the sweep's to find
    monkeypatch.setattr(evaluator_logic, "STEPS", steps)
    # AND the demo's segments, and its browsers' traffic over four weeks up to its build time
    # (the demo's is 5 minutes ahead: the imported traits carry the wall clock's time, which
    # must lie before it; here more, so a slow run still imports before it)
    now = (datetime.now(UTC) + timedelta(minutes=BUILD_AHEAD_MINUTES)).replace(second=0, microsecond=0)
    bucket = SegmentsBucket(aws.bucket)
    definitions = load_definitions({str(p): p.read_text() for p in sorted(SEGMENTS_DIR.glob("*.y*ml"))})
    for definition in definitions:
        bucket.put_definition(definition.id, definition.model_dump(mode="json", by_alias=True, exclude_none=True))
    simulated = [demo._simulate("http://gateway.local", index, now, SEED) for index in range(BROWSERS)]
    hits = sorted((r for r in browsers.recorded if urlsplit(r.target).path in HITS), key=lambda r: r.at_ms)
    # AND a build published before the first hit, so the evaluator has definitions
    first = datetime.fromtimestamp(hits[0].at_ms // 1000 - 60, UTC)
    assert build(aws.build_stores(), first, SHARDS, retention_seconds=aws.retention_seconds).published
    replay = Replay(aws)

    # WHEN each hit reaches the pixel at its time, and the stream's records are evaluated then
    browsers.recording = False
    for request in hits:
        replay.advance(request.at_ms)
        browsers.dispatch(request)
        replay.evaluate_stream()
    # AND the demo's partners sync and drop their files (the importer writes the traits)
    demo._imports("http://gateway.local", aws, simulated, now, SEED, lambda _: None)
    replay.advance(int(datetime.now(UTC).timestamp() * 1000))
    replay.evaluate_stream()
    # AND the sweep has run up to the demo's build time
    replay.advance(int(now.timestamp() * 1000))
    assert replay.failed == [] and replay.logged == []
    evaluated = {visitor_id: stored for visitor_id, stored in MembershipStore(aws.membership_table).scan()}

    # THEN a build at that time finds every membership stored already and writes none
    result = build(aws.build_stores(), now, SHARDS, retention_seconds=aws.retention_seconds)
    assert result.published and result.membership_changes == 0
    # AND each of its members is in exactly the segments (and until the expiry) the evaluator
    # stored, as lookups read the items then (an item whose due instant has passed serves its step)
    built = members_of(bucket, result.manifest.build_id)
    live = {v: s.live(int(now.timestamp())) for v, s in evaluated.items()}
    stored = {v: m for v, m in live.items() if m is not None and m.segments}
    assert stored == built
    # AND every demo segment has members, through hits, imports and due instants alike
    assert {segment.id: segment.size > 0 for segment in result.manifest.segments} == {
        definition.id: True for definition in definitions
    }
    # AND with items of one step ahead, the sweep had changes to find
    assert replay.sweeps > 0 or steps > 1
