"""A publish is atomic for lookups: every lookup answers the membership of the build its
catalog names, with that build's destinations, whatever step of a publish has run, and
whichever step fails. Checked on moto by looking every visitor up, as every partner,
before each storage call a publish makes (and between its single membership writes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from functions.core.storage.bucket import SegmentsBucket
from functions.core.storage.membership import MembershipChange
from tests.integration.conftest import BUILD_TIME, DAY_MS, DEFINITIONS, LONDON, PARIS, hit, push_definitions
from tests.integration.test_build_stages import run_stages
from tests.integration.test_pipeline import answer, user_event

FIRST = "2026-11-28T10:00:00Z"
SECOND = "2026-11-28T11:00:00Z"
PARTNERS = ("demo-dsp", "other-ssp")
NOW_MS = int(BUILD_TIME.timestamp() * 1000)

# The second build's definitions: `all-visitors` narrows to 14 days (so the lapsed
# visitor leaves every segment) and `paris` gains a destination.
SECOND_DEFINITIONS = {
    **DEFINITIONS,
    "all-visitors": {**DEFINITIONS["all-visitors"], "rule": {"last_seen": {"within_days": 14}}},
    "paris": {**DEFINITIONS["paris"], "destinations": ["other-ssp", "demo-dsp"]},
}


class FailedStep(ConnectionError):
    pass


class Steps:
    """Counts a publish's storage calls; before each, checks every lookup, and fails the
    call named `fail_at` (`"<store>.<method>#<n>"`, its n-th call)."""

    def __init__(self, check: Callable[[], None], fail_at: str | None = None) -> None:
        self.check = check
        self.fail_at = fail_at
        self.calls: list[str] = []

    def before(self, name: str) -> None:
        self.check()
        self.calls.append(name)
        numbered = f"{name}#{self.calls.count(name)}"
        if numbered == self.fail_at:
            raise FailedStep(f"publish failed at {numbered}")


class Checked:
    """A store whose every method call goes through `steps.before` first."""

    def __init__(self, store: Any, label: str, steps: Steps) -> None:
        self._store, self._label, self._steps = store, label, steps

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._steps.before(f"{self._label}.{name}")
            return attribute(*args, **kwargs)

        return call


class CheckedMembership(Checked):
    """The membership table, written one visitor at a time, each write a step."""

    def apply(self, changes: Mapping[str, MembershipChange], build_id: str) -> int:
        for visitor_id, change in sorted(changes.items()):
            self._steps.before("membership.put")
            self._store.apply({visitor_id: change}, build_id)
        return len(changes)


def visible_members(bucket: SegmentsBucket, build_id: str) -> dict[str, dict[str, list[str]]]:
    """{partner: {visitor: the segments it may see}} of a build, from its part files."""
    manifest = bucket.manifest(build_id)
    seen: dict[str, dict[str, list[str]]] = {partner: {} for partner in PARTNERS}
    for segment in manifest.segments:
        for key in segment.files:
            for visitor_id in bucket.read_members(key):
                for partner in set(segment.destinations) & set(PARTNERS):
                    seen[partner].setdefault(visitor_id, []).append(segment.id)
    return {partner: {v: sorted(s) for v, s in members.items()} for partner, members in seen.items()}


@pytest.fixture
def scenario(load_handler: Any, traffic: dict[str, str], aws: Any, lambda_context: Any, monkeypatch: Any) -> Any:
    """A first build published, then a second one's shards run with visitors joining,
    leaving and changing segments and a segment gaining a destination; and a lookup that
    reads the catalog afresh on every call."""
    ingest = load_handler("ingest")
    lapsed, newcomer = "visitor-lapsed-1", "visitor-newcomer-1"
    hit(ingest, lambda_context, lapsed, NOW_MS - 20 * DAY_MS, "https://shop.example/", LONDON)
    builder = load_handler("builder")
    first = run_stages(builder, lambda_context, FIRST, shards=2)
    # the one-visit Londoner returns (now in london-pricing), a Parisian arrives
    hit(ingest, lambda_context, traffic["once"], NOW_MS + 30 * 60_000, "https://shop.example/", LONDON)
    hit(ingest, lambda_context, newcomer, NOW_MS + 40 * 60_000, "https://shop.example/", PARIS)
    push_definitions(aws.bucket, SECOND_DEFINITIONS)
    plan = builder.handler({"stage": "plan", "time": SECOND, "shards": 2}, lambda_context)
    for shard in plan["shards"]:
        builder.handler({"stage": "shard", "build_id": plan["build_id"], "shard": shard}, lambda_context)
    monkeypatch.setenv("CATALOG_REFRESH_SECONDS", "0")
    lookup = load_handler("lookup")
    visitors = [*traffic.values(), lapsed, newcomer]

    def served() -> dict[str, tuple[str, dict[str, list[str]]]]:
        """{partner: (build_id, {visitor: segments})} as the lookup answers now."""
        answers = {}
        for partner in PARTNERS:
            bodies = [answer(lookup.handler(user_event(v, partner), lambda_context)) for v in visitors]
            (build_id,) = {body["build_id"] for body in bodies}
            answers[partner] = (build_id, {b["uid"]: [s["id"] for s in b["segments"]] for b in bodies if b["segments"]})
        return answers

    return builder, first["build_id"], plan["build_id"], served


def test_the_second_build_changes_what_every_partner_sees(scenario, aws, lambda_context):
    # the scenario's premise: without it the checks below could not tell the builds apart
    builder, first, second, served = scenario
    builder.handler({"stage": "publish", "build_id": second}, lambda_context)
    bucket = SegmentsBucket(aws.bucket)
    before, after = visible_members(bucket, first), visible_members(bucket, second)
    for partner in PARTNERS:
        assert before[partner] != after[partner]
        assert served()[partner] == (second, after[partner])
    assert "visitor-lapsed-1" in before["demo-dsp"] and "visitor-lapsed-1" not in after["demo-dsp"]
    assert "visitor-newcomer-1" in after["demo-dsp"]  # via paris's new destination


class Lookups:
    """Checks that every partner's answers are exactly those of one build (the same for
    all partners), one of `builds`, and records which build each check found."""

    def __init__(self, served: Callable[[], Any], bucket: SegmentsBucket, builds: tuple[str, str]) -> None:
        self._served, self._bucket, self._builds = served, bucket, builds
        self._expected: dict[str, dict[str, dict[str, list[str]]]] = {}
        self.seen: list[str] = []

    def check(self) -> None:
        answers = self._served()
        (build_id,) = {build_id for build_id, _ in answers.values()}
        assert build_id in self._builds
        if build_id not in self._expected:  # its manifest exists once a lookup names it
            self._expected[build_id] = visible_members(self._bucket, build_id)
        for partner, (_, members) in answers.items():
            assert members == self._expected[build_id][partner], f"{partner} as of {build_id}"
        self.seen.append(build_id)


def publish_with(builder: Any, steps: Steps, build_id: str, context: Any) -> None:
    """Run the publish stage with every storage call a checked step."""
    stores = builder.stores
    builder.stores = replace(
        stores,
        bucket=Checked(stores.bucket, "bucket", steps),
        catalog=Checked(stores.catalog, "catalog", steps),
        membership=CheckedMembership(stores.membership, "membership", steps),
    )
    try:
        builder.handler({"stage": "publish", "build_id": build_id}, context)
    finally:
        builder.stores = stores


def test_every_lookup_during_a_publish_answers_one_published_build(scenario, aws, lambda_context):
    # GIVEN a second build whose shards have run
    builder, first, second, served = scenario
    lookups = Lookups(served, SegmentsBucket(aws.bucket), (first, second))
    steps = Steps(lookups.check)
    # WHEN it is published, every partner looking every visitor up before each storage call
    publish_with(builder, steps, second, lambda_context)
    lookups.check()
    # THEN each answer was the first build's, until the catalog named the second, then the second's
    switch = lookups.seen.index(second)
    assert lookups.seen == [first] * switch + [second] * (len(lookups.seen) - switch)
    assert steps.calls[switch - 1] == "catalog.put"
    # AND the membership writes all happened while the first build was served
    assert steps.calls[:switch].count("membership.put") == 3


FAILURES = [
    "bucket.put_manifest#1",
    "bucket.put_membership_state#1",
    "membership.put#1",
    "membership.put#2",
    "membership.put#3",
    "bucket.put_membership_state#2",
    "bucket.put_latest#1",
    "catalog.put#1",
    "bucket.build_ids#1",
]


@pytest.mark.parametrize("fail_at", FAILURES)
def test_a_publish_failing_at_any_step_leaves_lookups_on_one_build_until_it_is_run_again(
    scenario, aws, lambda_context, fail_at
):
    builder, first, second, served = scenario
    lookups = Lookups(served, SegmentsBucket(aws.bucket), (first, second))
    steps = Steps(lookups.check, fail_at=fail_at)
    # WHEN the publish fails at that step
    with pytest.raises(FailedStep):
        publish_with(builder, steps, second, lambda_context)
    # THEN every answer, until then and after it, is one whole build's
    lookups.check()
    assert set(lookups.seen) == ({first, second} if fail_at == "bucket.build_ids#1" else {first})
    # AND running the publish again serves the second build, whole
    builder.handler({"stage": "publish", "build_id": second}, lambda_context)
    lookups.check()
    assert lookups.seen[-1] == second


def test_a_build_after_a_failed_publish_keeps_lookups_on_the_last_published_one(scenario, aws, lambda_context):
    # GIVEN the second build's publish failed after one membership write
    builder, first, second, served = scenario
    bucket = SegmentsBucket(aws.bucket)
    with pytest.raises(FailedStep):
        publish_with(builder, Steps(lambda: None, fail_at="membership.put#2"), second, lambda_context)
    # WHEN a third build, on the first build's definitions again, also fails half-way
    # (it compares with the table itself, written in part by a build never published)
    push_definitions(aws.bucket, DEFINITIONS)
    third = run_stages(builder, lambda_context, "2026-11-28T12:00:00Z", shards=2, publish=False)
    lookups = Lookups(served, bucket, (first, third["build_id"]))
    with pytest.raises(FailedStep):
        publish_with(builder, Steps(lookups.check, fail_at="membership.put#2"), third["build_id"], lambda_context)
    # THEN every lookup meanwhile answered the first build, whole
    lookups.check()
    assert set(lookups.seen) == {first}
    # AND the third build, published at last, is served whole
    builder.handler({"stage": "publish", "build_id": third["build_id"]}, lambda_context)
    lookups.check()
    assert lookups.seen[-1] == third["build_id"]
