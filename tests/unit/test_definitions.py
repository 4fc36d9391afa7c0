"""Loading and validating segment definitions (functions/core/segments.py).

DESIGN.md: "Invalid definitions are rejected with the file, the path inside it and the
reason." Each test gives one or more files (name -> text) and reads back the problems.
"""

from __future__ import annotations

import json

import pytest
import yaml

from functions.core.segments import (
    AllRule,
    DefinitionErrors,
    DefinitionProblem,
    EventRule,
    GeoRule,
    VisitsRule,
    load_definitions,
)

EXAMPLE_YAML = """\
id: holiday-returning-london-pricing      # [a-z0-9-]{1,64}, unique
name: Returning London visitors who viewed pricing
description: Target with the Christmas offer
destinations: [demo-dsp]                  # partners allowed to see it
rule:
  all:
    - geo: {city: London}
    - visits: {min: 2, within_days: 30}
    - event: {name: page_view, url_contains: /pricing, within_days: 30}
"""


def definition(rule: object, **fields: object) -> dict:
    """A valid definition document around `rule`, with `fields` overriding the rest."""
    return {"id": "test-segment", "name": "Test segment", "rule": rule, **fields}


def as_yaml(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def problems_of(files: dict[str, str], **options: object) -> list[DefinitionProblem]:
    """The problems `load_definitions` reports for `files` (fails the test if none)."""
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(files, **options)  # type: ignore[arg-type]
    assert caught.value.problems, "DefinitionErrors without problems"
    return caught.value.problems


def only_problem_of_text(file: str, text: str) -> DefinitionProblem:
    """The single problem of one file."""
    problems = problems_of({file: text})
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def only_problem(document: object) -> DefinitionProblem:
    """The single problem of one YAML document, checked to be reported against its file."""
    problem = only_problem_of_text("segment.yaml", as_yaml(document))
    assert problem.file == "segment.yaml"
    return problem


# --- valid files --------------------------------------------------------------------


def test_the_design_example_loads_from_yaml():
    # GIVEN the example of DESIGN.md as a YAML file
    # WHEN it is loaded
    [segment] = load_definitions({"segments/holiday.yaml": EXAMPLE_YAML})

    # THEN every field and rule is there
    assert segment.id == "holiday-returning-london-pricing"
    assert segment.name == "Returning London visitors who viewed pricing"
    assert segment.description == "Target with the Christmas offer"
    assert segment.destinations == ["demo-dsp"]
    assert isinstance(segment.rule, AllRule)
    geo, visits, event = segment.rule.all
    assert isinstance(geo, GeoRule) and geo.geo.city == "London"
    assert isinstance(visits, VisitsRule) and (visits.visits.min, visits.visits.within_days) == (2, 30)
    assert isinstance(event, EventRule)
    assert (event.event.name, event.event.url_contains, event.event.within_days) == ("page_view", "/pricing", 30)


def test_the_same_definition_loads_from_json():
    # GIVEN the same definition as a JSON file
    document = yaml.safe_load(EXAMPLE_YAML)
    [from_json] = load_definitions({"holiday.json": json.dumps(document)})
    [from_yaml] = load_definitions({"holiday.yaml": EXAMPLE_YAML})

    # THEN both give the same definition
    assert from_json == from_yaml


def test_yml_extension_is_yaml():
    [segment] = load_definitions({"holiday.yml": EXAMPLE_YAML})
    assert segment.id == "holiday-returning-london-pricing"


def test_every_file_of_a_set_is_loaded():
    files = {
        "a.yaml": as_yaml(definition({"geo": {"country": "GB"}}, id="uk")),
        "b.json": json.dumps(definition({"device": {"type": "mobile"}}, id="mobile")),
        "c.yaml": as_yaml(definition({"not": {"visits": {"min": 2}}}, id="new-visitors")),
    }
    assert sorted(d.id for d in load_definitions(files)) == ["mobile", "new-visitors", "uk"]


def test_every_rule_kind_of_the_design_is_accepted():
    rule = {
        "all": [
            {"any": [{"geo": {"country": "GB", "region": "ENG", "city": "London"}}, {"device": {"type": "tablet"}}]},
            {"not": {"trait": {"name": "churned", "exists": True}}},
            {
                "event": {
                    "name": "purchase",
                    "url_contains": "/checkout",
                    "url_prefix": "https://shop.example.com/",
                    "url_regex": r"/order/\d+$",
                    "ref_contains": "google",
                    "props": {"plan": "pro", "seats": 5, "trial": False},
                    "min_count": 1,
                    "max_count": 3,
                    "within_days": 30,
                }
            },
            {"visits": {"min": 2, "max": 10, "within_days": 7}},
            {"trait": {"name": "age", "gte": 18, "lte": 34}},
            {"trait": {"name": "tier", "in": ["gold", "silver"]}},
            {"trait": {"name": "tier", "equals": "gold"}},
            {"first_seen": {"within_days": 1}},
            {"last_seen": {"within_days": 0.5}},
            {"event": {"max_count": 0}},
        ]
    }
    [segment] = load_definitions({"all-kinds.yaml": as_yaml(definition(rule))})
    assert isinstance(segment.rule, AllRule)
    assert len(segment.rule.all) == 10


def test_known_destinations_are_accepted():
    files = {"a.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, destinations=["demo-dsp", "other-dsp"]))}
    [segment] = load_definitions(files, known_partners={"demo-dsp", "other-dsp", "unused"})
    assert segment.destinations == ["demo-dsp", "other-dsp"]


def test_any_destination_is_accepted_when_partners_are_not_given():
    files = {"a.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, destinations=["anyone"]))}
    assert load_definitions(files)[0].destinations == ["anyone"]


# --- document-level problems --------------------------------------------------------


def test_bad_yaml_is_reported_with_its_file():
    problem = only_problem_of_text("broken.yaml", "id: [unclosed\nname: x\n")
    assert problem.file == "broken.yaml"
    assert problem.path == ""
    assert "YAML" in problem.reason


def test_bad_json_is_reported_with_its_file():
    problem = only_problem_of_text("broken.json", '{"id": "x", "name": ')
    assert problem.file == "broken.json"
    assert problem.path == ""
    assert "JSON" in problem.reason


@pytest.mark.parametrize("text", ["- id: x\n  name: y\n", "just a string\n", "42\n", ""])
def test_document_that_is_not_a_mapping_is_rejected(text):
    problem = only_problem_of_text("list.yaml", text)
    assert problem.file == "list.yaml"
    assert problem.path == ""
    assert "mapping" in problem.reason


def test_missing_required_fields_are_each_reported():
    problems = problems_of({"empty.yaml": as_yaml({"description": "nothing else"})})
    assert {p.path for p in problems} == {"id", "name", "rule"}
    assert all("required" in p.reason.lower() for p in problems)


# --- unknown keys -------------------------------------------------------------------


def test_unknown_top_level_key_is_rejected():
    problem = only_problem(definition({"geo": {"city": "Paris"}}, owner="marketing"))
    assert problem.path == "owner"
    assert "not permitted" in problem.reason


def test_unknown_key_inside_a_leaf_is_rejected_at_its_path():
    rule = {"all": [{"geo": {"city": "Paris"}}, {"visits": {"min": 2, "colour": "red"}}]}
    problem = only_problem(definition(rule))
    assert problem.path == "rule.all[1].visits.colour"
    assert "not permitted" in problem.reason


@pytest.mark.parametrize("leaf", ["event", "geo", "device", "first_seen"])
def test_unknown_key_in_any_leaf_is_rejected(leaf):
    valid: dict[str, dict[str, object]] = {
        "event": {},
        "geo": {"city": "x"},
        "device": {"type": "mobile"},
        "first_seen": {"within_days": 1},
    }
    problem = only_problem(definition({leaf: {**valid[leaf], "typo": 1}}))
    assert problem.path == f"rule.{leaf}.typo"


# --- ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("segment_id", ["Holiday", "holiday_2024", "holiday 2024", "a" * 65, "", "holiday\n", "été"])
def test_ids_outside_the_contract_pattern_are_rejected(segment_id):
    problem = only_problem(definition({"geo": {"city": "Paris"}}, id=segment_id))
    assert problem.path == "id"
    assert "pattern" in problem.reason


@pytest.mark.parametrize("segment_id", ["a", "a" * 64, "0-holiday-2024-"])
def test_ids_of_the_contract_pattern_are_accepted(segment_id):
    [segment] = load_definitions({"a.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, id=segment_id))})
    assert segment.id == segment_id


def test_duplicate_ids_across_files_are_rejected_naming_both_files():
    # GIVEN two files, YAML and JSON, defining the same id
    files = {
        "first.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, id="shared")),
        "second.json": json.dumps(definition({"geo": {"city": "Rome"}}, id="shared")),
    }

    # WHEN they are loaded together
    problems = problems_of(files)

    # THEN one problem at `id` names the duplicate and, between file and reason, both files
    assert len(problems) == 1
    [problem] = problems
    assert problem.path == "id"
    assert "duplicate" in problem.reason
    assert "shared" in problem.reason
    assert {problem.file, *(f for f in files if f in problem.reason)} == set(files)


# --- combinators --------------------------------------------------------------------


@pytest.mark.parametrize("combinator", ["all", "any"])
def test_empty_combinator_is_rejected(combinator):
    problem = only_problem(definition({combinator: []}))
    assert problem.path == f"rule.{combinator}"
    assert "at least 1" in problem.reason


def test_empty_combinator_deep_inside_is_rejected_at_its_path():
    rule = {"all": [{"geo": {"city": "x"}}, {"not": {"any": []}}]}
    problem = only_problem(definition(rule))
    assert problem.path == "rule.all[1].not.any"


# --- rule kinds ---------------------------------------------------------------------


def test_unknown_rule_kind_is_rejected():
    problem = only_problem(definition({"all": [{"geo": {"city": "x"}}, {"segment": {"id": "other"}}]}))
    assert problem.path == "rule.all[1]"
    assert "event" in problem.reason and "visits" in problem.reason  # it lists the kinds there are


def test_rule_with_two_kinds_at_once_is_rejected():
    problem = only_problem(definition({"geo": {"city": "x"}, "device": {"type": "mobile"}}))
    assert problem.path == "rule"
    assert "exactly one key" in problem.reason


def test_rule_that_is_not_an_object_is_rejected():
    problem = only_problem(definition({"any": [{"geo": {"city": "x"}}, "event"]}))
    assert problem.path == "rule.any[1]"


# --- leaves -------------------------------------------------------------------------


def test_bad_regex_is_rejected_at_its_path():
    problem = only_problem(definition({"not": {"event": {"url_regex": "/order/(\\d+"}}}))
    assert problem.path == "rule.not.event.url_regex"
    assert "regular expression" in problem.reason


@pytest.mark.parametrize("days", [0, -1, -0.5])
@pytest.mark.parametrize(
    ("kind", "spec"),
    [("event", {"name": "page_view"}), ("visits", {"min": 2}), ("first_seen", {}), ("last_seen", {})],
)
def test_zero_or_negative_windows_are_rejected(kind, spec, days):
    problem = only_problem(definition({kind: {**spec, "within_days": days}}))
    assert problem.path == f"rule.{kind}.within_days"
    assert "greater than 0" in problem.reason


def test_visits_min_above_max_is_rejected():
    rule = {"all": [{"geo": {"city": "London"}}, {"visits": {"min": 3, "max": 1}}]}
    problem = only_problem(definition(rule))
    assert problem.path == "rule.all[1].visits"
    assert "min (3) is greater than max (1)" in problem.reason


def test_event_min_count_above_max_count_is_rejected():
    problem = only_problem(definition({"any": [{"event": {"min_count": 5, "max_count": 2}}]}))
    assert problem.path == "rule.any[0].event"
    assert "min_count" in problem.reason and "max_count" in problem.reason


def test_negative_counts_are_rejected():
    problem = only_problem(definition({"event": {"max_count": -1}}))
    assert problem.path == "rule.event.max_count"


def test_trait_without_a_condition_is_rejected():
    problem = only_problem(definition({"trait": {"name": "tier"}}))
    assert problem.path == "rule.trait"
    assert "exactly one condition" in problem.reason


@pytest.mark.parametrize(
    "conditions",
    [{"equals": "gold", "in": ["gold"]}, {"equals": 1, "gte": 0}, {"exists": True, "lte": 5}, {"in": [1], "exists": 1}],
)
def test_trait_with_two_conditions_is_rejected(conditions):
    problem = only_problem(definition({"all": [{"trait": {"name": "tier", **conditions}}]}))
    assert problem.path == "rule.all[0].trait"
    assert "exactly one condition" in problem.reason


def test_trait_range_of_gte_and_lte_is_one_condition():
    [segment] = load_definitions({"a.yaml": as_yaml(definition({"trait": {"name": "age", "gte": 18, "lte": 34}}))})
    assert segment.rule.trait.gte == 18  # type: ignore[union-attr]


def test_geo_without_any_place_is_rejected():
    problem = only_problem(definition({"all": [{"geo": {}}]}))
    assert problem.path == "rule.all[0].geo"


def test_unknown_device_type_is_rejected():
    problem = only_problem(definition({"device": {"type": "smart-tv"}}))
    assert problem.path == "rule.device.type"
    assert "desktop" in problem.reason


def test_event_name_outside_the_contract_pattern_is_rejected():
    problem = only_problem(definition({"event": {"name": "Page View"}}))
    assert problem.path == "rule.event.name"


def test_prop_value_that_is_not_a_scalar_is_one_problem_at_the_prop():
    # GIVEN a list where a prop value (string, number or boolean) belongs
    problem = only_problem(definition({"event": {"props": {"plan": ["pro", "team"]}}}))

    # THEN it is reported once, at the path of that prop in the file
    assert problem.path == "rule.event.props.plan"


def test_prop_name_outside_the_contract_pattern_is_reported_at_the_prop():
    problem = only_problem(definition({"event": {"props": {"Plan": "pro"}}}))
    assert problem.path == "rule.event.props.Plan"


def test_trait_equals_that_is_not_a_scalar_is_one_problem_at_equals():
    problem = only_problem(definition({"trait": {"name": "tier", "equals": {"gold": True}}}))
    assert problem.path == "rule.trait.equals"


# --- destinations -------------------------------------------------------------------


def test_unknown_destination_is_rejected_when_partners_are_known():
    files = {"a.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, destinations=["demo-dsp", "ghost-dsp"]))}
    problems = problems_of(files, known_partners={"demo-dsp"})
    assert len(problems) == 1
    assert (problems[0].file, problems[0].path) == ("a.yaml", "destinations[1]")
    assert "ghost-dsp" in problems[0].reason


# --- all problems at once -----------------------------------------------------------


def test_every_problem_of_every_file_is_reported_at_once():
    # GIVEN several files with several problems each
    files = {
        "a.yaml": as_yaml(
            definition(
                {"all": [{"event": {"url_regex": "("}}, {"any": []}, {"visits": {"within_days": 0}}]},
                id="Bad Id",
            )
        ),
        "b.yaml": "id: [\n",
        "c.json": json.dumps(definition({"trait": {"name": "tier"}}, id="ok-id")),
        "d.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, id="fine")),
    }

    # WHEN they are loaded together
    problems = problems_of(files)

    # THEN every problem is reported, each with its file and path
    assert {(p.file, p.path) for p in problems} == {
        ("a.yaml", "id"),
        ("a.yaml", "rule.all[0].event.url_regex"),
        ("a.yaml", "rule.all[1].any"),
        ("a.yaml", "rule.all[2].visits.within_days"),
        ("b.yaml", ""),
        ("c.json", "rule.trait"),
    }


def test_duplicate_id_and_unknown_destination_of_one_file_are_both_reported():
    # GIVEN a second file that repeats an id AND names an unknown partner
    files = {
        "a.yaml": as_yaml(definition({"geo": {"city": "Paris"}}, id="shared")),
        "b.yaml": as_yaml(definition({"geo": {"city": "Rome"}}, id="shared", destinations=["ghost-dsp"])),
    }

    # WHEN they are loaded with the known partners
    problems = problems_of(files, known_partners={"demo-dsp"})

    # THEN both of its problems are reported, not only the first
    assert {(p.file, p.path) for p in problems} == {("b.yaml", "id"), ("b.yaml", "destinations[0]")}


def test_errors_message_names_file_path_and_reason():
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions({"segments/x.yaml": as_yaml(definition({"any": []}))})
    message = str(caught.value)
    assert "segments/x.yaml" in message
    assert "rule.any" in message
    assert "at least 1" in message
