"""Data-source definitions and the data-use control, in memory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from functions.builder.plan import plan_build
from functions.core.segments import DefinitionErrors, load_definitions
from functions.core.sources import SourceDefinition, load_sources
from tests.conftest import ROOT
from tests.fakes import MemoryBucket

CRM = {
    "id": "harbor-crm",
    "name": "Harbor CRM",
    "kind": "second",
    "id_type": "partner:harbor-retail",
    "traits": {"tier": "string"},
    "ttl_days": 30,
    "allowed_destinations": ["demo-dsp"],
}


def segment(destinations: list[str], trait: str = "harbor-crm.tier") -> str:
    return yaml.safe_dump(
        {
            "id": "loyal",
            "name": "Loyal",
            "destinations": destinations,
            "rule": {"all": [{"geo": {"city": "London"}}, {"trait": {"name": trait, "equals": "gold"}}]},
        }
    )


def sources() -> dict[str, SourceDefinition]:
    return {s.id: s for s in load_sources({"sources/harbor-crm.yaml": yaml.safe_dump(CRM)})}


def test_the_example_sources_are_valid_and_cover_both_kinds_and_id_types() -> None:
    # GIVEN the repository's sources/
    files = {str(p): p.read_text() for p in (ROOT / "sources").glob("*.yaml")}
    # WHEN they are loaded
    loaded = load_sources(files)
    # THEN a second-party source keyed by a partner's ids and a third-party one keyed by ours are there
    assert {(s.kind, s.partner) for s in loaded} == {("second", "harbor-retail"), ("third", None)}


def test_every_problem_of_a_source_file_is_named_by_file_path_and_reason() -> None:
    # GIVEN a source with a bad kind, an unknown trait type and an id type that is no partner
    bad = {**CRM, "kind": "first", "traits": {"tier": "colour"}, "id_type": "partner:"}
    # WHEN it is loaded
    with pytest.raises(DefinitionErrors) as raised:
        load_sources({"sources/bad.yaml": yaml.safe_dump(bad)})
    # THEN each problem names the file and the path inside it
    where = {(p.file, p.path) for p in raised.value.problems}
    assert where == {("sources/bad.yaml", "kind"), ("sources/bad.yaml", "traits.tier"), ("sources/bad.yaml", "id_type")}


def test_a_segment_may_name_only_the_destinations_its_sources_allow() -> None:
    # GIVEN a segment on Harbor's tier sent to a destination Harbor does not allow
    # WHEN it is validated with the sources known
    with pytest.raises(DefinitionErrors) as raised:
        load_definitions({"segments/loyal.yaml": segment(["demo-dsp", "other-ssp"])}, sources=sources())
    # THEN the refused destination is named with the source it may not receive
    [problem] = raised.value.problems
    assert (problem.file, problem.path) == ("segments/loyal.yaml", "destinations[1]")
    assert "'other-ssp' may not receive data of source 'harbor-crm'" in problem.reason
    # AND the allowed destination alone passes
    assert load_definitions({"segments/loyal.yaml": segment(["demo-dsp"])}, sources=sources())


@pytest.mark.parametrize(
    ("trait", "reason"),
    [("nobody.tier", "unknown source 'nobody'"), ("harbor-crm.shoe_size", "declares no trait 'shoe_size'")],
)
def test_a_trait_of_an_unknown_source_or_an_undeclared_trait_is_a_violation(trait: str, reason: str) -> None:
    with pytest.raises(DefinitionErrors) as raised:
        load_definitions({"s.yaml": segment(["demo-dsp"], trait)}, sources=sources())
    [problem] = raised.value.problems
    assert problem.path == "rule.all[1].trait.name" and reason in problem.reason


def test_a_build_refuses_a_violation_before_writing_anything() -> None:
    # GIVEN a bucket with the source and a segment breaking its data-use terms
    bucket = MemoryBucket()
    bucket.put_json("sources/harbor-crm.json", CRM)
    bucket.objects["segments/loyal.yaml"] = segment(["other-ssp"]).encode()
    before = dict(bucket.objects)
    # WHEN a build is planned
    with pytest.raises(DefinitionErrors):
        plan_build(bucket, datetime(2026, 11, 28, tzinfo=UTC), 1)
    # THEN nothing was written (the published build stays)
    assert bucket.objects == before
