"""Downstream commands of a privacy request: planning, answers, re-sends, escalation.

A command tells one registered consumer (`processors.consumers`) what to do for one
subject, for the data of one controller. Its id derives from those five values, so a plan
made twice (a restart, a second worker) names the same commands and the ledger stores each
once. A re-send keeps the id and counts the attempt: a consumer treats a repeated command
as the same one and answers it again.

Answers: done, not_found, retained_under_hold (kept under a legal hold, GDPR Art.
17(3)(e)), failed (a reason is required). The first three are final; failed is not, a
re-send may still succeed. Silence past `answer_by` makes a command overdue: it is sent
again while the consumer has attempts left (`commands_to_resend`), and escalated when
they are spent or when the consumer failed (`commands_to_escalate`). Failed commands are
never re-sent automatically: a person decides (`resend`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from processors.consumers import Command, ConsumerRegistry
from processors.privacy import (
    COMMAND_FOR,
    REASON_LIMIT,
    PrivacyRequest,
    PrivacyRequestError,
    RequestState,
    Step,
    TransitionError,
    _aware,
    _choice,
    _expect,
    _text,
    executable_controllers,
)


class Outcome(StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"
    RETAINED_UNDER_HOLD = "retained_under_hold"
    FAILED = "failed"


FINAL_OUTCOMES = frozenset({Outcome.DONE, Outcome.NOT_FOUND, Outcome.RETAINED_UNDER_HOLD})


class AnswerConflictError(TransitionError):
    """A consumer's answer contradicts the final answer it already gave."""


@dataclass(frozen=True, slots=True)
class ConsumerCommand:
    """One command to one consumer, with its latest attempt and answer."""

    command_id: str
    request_id: str
    consumer: str
    command: Command
    subject_pseudonym: str
    controller: str
    issued_at: datetime
    answer_by: datetime
    attempt: int = 1
    outcome: Outcome | None = None
    reason: str | None = None
    answered_at: datetime | None = None
    escalated_at: datetime | None = None

    @property
    def settled(self) -> bool:
        """Answered with a final outcome: nothing more is expected of the consumer."""
        return self.outcome in FINAL_OUTCOMES


def command_id_for(
    request_id: str, consumer: str, command: Command, controller: str, subject: str
) -> str:
    """A stable id: the same request, consumer, command, controller and subject give it."""
    message = "\x1f".join((request_id, consumer, command.value, controller, subject))
    return "c-" + hashlib.sha256(message.encode()).hexdigest()[:32]


def plan_commands(
    request: PrivacyRequest, registry: ConsumerRegistry, issued: Collection[str],
    now: datetime,
) -> tuple[ConsumerCommand, ...]:  # fmt: skip
    """The commands to issue now that are not in `issued` (command ids): for each subject,
    each controller whose data may be acted on, and each consumer receiving that command.

    Refused outside awaiting_controller (COMNEXIO's own part may go out meanwhile) and
    executing: an unverified, unresolved or closed request sends nothing.
    """
    _expect(request, "plan commands", RequestState.AWAITING_CONTROLLER, RequestState.EXECUTING)
    now = _aware(now)
    command = COMMAND_FOR.get(request.request_type)
    if command is None:
        return ()
    planned = (
        ConsumerCommand(
            command_id_for(request.request_id, consumer.name, command, controller, subject),
            request.request_id, consumer.name, command, subject, controller,
            issued_at=now, answer_by=now + consumer.answer_within,
        )
        for controller in sorted(executable_controllers(request))
        for consumer in registry.receiving(command, controller)
        for subject in request.subjects
    )  # fmt: skip
    return tuple(c for c in planned if c.command_id not in issued)


def commands_issued(
    request: PrivacyRequest, registry: ConsumerRegistry, commands: Iterable[ConsumerCommand],
    now: datetime,
) -> Step:  # fmt: skip
    """executing -> awaiting_acks, once every command the request needs has been issued."""
    _expect(request, "close execution", RequestState.EXECUTING)
    mine = _of(request, commands)
    missing = plan_commands(request, registry, {c.command_id for c in mine}, now)
    if missing:
        raise TransitionError(
            f"request {request.request_id}: {len(missing)} command(s) not issued yet"
        )
    now = _aware(now)
    waiting = replace(request, state=RequestState.AWAITING_ACKS, updated_at=now)
    return Step(request, waiting, "commands_issued", {"commands": len(mine)})


def record_answer(
    command: ConsumerCommand, outcome: Outcome | str, reason: str | None, now: datetime
) -> ConsumerCommand:
    """The command with the consumer's answer. A repeated final answer changes nothing;
    a different one after a final answer is refused; a failure needs a reason."""
    answer = _choice(Outcome, outcome, "outcome")
    now = _aware(now)
    if answer == Outcome.FAILED and reason is None:
        raise PrivacyRequestError(f"command {command.command_id}: a failure must give its reason")
    checked = None if reason is None else _text(reason, "reason", REASON_LIMIT)
    if command.settled:
        if command.outcome == answer:
            return command
        raise AnswerConflictError(
            f"command {command.command_id}: already answered {command.outcome}, not {answer}"
        )
    return replace(command, outcome=answer, reason=checked, answered_at=now)


def consumer_overdue(command: ConsumerCommand, now: datetime) -> bool:
    """No answer yet, and the answer deadline of the last attempt has passed."""
    return command.outcome is None and _aware(now) > command.answer_by


def commands_to_resend(
    commands: Iterable[ConsumerCommand], registry: ConsumerRegistry, now: datetime
) -> tuple[ConsumerCommand, ...]:
    """Overdue commands whose consumer still has attempts left: send them again."""
    return tuple(
        c for c in commands
        if consumer_overdue(c, now) and c.attempt < _max_attempts(registry, c.consumer)
    )  # fmt: skip


def resend(command: ConsumerCommand, registry: ConsumerRegistry, now: datetime) -> ConsumerCommand:
    """The next attempt of an unanswered or failed command, with a new answer deadline."""
    if command.settled:
        raise TransitionError(f"command {command.command_id}: already answered")
    if command.attempt >= _max_attempts(registry, command.consumer):
        raise TransitionError(f"command {command.command_id}: no attempts left")
    now = _aware(now)
    within = registry.consumer(command.consumer).answer_within
    return replace(command, attempt=command.attempt + 1, issued_at=now, answer_by=now + within,
                   outcome=None, reason=None, answered_at=None, escalated_at=None)  # fmt: skip


def commands_to_escalate(
    commands: Iterable[ConsumerCommand], registry: ConsumerRegistry, now: datetime
) -> tuple[ConsumerCommand, ...]:
    """Not yet escalated, and failed, or overdue with no attempt left (a consumer no
    longer registered has none)."""
    return tuple(
        c for c in commands
        if c.escalated_at is None
        and (c.outcome == Outcome.FAILED
             or (consumer_overdue(c, now)
                 and c.attempt >= _max_attempts(registry, c.consumer)))
    )  # fmt: skip


def escalate_command(command: ConsumerCommand, now: datetime) -> ConsumerCommand:
    """The command, marked as escalated at `now` (once)."""
    if command.escalated_at is not None:
        raise TransitionError(f"command {command.command_id}: already escalated")
    return replace(command, escalated_at=_aware(now))


def ready_to_complete(request: PrivacyRequest, commands: Iterable[ConsumerCommand]) -> bool:
    """Awaiting acks and every command of the request has a final answer."""
    return request.state == RequestState.AWAITING_ACKS and all(
        c.settled for c in _of(request, commands)
    )


def complete(request: PrivacyRequest, commands: Iterable[ConsumerCommand], now: datetime) -> Step:
    """awaiting_acks -> completed, when every consumer gave a final answer."""
    _expect(request, "complete", RequestState.AWAITING_ACKS)
    mine = _of(request, commands)
    pending = [c for c in mine if not c.settled]
    if pending:
        raise TransitionError(
            f"request {request.request_id}: {len(pending)} command(s) without a final answer"
        )
    now = _aware(now)
    done = replace(request, state=RequestState.COMPLETED, closed_at=now, updated_at=now)
    counts = Counter(str(c.outcome) for c in mine)
    return Step(request, done, "completed", {o.value: counts[o.value] for o in FINAL_OUTCOMES})


def _of(request: PrivacyRequest, commands: Iterable[ConsumerCommand]) -> list[ConsumerCommand]:
    return [c for c in commands if c.request_id == request.request_id]


def _max_attempts(registry: ConsumerRegistry, name: str) -> int:
    consumer = registry.consumers.get(name)
    return 0 if consumer is None else consumer.max_attempts
