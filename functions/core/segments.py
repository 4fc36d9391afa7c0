"""Segment definitions: the pydantic models of the rule language and their loading.

A definition is one YAML or JSON document (see DESIGN.md, "Segment definitions").
`load_definitions` parses a set of files and either returns every definition or raises
`DefinitionErrors` naming each problem by file, path inside the file and reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from functions.core.hits import DeviceType, as_text
from functions.core.partners import PARTNER_NAME_PATTERN

if TYPE_CHECKING:
    from functions.core.sources import SourceDefinition

SEGMENT_ID = r"^[a-z0-9-]{1,64}$"
EVENT_NAME = r"^[a-z0-9_]{1,40}$"
RULE_KINDS = ("all", "any", "not", "event", "visits", "geo", "trait", "device", "first_seen", "last_seen")

WithinDays = Annotated[float, Field(gt=0, le=3650, description="window (now - within_days, now] in days")]
Count = Annotated[int, Field(ge=0)]


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError("must be a string, a number or a boolean")


# One check with one message, rather than pydantic's error per member of the union.
Scalar = Annotated[str | int | float | bool, PlainValidator(_scalar)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_bounds(low: int | None, high: int | None, low_name: str, high_name: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{low_name} ({low}) is greater than {high_name} ({high})")


class EventFilter(_Strict):
    name: Annotated[str, Field(pattern=EVENT_NAME)] | None = None
    url_contains: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    url_prefix: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    url_regex: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    ref_contains: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    props: dict[Annotated[str, Field(pattern=EVENT_NAME)], Scalar] | None = None
    min_count: Count | None = None
    max_count: Count | None = None
    within_days: WithinDays | None = None

    @field_validator("url_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> EventFilter:
        _check_bounds(self.min_count, self.max_count, "min_count", "max_count")
        return self

    @property
    def text_props(self) -> dict[str, str]:
        return {key: as_text(value) for key, value in (self.props or {}).items()}


class VisitsFilter(_Strict):
    min: Count | None = None
    max: Count | None = None
    within_days: WithinDays | None = None

    @model_validator(mode="after")
    def _bounds(self) -> VisitsFilter:
        _check_bounds(self.min, self.max, "min", "max")
        return self


class GeoFilter(_Strict):
    country: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    region: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _something(self) -> GeoFilter:
        if self.country is None and self.region is None and self.city is None:
            raise ValueError("geo needs at least one of country, region, city")
        return self


class TraitFilter(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    gte: float | None = None
    lte: float | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> TraitFilter:
        exclusive = [n for n in ("equals", "in_", "exists") if getattr(self, n) is not None]
        ranged = self.gte is not None or self.lte is not None
        if len(exclusive) + (1 if ranged else 0) != 1:
            raise ValueError("trait needs exactly one condition: equals, in, exists, or gte/lte")
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise ValueError(f"gte ({self.gte}) is greater than lte ({self.lte})")
        return self


class DeviceFilter(_Strict):
    type: DeviceType


class SeenFilter(_Strict):
    within_days: WithinDays


class AllRule(_Strict):
    all: Annotated[list[Rule], Field(min_length=1)]


class AnyRule(_Strict):
    any: Annotated[list[Rule], Field(min_length=1)]


class NotRule(_Strict):
    not_: Rule = Field(alias="not")


class EventRule(_Strict):
    event: EventFilter


class VisitsRule(_Strict):
    visits: VisitsFilter


class GeoRule(_Strict):
    geo: GeoFilter


class TraitRule(_Strict):
    trait: TraitFilter


class DeviceRule(_Strict):
    device: DeviceFilter


class FirstSeenRule(_Strict):
    first_seen: SeenFilter


class LastSeenRule(_Strict):
    last_seen: SeenFilter


def _rule_kind(value: Any) -> str | None:
    if isinstance(value, Mapping) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields)).rstrip("_")
    return None


Rule = Annotated[
    Annotated[AllRule, Tag("all")]
    | Annotated[AnyRule, Tag("any")]
    | Annotated[NotRule, Tag("not")]
    | Annotated[EventRule, Tag("event")]
    | Annotated[VisitsRule, Tag("visits")]
    | Annotated[GeoRule, Tag("geo")]
    | Annotated[TraitRule, Tag("trait")]
    | Annotated[DeviceRule, Tag("device")]
    | Annotated[FirstSeenRule, Tag("first_seen")]
    | Annotated[LastSeenRule, Tag("last_seen")],
    Discriminator(
        _rule_kind,
        custom_error_type="invalid_rule",
        custom_error_message="a rule is an object with exactly one key, one of: " + ", ".join(RULE_KINDS),
    ),
]


class SegmentDefinition(_Strict):
    id: Annotated[str, Field(pattern=SEGMENT_ID)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    destinations: list[Annotated[str, Field(pattern=PARTNER_NAME_PATTERN)]] = []
    rule: Rule


for _model in (AllRule, AnyRule, NotRule, SegmentDefinition):
    _model.model_rebuild()


@dataclass(frozen=True)
class DefinitionProblem:
    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.reason}"


class DefinitionErrors(ValueError):
    def __init__(self, problems: list[DefinitionProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def problem_path(loc: tuple[int | str, ...]) -> str:
    """`rule.all[1].visits.min` from a pydantic error location, without union tags."""
    parts: list[str] = []
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        name = str(item).rstrip("_")
        following = str(loc[index + 1]).rstrip("_") if index + 1 < len(loc) else None
        holds_a_rule = index == 0 or isinstance(loc[index - 1], int) or loc[index - 1] in ("rule", "not_", "not")
        if name == "[key]" or (name in RULE_KINDS and following == name and holds_a_rule):
            continue  # the tag of a rule union, or pydantic's marker for a dict key
        parts.append(("." if parts else "") + name)
    return "".join(parts)


def parse_error(error: Exception) -> str:
    """One line naming what is wrong and where (line and column, 1-based)."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        return f"{getattr(error, 'problem', None) or error} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    return str(error).splitlines()[0]


def parse_document(file: str, text: str) -> Any:
    """The YAML or JSON document of a definition file (by its extension)."""
    if file.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def validation_problems(file: str, error: ValidationError) -> list[DefinitionProblem]:
    """Each of pydantic's errors as `file: path: reason`."""
    return [
        DefinitionProblem(file, problem_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in error.errors()
    ]


def parsed_documents(files: Mapping[str, str], problems: list[DefinitionProblem]) -> Iterator[tuple[str, Any]]:
    """(file, document) of each of `files` (name -> text) in name order; a file that is
    not YAML or JSON is added to `problems` instead."""
    for file, text in sorted(files.items()):
        try:
            yield file, parse_document(file, text)
        except Exception as error:  # YAML and JSON parsers raise many kinds
            problems.append(DefinitionProblem(file, "", f"not valid YAML/JSON: {parse_error(error)}"))


def validate_definition(file: str, document: Any) -> tuple[SegmentDefinition | None, list[DefinitionProblem]]:
    if not isinstance(document, Mapping):
        return None, [DefinitionProblem(file, "", "a definition is a mapping with id, name and rule")]
    try:
        return SegmentDefinition.model_validate(document), []
    except ValidationError as error:
        return None, validation_problems(file, error)


def load_definitions(
    files: Mapping[str, str],
    *,
    known_partners: set[str] | None = None,
    sources: Mapping[str, SourceDefinition] | None = None,
) -> list[SegmentDefinition]:
    """Every definition of `files` (name -> text), or DefinitionErrors listing all problems.

    With `sources` (id -> definition: the data sources a stack knows), the data-use
    control too: a trait rule names a known source's declared trait, and a segment reading
    a source's traits names only destinations that source allows."""
    if sources is not None:
        from functions.core.sources import data_use_problems
    problems: list[DefinitionProblem] = []
    definitions: list[SegmentDefinition] = []
    seen: dict[str, str] = {}
    for file, document in parsed_documents(files, problems):
        definition, found = validate_definition(file, document)
        problems.extend(found)
        if definition is None:
            continue
        if known_partners is not None:
            for index, partner in enumerate(definition.destinations):
                if partner not in known_partners:
                    problems.append(DefinitionProblem(file, f"destinations[{index}]", f"unknown partner {partner!r}"))
        if sources is not None:
            problems.extend(data_use_problems(file, definition, sources))
        if definition.id in seen:
            problems.append(
                DefinitionProblem(file, "id", f"duplicate id {definition.id!r}, also in {seen[definition.id]}")
            )
            continue
        seen[definition.id] = file
        definitions.append(definition)
    if problems:
        raise DefinitionErrors(problems)
    return definitions
