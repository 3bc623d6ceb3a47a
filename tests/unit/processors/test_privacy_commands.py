"""Commands to downstream consumers: plan, answers, re-sends and escalation on a moved clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from processors.consumers import Command, parse_registry
from processors.privacy import (
    PrivacyRequest,
    PrivacyRequestError,
    TransitionError,
    escalate,
    instruct,
    is_overdue,
    resolve,
    route,
    submit,
)
from processors.privacy_commands import (
    AnswerConflictError,
    ConsumerCommand,
    Outcome,
    command_id_for,
    commands_issued,
    commands_to_escalate,
    commands_to_resend,
    complete,
    consumer_overdue,
    escalate_command,
    plan_commands,
    ready_to_complete,
    record_answer,
    resend,
)
from streams.settings import PROJECT_ROOT

REGISTRY = parse_registry(yaml.safe_load((PROJECT_ROOT / "infra" / "consumers.yaml").read_text()))
T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
ALICE, BOB = "s-" + "a1" * 16, "s-" + "b2" * 16


def _request(
    kind: str = "erasure",
    controllers: Sequence[str] = ("ORES", "COMNEXIO"),
    purpose: str | None = None,
    subjects: Sequence[str] = (ALICE,),
) -> PrivacyRequest:
    request = submit("dsr-7", kind, T0, "dpo", T0, verified_by="id_card_copy", purpose=purpose)
    return route(resolve(request.request, subjects, controllers, T0).request, (), T0).request


def _executing(
    kind: str = "erasure", purpose: str | None = None, subjects: Sequence[str] = (ALICE,)
) -> PrivacyRequest:
    request = _request(kind, purpose=purpose, subjects=subjects)
    return instruct(request, "execute", None, "ores", T0).request


def _scopes(commands: Sequence[ConsumerCommand]) -> set[tuple[str, str, str]]:
    return {(c.consumer, c.controller, c.command) for c in commands}


def test_an_executed_erasure_goes_to_every_consumer_for_each_controller_and_subject() -> None:
    request = _executing(subjects=(ALICE, BOB))
    commands = plan_commands(request, REGISTRY, set(), T0)
    assert _scopes(commands) == {
        (name, controller, "erase")
        for controller in ("ORES", "COMNEXIO")
        for name in {c.name for c in REGISTRY.receiving(Command.ERASE, controller)}
    }
    assert len(commands) == 2 * len(_scopes(commands))
    assert {c.subject_pseudonym for c in commands} == {ALICE, BOB}
    store = next(c for c in commands if c.consumer == "recording_store")
    assert (store.issued_at, store.answer_by, store.attempt) == (T0, T0 + timedelta(days=2), 1)
    expected_id = command_id_for(
        "dsr-7", "recording_store", Command.ERASE, store.controller, store.subject_pseudonym
    )
    assert store.command_id == expected_id
    again = plan_commands(request, REGISTRY, set(), T0 + timedelta(hours=1))
    assert [c.command_id for c in again] == [c.command_id for c in commands], "stable ids"
    assert plan_commands(request, REGISTRY, {c.command_id for c in commands}, T0) == ()


def test_while_ores_decides_only_comnexios_own_part_goes_out() -> None:
    waiting = _request()
    assert waiting.state == "awaiting_controller"
    early = plan_commands(waiting, REGISTRY, set(), T0)
    assert {c.controller for c in early} == {"COMNEXIO"}
    assert {c.consumer for c in early} == {"coaching_tool", "recording_store",
                                           "reporting_warehouse"}  # fmt: skip
    refused = instruct(waiting, "refuse", "dispute pending", "ores", T0).request
    issued = {c.command_id for c in early}
    assert plan_commands(refused, REGISTRY, issued, T0) == (), "nothing of ORES after a refusal"
    executed = instruct(waiting, "execute", None, "ores", T0).request
    assert {c.controller for c in plan_commands(executed, REGISTRY, issued, T0)} == {"ORES"}


def test_unverified_unresolved_or_closed_requests_plan_nothing() -> None:
    unverified = submit("dsr-8", "erasure", T0, "dpo", T0).request
    refused = instruct(_request(controllers=("ORES",)), "refuse", "no", "ores", T0).request
    for request in (unverified, refused):
        with pytest.raises(TransitionError, match="cannot plan commands"):
            plan_commands(request, REGISTRY, set(), T0)


@pytest.mark.parametrize(
    ("kind", "purpose", "command"),
    [("restriction", None, "restrict"), ("lift_restriction", None, "lift_restriction"),
     ("rectification", None, "rectify"), ("objection", "coaching", "stop_purpose"),
     ("consent_withdrawal", "satisfaction_survey", "suppress")],
)  # fmt: skip
def test_each_request_type_sends_its_command(kind: str, purpose: str, command: str) -> None:
    commands = plan_commands(_executing(kind=kind, purpose=purpose), REGISTRY, set(), T0)
    assert commands
    assert {c.command for c in commands} == {command}


def test_access_sends_no_command_and_completes_after_its_export() -> None:
    request = _executing(kind="access")
    assert plan_commands(request, REGISTRY, set(), T0) == ()
    waiting = commands_issued(request, REGISTRY, [], T0).request
    assert ready_to_complete(waiting, [])
    assert complete(waiting, [], T0).request.state == "completed"


def test_execution_ends_only_when_every_command_was_issued() -> None:
    request = _executing()
    commands = plan_commands(request, REGISTRY, set(), T0)
    with pytest.raises(TransitionError, match="not issued yet"):
        commands_issued(request, REGISTRY, commands[1:], T0)
    step = commands_issued(request, REGISTRY, commands, T0)
    assert (step.previous_state, step.request.state) == ("executing", "awaiting_acks")
    assert dict(step.details) == {"commands": len(commands)}


def test_answers_are_recorded_once_and_a_failure_needs_a_reason() -> None:
    command = plan_commands(_executing(), REGISTRY, set(), T0)[0]
    later = T0 + timedelta(hours=3)
    with pytest.raises(PrivacyRequestError, match="reason"):
        record_answer(command, "failed", None, later)
    with pytest.raises(PrivacyRequestError, match="outcome must be one of"):
        record_answer(command, "shrug", None, later)
    failed = record_answer(command, Outcome.FAILED, "disk full", later)
    assert (failed.outcome, failed.reason, failed.answered_at, failed.settled) == (
        "failed", "disk full", later, False)  # fmt: skip
    done = record_answer(failed, "done", None, later + timedelta(hours=1))
    assert (done.outcome, done.reason, done.settled) == ("done", None, True)
    assert record_answer(done, "done", None, later + timedelta(days=1)) == done, "a duplicate ack"
    with pytest.raises(AnswerConflictError) as caught:
        record_answer(done, "not_found", None, later)
    assert command.command_id in str(caught.value)
    kept = record_answer(command, "retained_under_hold", "hold h-signal-42", later)
    assert (kept.outcome, kept.settled) == ("retained_under_hold", True)


def test_silence_is_resent_until_the_attempts_are_spent_then_escalated() -> None:
    command = next(c for c in plan_commands(_executing(), REGISTRY, set(), T0)
                   if c.consumer == "reporting_warehouse")  # fmt: skip
    assert (command.answer_by, REGISTRY.consumer("reporting_warehouse").max_attempts) == (
        T0 + timedelta(days=5), 2)  # fmt: skip
    assert not consumer_overdue(command, command.answer_by)
    assert commands_to_resend([command], REGISTRY, command.answer_by) == ()
    late = command.answer_by + timedelta(seconds=1)
    assert consumer_overdue(command, late)
    assert commands_to_resend([command], REGISTRY, late) == (command,)
    assert commands_to_escalate([command], REGISTRY, late) == ()
    second = resend(command, REGISTRY, late)
    assert (second.command_id, second.attempt, second.issued_at) == (command.command_id, 2, late)
    assert second.answer_by == late + timedelta(days=5)
    later = second.answer_by + timedelta(seconds=1)
    assert commands_to_resend([second], REGISTRY, later) == ()
    assert commands_to_escalate([second], REGISTRY, later) == (second,)
    with pytest.raises(TransitionError, match="no attempts left"):
        resend(second, REGISTRY, later)
    escalated = escalate_command(second, later)
    assert escalated.escalated_at == later
    assert commands_to_escalate([escalated], REGISTRY, later + timedelta(days=1)) == ()
    with pytest.raises(TransitionError, match="already escalated"):
        escalate_command(escalated, later)


def test_a_failure_is_escalated_not_resent_automatically() -> None:
    command = plan_commands(_executing(), REGISTRY, set(), T0)[0]
    failed = record_answer(command, "failed", "timeout", T0 + timedelta(hours=1))
    late = command.answer_by + timedelta(days=1)
    assert commands_to_resend([failed], REGISTRY, late) == ()
    assert commands_to_escalate([failed], REGISTRY, T0 + timedelta(hours=1)) == (failed,)
    retried = resend(escalate_command(failed, late), REGISTRY, late)
    assert (retried.outcome, retried.reason, retried.escalated_at, retried.attempt) == (
        None, None, None, 2)  # fmt: skip
    with pytest.raises(TransitionError, match="already answered"):
        resend(record_answer(retried, "done", None, late), REGISTRY, late)


def test_a_consumer_no_longer_registered_is_escalated_when_silent() -> None:
    command = replace(plan_commands(_executing(), REGISTRY, set(), T0)[0], consumer="legacy_crm")
    late = command.answer_by + timedelta(seconds=1)
    assert commands_to_resend([command], REGISTRY, late) == ()
    assert commands_to_escalate([command], REGISTRY, late) == (command,)


def test_completion_waits_for_a_final_answer_from_every_consumer() -> None:
    request = _executing()
    commands = list(plan_commands(request, REGISTRY, set(), T0))
    waiting = commands_issued(request, REGISTRY, commands, T0).request
    answered = [record_answer(c, "done", None, T0) for c in commands[:-1]]
    failed = record_answer(commands[-1], "failed", "unreachable", T0)
    assert not ready_to_complete(waiting, [*answered, commands[-1]])
    with pytest.raises(TransitionError, match="1 command"):
        complete(waiting, [*answered, failed], T0)
    last = record_answer(failed, "retained_under_hold", None, T0 + timedelta(hours=1))
    other_request = replace(commands[0], request_id="dsr-other")
    assert ready_to_complete(waiting, [*answered, last, other_request])
    step = complete(waiting, [*answered, last], T0 + timedelta(hours=2))
    assert (step.before, step.previous_state) == (waiting, "awaiting_acks")
    assert (step.request.state, step.request.closed_at) == ("completed", T0 + timedelta(hours=2))
    assert dict(step.details) == {"done": len(answered), "not_found": 0,
                                  "retained_under_hold": 1}  # fmt: skip


def test_a_consumer_that_never_answers_makes_the_request_overdue_and_escalated() -> None:
    request = _executing()
    commands = plan_commands(request, REGISTRY, set(), T0)
    waiting = commands_issued(request, REGISTRY, commands, T0).request
    answered = [record_answer(c, "done", None, T0) for c in commands if c.consumer != "crm"]
    silent = [c for c in commands if c.consumer == "crm"]
    now = T0
    for _ in range(REGISTRY.consumer("crm").max_attempts - 1):
        now = max(c.answer_by for c in silent) + timedelta(seconds=1)
        assert set(commands_to_resend(silent, REGISTRY, now)) == set(silent)
        silent = [resend(c, REGISTRY, now) for c in silent]
    now = max(c.answer_by for c in silent) + timedelta(seconds=1)
    assert set(commands_to_escalate([*answered, *silent], REGISTRY, now)) == set(silent)
    assert not ready_to_complete(waiting, [*answered, *silent])
    assert not is_overdue(waiting, now), "15 days in: the consumer is late, not the request"
    deadline_passed = waiting.deadline + timedelta(seconds=1)
    assert is_overdue(waiting, deadline_passed)
    assert escalate(waiting, deadline_passed).request.escalated_at == deadline_passed
