"""Data-source definitions: second- and third-party data as code (DESIGN.md, "Second-
and third-party data (imports)").

A source is one YAML or JSON document, `sources/<id>.yaml`, validated as segment
definitions are: `load_sources` returns every definition or raises `DefinitionErrors`
naming each problem by file, path inside the file and reason. `data_use_problems` is the
data-use control: a segment whose rule reads a source's traits may only name the
destinations that source allows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.core.partners import PARTNER_NAME_CHARS, PARTNER_NAME_PATTERN
from functions.core.segments import (
    AllRule,
    AnyRule,
    DefinitionErrors,
    DefinitionProblem,
    NotRule,
    Rule,
    SegmentDefinition,
    TraitRule,
    parsed_documents,
    validation_problems,
)

SOURCE_ID_CHARS = r"[a-z0-9][a-z0-9-]{0,39}"
SOURCE_ID_PATTERN = f"^{SOURCE_ID_CHARS}$"
TRAIT_NAME_PATTERN = r"^[a-z0-9_]{1,40}$"
# `dmp` (our visitor ids) or `partner:<name>` (that partner's ids, resolved through its
# ID sync mappings).
ID_TYPE_PATTERN = f"^(dmp|partner:{PARTNER_NAME_CHARS})$"
DMP_IDS = "dmp"


class TraitType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"


class SourceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=SOURCE_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    kind: Literal["second", "third"]
    id_type: Annotated[str, Field(pattern=ID_TYPE_PATTERN)]
    traits: Annotated[dict[Annotated[str, Field(pattern=TRAIT_NAME_PATTERN)], TraitType], Field(min_length=1)]
    ttl_days: Annotated[int, Field(ge=1, le=3650)]
    allowed_destinations: list[Annotated[str, Field(pattern=PARTNER_NAME_PATTERN)]] = []

    @property
    def partner(self) -> str | None:
        """The partner whose ids the source's files carry; None for our own ids."""
        return None if self.id_type == DMP_IDS else self.id_type.split(":", 1)[1]

    def trait_name(self, trait: str) -> str:
        """The name rules use: `<source>.<trait>`."""
        return f"{self.id}.{trait}"

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def split_trait_name(name: str) -> tuple[str, str] | None:
    """(source, trait) of a rule's `<source>.<trait>`; None when it has no dot."""
    source, dot, trait = name.partition(".")
    return (source, trait) if dot and source and trait else None


def load_sources(files: Mapping[str, str]) -> list[SourceDefinition]:
    """Every source of `files` (name -> text), or DefinitionErrors listing all problems."""
    problems: list[DefinitionProblem] = []
    sources: list[SourceDefinition] = []
    seen: dict[str, str] = {}
    for file, document in parsed_documents(files, problems):
        if not isinstance(document, Mapping):
            problems.append(DefinitionProblem(file, "", "a source is a mapping with id, name, kind, id_type, traits"))
            continue
        try:
            source = SourceDefinition.model_validate(document)
        except ValidationError as error:
            problems.extend(validation_problems(file, error))
            continue
        if source.id in seen:
            problems.append(DefinitionProblem(file, "id", f"duplicate id {source.id!r}, also in {seen[source.id]}"))
            continue
        seen[source.id] = file
        sources.append(source)
    if problems:
        raise DefinitionErrors(problems)
    return sources


def trait_leaves(rule: Rule, path: str = "rule") -> Iterator[tuple[str, str]]:
    """(path inside the definition, trait name) of every `trait` leaf of `rule`."""
    if isinstance(rule, AllRule):
        for index, part in enumerate(rule.all):
            yield from trait_leaves(part, f"{path}.all[{index}]")
    elif isinstance(rule, AnyRule):
        for index, part in enumerate(rule.any):
            yield from trait_leaves(part, f"{path}.any[{index}]")
    elif isinstance(rule, NotRule):
        yield from trait_leaves(rule.not_, f"{path}.not")
    elif isinstance(rule, TraitRule):
        yield f"{path}.trait.name", rule.trait.name


def data_use_problems(
    file: str, definition: SegmentDefinition, sources: Mapping[str, SourceDefinition]
) -> list[DefinitionProblem]:
    """Why `definition` may not use the sources' data as it does: a trait of an unknown
    source or an undeclared trait, and every destination a source it reads does not allow."""
    problems: list[DefinitionProblem] = []
    used: dict[str, str] = {}  # source id -> the first path reading it
    for path, name in trait_leaves(definition.rule):
        parts = split_trait_name(name)
        if parts is None:
            problems.append(DefinitionProblem(file, path, f"a trait is named <source>.<trait>, got {name!r}"))
            continue
        source_id, trait = parts
        source = sources.get(source_id)
        if source is None:
            problems.append(DefinitionProblem(file, path, f"unknown source {source_id!r}"))
        elif trait not in source.traits:
            problems.append(DefinitionProblem(file, path, f"source {source_id!r} declares no trait {trait!r}"))
        else:
            used.setdefault(source_id, path)
    for source_id, path in used.items():
        allowed = sources[source_id].allowed_destinations
        for index, destination in enumerate(definition.destinations):
            if destination not in allowed:
                problems.append(
                    DefinitionProblem(
                        file,
                        f"destinations[{index}]",
                        f"{destination!r} may not receive data of source {source_id!r} (read at {path}); "
                        f"it allows only: {', '.join(allowed) or 'no destination'}",
                    )
                )
    return problems
