"""The privacy-request state machine: transitions, deadlines on a moved clock, extensions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.deadlines import NaiveInstantError, add_months, deadline_after
from processors.privacy import (
    Decision,
    DecisionSource,
    PrivacyRequest,
    PrivacyRequestError,
    RequestState,
    RequestType,
    Step,
    TransitionError,
    escalate,
    executable_controllers,
    extend,
    instruct,
    is_overdue,
    reject_unverified,
    resolve,
    route,
    submit,
    verify,
)

BRUSSELS = ZoneInfo("Europe/Brussels")
T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
ALICE, BOB = "s-" + "a1" * 16, "s-" + "b2" * 16
BOTH = ("ORES", "COMNEXIO")
RAW_PHONE, RAW_EMAIL = "+32471123456", "jan.peeters@example.invalid"
_STATE_CHANGES = {"submitted", "verified", "resolved", "routed", "instructed"}


def _new(kind: str = "erasure", purpose: str | None = None, verified: bool = True) -> Step:
    by = "id_card_copy" if verified else None
    return submit("dsr-1", kind, T0, "dpo", T0, verified_by=by, purpose=purpose)


def _resolved(
    kind: str = "erasure", controllers: tuple[str, ...] = BOTH, purpose: str | None = None
) -> PrivacyRequest:
    request = _new(kind, purpose).request
    subjects = (ALICE, BOB) if controllers else ()
    return resolve(request, subjects, controllers, T0 + timedelta(minutes=1)).request


def _routed(
    kind: str = "erasure",
    controllers: tuple[str, ...] = BOTH,
    purpose: str | None = None,
    standing: tuple[RequestType, ...] = (),
) -> Step:
    return route(_resolved(kind, controllers, purpose), standing, T0 + timedelta(minutes=2))


def test_a_verified_submission_is_received_with_its_deadline() -> None:
    step = _new()
    request = step.request
    assert (step.previous_state, step.event, request.state) == (None, "submitted", "received")
    assert (request.verified_at, request.verified_by) == (T0, "id_card_copy")
    assert request.due_at == datetime(2026, 2, 28, 23, 0, tzinfo=UTC) - timedelta(microseconds=1)
    assert request.deadline == request.due_at
    assert request.is_open
    assert dict(step.details) == {"verified": True, "verified_by": "id_card_copy"}


def test_an_unverified_request_executes_nothing_until_verified() -> None:
    step = _new(verified=False)
    request = step.request
    assert request.state == RequestState.IDENTITY_UNVERIFIED
    assert request.due_at == _new().request.due_at, "the clock runs from receipt"
    assert executable_controllers(request) == frozenset()
    later = T0 + timedelta(days=1)
    attempts: list[Callable[[], Step]] = [
        lambda: resolve(request, [ALICE], ["ORES"], later),
        lambda: route(request, (), later),
        lambda: instruct(request, "execute", None, "ores", later),
    ]
    for attempt in attempts:
        with pytest.raises(TransitionError, match="identity_unverified"):
            attempt()
    verified = verify(request, "id_card_copy", later)
    assert (verified.previous_state, verified.event) == ("identity_unverified", "verified")
    assert (verified.request.state, verified.request.verified_at) == ("received", later)
    with pytest.raises(TransitionError):
        verify(verified.request, "id_card_copy", later)


def test_an_unverifiable_request_is_rejected_with_its_reason() -> None:
    request = _new(verified=False).request
    step = reject_unverified(request, "no proof of identity after two reminders", "dpo", T0)
    closed = step.request
    assert (closed.state, closed.decision, closed.decision_source) == (
        "rejected", "refuse", DecisionSource.IDENTITY_NOT_PROVEN)  # fmt: skip
    assert closed.decision_reason == "no proof of identity after two reminders"
    assert closed.closed_at == T0
    assert not closed.is_open
    assert dict(step.details) == {"reason_recorded": True}
    with pytest.raises(TransitionError):
        reject_unverified(_new().request, "x", "dpo", T0)


@pytest.mark.parametrize(
    ("kind", "purpose", "accepted"),
    [("objection", "coaching", True), ("consent_withdrawal", "satisfaction_survey", True),
     ("objection", None, False), ("erasure", "coaching", False), ("access", None, True)],
)  # fmt: skip
def test_purpose_is_required_exactly_for_objection_and_consent_withdrawal(
    kind: str, purpose: str | None, accepted: bool
) -> None:
    if accepted:
        assert _new(kind, purpose).request.purpose == purpose
    else:
        with pytest.raises(PrivacyRequestError, match="purpose is required"):
            _new(kind, purpose)


def test_submission_errors_never_echo_the_values() -> None:
    bad: list[Callable[[], Step]] = [
        lambda: submit(RAW_EMAIL, "erasure", T0, "dpo", T0),
        lambda: submit("dsr-1", RAW_PHONE, T0, "dpo", T0),
        lambda: submit("dsr-1", "erasure", T0, "dpo", T0, verified_by=RAW_EMAIL),
        lambda: submit("dsr-1", "objection", T0, "dpo", T0, purpose=RAW_PHONE),
        lambda: submit("dsr-1", "erasure", T0 + timedelta(minutes=6), "dpo", T0),
        lambda: submit("dsr-1", "erasure", T0.replace(tzinfo=None), "dpo", T0),
        lambda: submit("dsr-1", "erasure", T0, "   ", T0),
    ]
    for attempt in bad:
        with pytest.raises(PrivacyRequestError) as caught:
            attempt()
        assert RAW_EMAIL not in str(caught.value)
        assert RAW_PHONE not in str(caught.value)


def test_resolve_keeps_pseudonyms_only_and_the_controllers_found() -> None:
    request = _new().request
    step = resolve(request, [BOB, ALICE, BOB], ["ORES"], T0)
    assert (step.request.state, step.request.subjects) == ("resolved", (ALICE, BOB))
    assert step.request.controllers == {"ORES"}
    assert dict(step.details) == {"subjects": 2, "controllers": "ORES"}
    for subjects, controllers in (([RAW_PHONE], ["ORES"]), ([ALICE], ["ACME"]),
                                  ([ALICE], []), ([], ["ORES"])):  # fmt: skip
        with pytest.raises(PrivacyRequestError) as caught:
            resolve(request, subjects, controllers, T0)
        assert RAW_PHONE not in str(caught.value)


def test_nobody_found_completes_at_once() -> None:
    step = _routed(controllers=())
    assert (step.event, step.request.state, step.request.closed_at) == (
        "nothing_found", "completed", T0 + timedelta(minutes=2))  # fmt: skip


def test_comnexio_data_alone_is_handled_directly() -> None:
    step = _routed(controllers=("COMNEXIO",))
    assert (step.request.state, step.request.forwarded_at) == ("executing", None)
    assert step.details["forward_to_controller"] == "no"
    assert executable_controllers(step.request) == {"COMNEXIO"}


def test_ores_data_waits_for_the_controller_while_comnexio_part_may_go() -> None:
    step = _routed()
    assert (step.previous_state, step.request.state) == ("resolved", "awaiting_controller")
    assert step.request.forwarded_at == T0 + timedelta(minutes=2)
    assert step.details["forward_to_controller"] == "for_instruction"
    assert executable_controllers(step.request) == {"COMNEXIO"}
    assert executable_controllers(_routed(controllers=("ORES",)).request) == frozenset()


def test_a_standing_instruction_executes_without_waiting() -> None:
    step = _routed(standing=(RequestType.ERASURE,))
    request = step.request
    assert (request.state, request.decision, request.decision_source) == (
        "executing", "execute", "standing")  # fmt: skip
    assert step.details == {"forward_to_controller": "for_information",
                            "decision_source": "standing"}  # fmt: skip
    assert _routed("restriction", standing=(RequestType.ERASURE,)).request.state == (
        "awaiting_controller")  # fmt: skip


@pytest.mark.parametrize("purpose", ["direct_marketing", "direct_marketing_profiling"])
def test_objection_to_direct_marketing_is_absolute(purpose: str) -> None:
    step = _routed("objection", purpose=purpose)
    request = step.request
    assert (request.state, request.decision_source) == ("executing", "absolute_right")
    assert step.details["forward_to_controller"] == "for_information", "ORES is informed"
    assert executable_controllers(request) == set(BOTH)
    refused = instruct(request, "refuse", "we want to keep marketing", "ores", T0)
    assert (refused.event, refused.request) == ("instruction_not_applicable", request)
    assert dict(refused.details) == {"decision": "refuse", "applied": False}


def test_objection_to_another_purpose_is_not_absolute() -> None:
    assert _routed("objection", purpose="contact_handling").request.state == (
        "awaiting_controller")  # fmt: skip
    assert _routed("objection", ("COMNEXIO",), "coaching").request.state == "executing"


def test_the_controller_instructs_execution() -> None:
    waiting = _routed().request
    step = instruct(waiting, Decision.EXECUTE, None, "ores-dpo", T0 + timedelta(days=2))
    request = step.request
    assert (step.previous_state, step.event, request.state) == (
        "awaiting_controller", "instructed", "executing")  # fmt: skip
    assert (request.decision, request.decision_source, request.decided_by) == (
        "execute", "controller", "ores-dpo")  # fmt: skip
    assert executable_controllers(request) == set(BOTH)
    again = instruct(request, "execute", None, "ores-dpo", T0 + timedelta(days=3))
    assert (again.event, again.request) == ("instruction_repeated", request)
    with pytest.raises(TransitionError, match="cannot instruct in state executing"):
        instruct(request, "refuse", "changed our mind", "ores-dpo", T0 + timedelta(days=3))


def test_a_refusal_is_recorded_and_closes_an_ores_only_request() -> None:
    waiting = _routed(controllers=("ORES",)).request
    with pytest.raises(PrivacyRequestError, match="reason"):
        instruct(waiting, "refuse", None, "ores-dpo", T0)
    with pytest.raises(PrivacyRequestError, match="decision must be one of"):
        instruct(waiting, "maybe", "x", "ores-dpo", T0)
    step = instruct(waiting, "refuse", "legal obligation to keep the file", "ores-dpo", T0)
    request = step.request
    assert (request.state, request.decision, request.closed_at) == ("refused", "refuse", T0)
    assert request.decision_reason == "legal obligation to keep the file"
    assert executable_controllers(request) == frozenset()
    assert not request.is_open
    assert "legal obligation" not in repr(step.details)


def test_a_refusal_leaves_comnexios_own_part_executing() -> None:
    step = instruct(_routed().request, "refuse", "dispute pending", "ores-dpo", T0)
    assert (step.request.state, step.request.decision) == ("executing", "refuse")
    assert step.request.closed_at is None
    assert executable_controllers(step.request) == {"COMNEXIO"}


@pytest.mark.parametrize(
    ("received", "months", "due"),
    [(date(2026, 1, 31), 1, date(2026, 2, 28)), (date(2028, 1, 31), 1, date(2028, 2, 29)),
     (date(2024, 1, 29), 1, date(2024, 2, 29)), (date(2026, 3, 31), 1, date(2026, 4, 30)),
     (date(2026, 12, 15), 1, date(2027, 1, 15)), (date(2026, 8, 31), 1, date(2026, 9, 30)),
     (date(2026, 1, 31), 3, date(2026, 4, 30)), (date(2027, 11, 30), 3, date(2028, 2, 29)),
     (date(2028, 11, 30), 3, date(2029, 2, 28)), (date(2026, 10, 31), 2, date(2026, 12, 31))],
)  # fmt: skip
def test_calendar_months_clamp_to_the_months_end(received: date, months: int, due: date) -> None:
    assert add_months(received, months) == due


def test_the_deadline_is_the_end_of_the_belgian_day() -> None:
    winter = deadline_after(datetime(2026, 1, 15, 9, 0, tzinfo=UTC), 1)
    assert winter == datetime(2026, 2, 15, 22, 59, 59, 999999, tzinfo=UTC)
    # received 23:30 UTC on 31 January = 00:30 on 1 February in Brussels: due 1 March
    late_night = deadline_after(datetime(2026, 1, 31, 23, 30, tzinfo=UTC), 1)
    assert late_night.astimezone(BRUSSELS).date() == date(2026, 3, 1)
    # across the spring change of clocks, the day still ends at local midnight (UTC+2)
    spring = deadline_after(datetime(2026, 3, 29, 1, 30, tzinfo=BRUSSELS), 1)
    assert spring == datetime(2026, 4, 29, 21, 59, 59, 999999, tzinfo=UTC)
    with pytest.raises(NaiveInstantError):
        deadline_after(datetime(2026, 1, 15, 9, 0), 1)  # noqa: DTZ001


def test_overdue_only_after_the_deadline_and_only_while_open() -> None:
    request = _routed().request
    assert not is_overdue(request, request.deadline)
    assert is_overdue(request, request.deadline + timedelta(microseconds=1))
    done = replace(request, state=RequestState.COMPLETED)
    assert not is_overdue(done, request.deadline + timedelta(days=90))
    with pytest.raises(TransitionError, match="not overdue"):
        escalate(request, request.deadline)
    later = request.deadline + timedelta(hours=1)
    step = escalate(request, later)
    assert (step.request.escalated_at, step.details["overdue_seconds"]) == (later, 3600)
    with pytest.raises(TransitionError, match="already escalated"):
        escalate(step.request, later)


def test_extensions_add_up_to_two_months_from_receipt_with_a_reason() -> None:
    request = _routed().request  # received 31 January 2026
    once = extend(request, 1, "complex: five channels", T0 + timedelta(days=10))
    assert once.request.extended_until == deadline_after(T0, 2)
    assert once.request.extended_until.astimezone(BRUSSELS).date() == date(2026, 3, 31)
    assert (once.request.extension_months, once.request.extension_reason) == (
        1, "complex: five channels")  # fmt: skip
    assert dict(once.details) == {"months": 1, "total_months": 1}
    twice = extend(once.request, 1, "many requests", T0 + timedelta(days=20)).request
    assert twice.deadline.astimezone(BRUSSELS).date() == date(2026, 4, 30)
    assert not is_overdue(twice, twice.due_at + timedelta(days=30))
    with pytest.raises(TransitionError, match="3 months in all"):
        extend(twice, 1, "still more", T0 + timedelta(days=21))
    with pytest.raises(TransitionError, match="3 months in all"):
        extend(request, 3, "all at once", T0)
    assert extend(request, 2, "complex", T0).request.deadline == twice.deadline


def test_an_extension_needs_a_reason_and_must_come_within_the_first_month() -> None:
    request = _routed().request
    for months, reason in ((0, "x"), (True, "x"), (1, "  "), (1, "x" * 501)):
        with pytest.raises(PrivacyRequestError):
            extend(request, months, reason, T0)
    with pytest.raises(TransitionError, match="within one month"):
        extend(request, 1, "late", request.due_at + timedelta(microseconds=1))
    assert extend(request, 1, "just in time", request.due_at).request.extension_months == 1
    closed = replace(request, state=RequestState.COMPLETED)
    with pytest.raises(TransitionError):
        extend(closed, 1, "x", T0)


def test_state_changing_steps_name_the_state_they_left() -> None:
    steps = [_new(), verify(_new(verified=False).request, "id_card_copy", T0)]
    resolved = resolve(_new().request, [ALICE], ["ORES"], T0)
    routed = route(resolved.request, (), T0)
    steps += [resolved, routed, instruct(routed.request, "execute", None, "ores", T0)]
    assert [s.event for s in steps] == ["submitted", "verified", "resolved", "routed",
                                        "instructed"]  # fmt: skip
    assert [s.previous_state for s in steps] == [None, "identity_unverified", "received",
                                                 "resolved", "awaiting_controller"]  # fmt: skip
    assert {s.event for s in steps} == _STATE_CHANGES
    for step in steps:
        assert all(isinstance(v, str | int | bool) for v in step.details.values())


def test_execution_records_the_controllers_done_as_a_field_and_only_once() -> None:
    from processors.privacy import all_agreed, execute, state_changes_now

    waiting = _routed("restriction").request  # ORES and COMNEXIO data, ORES not asked yet
    assert waiting.state == RequestState.AWAITING_CONTROLLER
    assert state_changes_now(waiting, {"COMNEXIO"}) is False  # ORES has not agreed
    own = execute(waiting, {"COMNEXIO"}, {"subject_states_published": 0}, T0)
    assert own.event == "executed"
    assert own.request.executed_for == frozenset({"COMNEXIO"})
    assert own.details == {"controllers": "COMNEXIO", "subject_states_published": 0}
    with pytest.raises(TransitionError, match="cannot execute"):
        execute(own.request, {"COMNEXIO"}, {}, T0)  # done already
    with pytest.raises(TransitionError, match="cannot execute"):
        execute(own.request, {"ORES"}, {}, T0)  # ORES has not instructed
    instructed = instruct(own.request, "execute", None, "controller:ORES", T0).request
    assert state_changes_now(instructed, {"ORES"}) is True
    full = execute(instructed, {"ORES"}, {}, T0).request
    assert full.executed_for == frozenset(BOTH)
    assert all_agreed(full, full.executed_for)
    assert state_changes_now(full, set()) is False  # published once, not again


def test_an_export_is_due_only_for_access_and_portability_while_executing() -> None:
    from processors.privacy import exported

    access = replace(_routed("access", ("COMNEXIO",)).request, state=RequestState.EXECUTING)
    step = exported(access, 6, T0 + timedelta(hours=1))
    assert (step.event, step.details, step.request.state) == (
        "exported", {"records": 6}, RequestState.EXECUTING,
    )  # fmt: skip
    erasure = replace(_routed("erasure", ("COMNEXIO",)).request, state=RequestState.EXECUTING)
    with pytest.raises(TransitionError, match="no export is due"):
        exported(erasure, 1, T0)
    with pytest.raises(PrivacyRequestError, match="zero or more"):
        exported(access, -1, T0)
