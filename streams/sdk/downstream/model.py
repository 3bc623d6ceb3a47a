"""The values of the downstream SDK: a received command, an answer, serving statistics,
and the registry of consumers (`infra/consumers.yaml`).

Kept apart from the Kafka plumbing so they can be used and tested without a broker;
`streams.sdk.downstream.client` re-exports the public names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from processors.consumers import ConsumerRegistry, parse_registry
from processors.privacy import REASON_LIMIT
from processors.privacy_commands import Outcome
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.infra_files import load_infra_file

OUTCOMES = frozenset(outcome.value for outcome in Outcome)


class DownstreamError(ContactflowError):
    """The SDK cannot go on: unknown consumer, broker unreachable at start, an answer
    refused, a fatal client error (a broker away once serving is waited for)."""


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """One command addressed to this consumer, with where it was read (for the commit)."""

    command_id: str
    request_id: str
    command: str
    consumer: str
    subject_pseudonym: str
    controller: str | None
    purpose: str | None
    issued_at: datetime
    answer_by: datetime
    attempt: int
    held_recordings: tuple[str, ...]
    rectified_kinds: tuple[str, ...]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Answer:
    """What the consumer did; `failed` needs a reason. A reason never holds personal data."""

    outcome: str  # "done" | "not_found" | "retained_under_hold" | "failed"
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        if self.reason is not None and (
            not isinstance(self.reason, str)
            or not self.reason.strip()
            or len(self.reason) > REASON_LIMIT
        ):
            raise ValueError(f"reason must be a non-blank string of 1-{REASON_LIMIT} characters")
        if self.outcome == Outcome.FAILED and self.reason is None:
            raise ValueError("a failed answer must give its reason")


@dataclass
class ServeStats:
    """What one `serve` call did; `answered` counts delivered answers by outcome."""

    received: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    ignored: int = 0
    unreadable: int = 0
    handler_errors: int = 0

    @property
    def answered_total(self) -> int:
        return sum(self.answered.values())


Handler = Callable[[ReceivedCommand], Answer]
ErrorPolicy = Callable[[Exception, ReceivedCommand], Answer]


def answer_failed(error: Exception, command: ReceivedCommand) -> Answer:
    """The default error policy: `failed` with the exception's type name (its message could
    quote personal data, so it is never sent)."""
    return Answer(Outcome.FAILED.value, type(error).__name__)


def command_from_record(
    record: Mapping[str, Any], topic: str, partition: int, offset: int
) -> ReceivedCommand:
    """A decoded DownstreamCommand (v2 shape) and its position as a ReceivedCommand."""
    return ReceivedCommand(
        command_id=record["command_id"], request_id=record["request_id"],
        command=record["command"], consumer=record["consumer"],
        subject_pseudonym=record["subject_pseudonym"], controller=record["controller"],
        purpose=record["purpose"], issued_at=record["issued_at"],
        answer_by=record["answer_by"], attempt=record["attempt"],
        held_recordings=tuple(record["held_recordings"]),
        rectified_kinds=tuple(record["rectified_kinds"]),
        topic=topic, partition=partition, offset=offset,
    )  # fmt: skip


def load_registry(container: Container) -> ConsumerRegistry:
    """The validated `infra/consumers.yaml`; a bad file stops the consumer at start-up."""
    return load_infra_file(container, "consumers.yaml", parse_registry, "consumer registry",
                           DownstreamError)  # fmt: skip
