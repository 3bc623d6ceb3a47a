"""The registry of downstream consumers: who receives which privacy commands, how fast
each must answer, and how often an unanswered command is sent again.

`parse_registry` validates a registry document (as loaded from `infra/consumers.yaml`)
and refuses a bad one with the path of the problem, like `processors.policy` does for the
policy. A consumer holds data of one or both controllers; a command scoped to a
controller goes only to consumers holding that controller's data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

CONTROLLERS = frozenset({"ORES", "COMNEXIO"})
MAX_ANSWER_DAYS = 31
MAX_ATTEMPTS = 10
DEFAULT_MAX_ATTEMPTS = 3
MAX_SILENCE = timedelta(days=28)
"""answer_within x max_attempts may not exceed this: a consumer that never answers is
escalated inside the shortest one-month deadline (February's) of GDPR Art. 12(3)."""
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DAYS = re.compile(r"P([0-9]{1,3})D")
_CONSUMER_KEYS = frozenset({"description", "controllers", "commands", "answer_within",
                            "max_attempts", "stores_recordings"})  # fmt: skip


class Command(StrEnum):
    """What a consumer is told to do for one subject."""

    ERASE = "erase"
    RESTRICT = "restrict"
    LIFT_RESTRICTION = "lift_restriction"
    RECTIFY = "rectify"
    SUPPRESS = "suppress"  # no further contact for a withdrawn consent (e.g. surveys)
    STOP_PURPOSE = "stop_purpose"  # no further processing for one purpose (objection)


class RegistryError(ValueError):
    """The consumer registry is invalid; the message gives the path of the problem."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """One registered downstream consumer."""

    name: str
    controllers: frozenset[str]
    commands: frozenset[Command]
    answer_within: timedelta
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    stores_recordings: bool = False  # told which recordings a legal hold keeps

    def receives(self, command: Command, controller: str) -> bool:
        return command in self.commands and controller in self.controllers


@dataclass(frozen=True, slots=True)
class ConsumerRegistry:
    version: str
    consumers: Mapping[str, Consumer]

    def receiving(self, command: Command, controller: str) -> tuple[Consumer, ...]:
        """Consumers that get `command` for data of `controller`, in name order."""
        return tuple(
            consumer
            for _, consumer in sorted(self.consumers.items())
            if consumer.receives(command, controller)
        )

    def consumer(self, name: str) -> Consumer:
        """The consumer called `name`; KeyError (naming it) when not registered."""
        try:
            return self.consumers[name]
        except KeyError:
            raise KeyError(f"consumer {name!r} is not registered") from None


def parse_registry(document: Any) -> ConsumerRegistry:
    """Validate a loaded registry document; raise RegistryError naming the first problem."""
    if not isinstance(document, Mapping):
        raise RegistryError("consumers: expected a mapping")
    unknown = set(document) - {"version", "consumers"}
    if unknown:
        raise RegistryError(f"consumers: unknown keys {sorted(map(str, unknown))}")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise RegistryError("consumers.version: a non-empty string is required")
    raw = document.get("consumers")
    if not isinstance(raw, Mapping) or not raw:
        raise RegistryError("consumers.consumers: a non-empty mapping of name to consumer")
    consumers = {}
    for name, body in raw.items():
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise RegistryError(
                "consumers.consumers: names are lower-case snake_case, 1-64 characters"
            )
        consumers[name] = _parse_consumer(name, body)
    return ConsumerRegistry(version.strip(), consumers)


def parse_answer_deadline(value: Any, where: str = "answer_within") -> timedelta:
    """An ISO-8601 duration in whole days, `P<n>D` with 1 <= n <= MAX_ANSWER_DAYS."""
    match = _DAYS.fullmatch(value) if isinstance(value, str) else None
    days = int(match.group(1)) if match else 0
    if not 1 <= days <= MAX_ANSWER_DAYS:
        raise RegistryError(
            f"{where}: an ISO-8601 duration in days is required, P1D to P{MAX_ANSWER_DAYS}D"
        )
    return timedelta(days=days)


def _parse_consumer(name: str, body: Any) -> Consumer:
    where = f"consumers.consumers.{name}"
    if not isinstance(body, Mapping):
        raise RegistryError(f"{where}: expected a mapping")
    unknown = set(body) - _CONSUMER_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise RegistryError(f"{where}.description: a string is required")
    controllers = _strings(body.get("controllers"), f"{where}.controllers")
    if not controllers <= CONTROLLERS:
        raise RegistryError(f"{where}.controllers: each must be one of {sorted(CONTROLLERS)}")
    names = _strings(body.get("commands"), f"{where}.commands")
    allowed = [command.value for command in Command]
    if not names <= set(allowed):
        raise RegistryError(f"{where}.commands: each must be one of {allowed}")
    attempts = body.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        attempts = 0
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise RegistryError(f"{where}.max_attempts: an integer from 1 to {MAX_ATTEMPTS}")
    answer_within = parse_answer_deadline(body.get("answer_within"), f"{where}.answer_within")
    if answer_within * attempts > MAX_SILENCE:
        raise RegistryError(
            f"{where}: answer_within x max_attempts exceeds {MAX_SILENCE.days} days; a silent "
            "consumer must be escalated before the request's one-month deadline"
        )
    stores = body.get("stores_recordings", False)
    if not isinstance(stores, bool):
        raise RegistryError(f"{where}.stores_recordings: true or false")
    return Consumer(
        name=name,
        stores_recordings=stores,
        controllers=controllers,
        commands=frozenset(Command(n) for n in names),
        answer_within=answer_within,
        max_attempts=attempts,
    )


def _strings(raw: Any, where: str) -> frozenset[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        raise RegistryError(f"{where}: a non-empty list of strings is required")
    if len(set(raw)) != len(raw):
        raise RegistryError(f"{where}: duplicate entries")
    return frozenset(raw)
