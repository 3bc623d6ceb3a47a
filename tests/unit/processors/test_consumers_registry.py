"""The declared registry of downstream consumers (infra/consumers.yaml) and its parser."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml

from processors.consumers import (
    Command,
    ConsumerRegistry,
    RegistryError,
    parse_answer_deadline,
    parse_registry,
)
from streams.settings import PROJECT_ROOT

DOCUMENT = yaml.safe_load((PROJECT_ROOT / "infra" / "consumers.yaml").read_text())
REGISTRY = parse_registry(DOCUMENT)


def test_the_shipped_registry_is_valid_and_covers_every_command() -> None:
    assert isinstance(REGISTRY, ConsumerRegistry)
    assert REGISTRY.version == DOCUMENT["version"]
    assert set(REGISTRY.consumers) == {"crm", "recording_store", "coaching_tool", "survey_tool",
                                       "reporting_warehouse", "ores_systems"}  # fmt: skip
    for command in Command:
        assert REGISTRY.receiving(command, "ORES"), f"nobody receives {command} for ORES"
    store = REGISTRY.consumer("recording_store")
    assert store.answer_within == timedelta(days=2)
    assert store.max_attempts == 3
    assert store.controllers == {"ORES", "COMNEXIO"}


def test_a_command_goes_only_to_consumers_holding_that_controllers_data() -> None:
    erase_comnexio = [c.name for c in REGISTRY.receiving(Command.ERASE, "COMNEXIO")]
    assert erase_comnexio == ["coaching_tool", "recording_store", "reporting_warehouse"]
    suppress_ores = [c.name for c in REGISTRY.receiving(Command.SUPPRESS, "ORES")]
    assert suppress_ores == ["ores_systems", "survey_tool"]
    assert REGISTRY.receiving(Command.SUPPRESS, "COMNEXIO") == ()
    with pytest.raises(KeyError, match="not registered"):
        REGISTRY.consumer("fax_machine")


def _broken(path: list[Any], value: Any) -> Any:
    document = copy.deepcopy(DOCUMENT)
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


_DELETE = object()
CRM = ["consumers", "crm"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], "  ", "consumers.version"),
        (["version"], _DELETE, "consumers.version"),
        (["extra"], 1, "unknown keys"),
        (["consumers"], {}, "non-empty mapping"),
        (["consumers", "CRM"], {}, "snake_case"),
        ([*CRM, "colour"], "blue", "consumers.consumers.crm: unknown keys"),
        ([*CRM, "controllers"], ["ORES", "ACME"], "crm.controllers"),
        ([*CRM, "controllers"], [], "crm.controllers"),
        ([*CRM, "commands"], ["erase", "shred"], "crm.commands: each must be one of"),
        ([*CRM, "commands"], ["erase", "erase"], "crm.commands: duplicate"),
        ([*CRM, "commands"], "erase", "crm.commands"),
        ([*CRM, "answer_within"], "7", "crm.answer_within"),
        ([*CRM, "answer_within"], "P0D", "crm.answer_within"),
        ([*CRM, "answer_within"], "PT12H", "crm.answer_within"),
        ([*CRM, "answer_within"], _DELETE, "crm.answer_within"),
        ([*CRM, "max_attempts"], 0, "crm.max_attempts"),
        ([*CRM, "max_attempts"], True, "crm.max_attempts"),
        ([*CRM, "max_attempts"], 11, "crm.max_attempts"),
        ([*CRM, "description"], 3, "crm.description"),
        (CRM, "all", "crm: expected a mapping"),
    ],
)
def test_a_broken_registry_is_refused_with_the_path_of_the_problem(
    path: list[Any], value: Any, message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_registry(_broken(path, value))


def test_a_silent_consumer_must_be_escalated_inside_the_shortest_month() -> None:
    assert parse_registry(_broken([*CRM, "answer_within"], "P7D")).consumer("crm").max_attempts == 3
    slow = _broken([*CRM, "answer_within"], "P10D")
    with pytest.raises(RegistryError, match="exceeds 28 days"):
        parse_registry(slow)


@pytest.mark.parametrize(("text", "days"), [("P1D", 1), ("P7D", 7), ("P31D", 31)])
def test_answer_deadlines_are_whole_days(text: str, days: int) -> None:
    assert parse_answer_deadline(text) == timedelta(days=days)


@pytest.mark.parametrize("text", ["P32D", "P1W", "p7d", "P7D ", 7, None, "P-1D"])
def test_other_answer_deadlines_are_refused(text: Any) -> None:
    with pytest.raises(RegistryError, match="P1D to P31D"):
        parse_answer_deadline(text)


def test_not_a_mapping() -> None:
    with pytest.raises(RegistryError, match="expected a mapping"):
        parse_registry(["crm"])
