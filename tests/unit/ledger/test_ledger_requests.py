"""Privacy requests in the ledger (SQLite): transitions stored with their history, commands,
digests only, stale writes refused, deadlines queried on a moved clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from processors import privacy as p
from processors import privacy_commands as pc
from processors.consumers import parse_registry
from processors.deadlines import deadline_after
from streams.ledger import (
    AppendOnlyViolationError,
    InvalidIdentifierError,
    LedgerError,
    PrivacyRequests,
    StaleRequestError,
    UnknownCommandError,
    UnknownRequestError,
)
from streams.ledger.models import RequestEvent
from streams.settings import PROJECT_ROOT

REGISTRY = parse_registry(yaml.safe_load((PROJECT_ROOT / "infra" / "consumers.yaml").read_text()))
T0 = datetime(2028, 1, 31, 16, 45, 0, 250000, tzinfo=UTC)
ALICE = "s-" + "a1" * 16
RAW_PHONE = "+32471123456"


@pytest.fixture
def ledger(session: Session) -> PrivacyRequests:
    return PrivacyRequests(session)


@pytest.fixture
def submitted(ledger: PrivacyRequests, digest: Callable[[str], str]) -> p.PrivacyRequest:
    step = p.submit("dsr-1", "erasure", T0, "dpo", T0)
    stored, created = ledger.submit(step, [("phone", digest("phone")), ("email", digest("mail"))],
                                    "cli:dpo", T0)  # fmt: skip
    assert created
    return stored


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_submit_stores_the_request_digests_and_the_first_event(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest, digest: Callable[[str], str]
) -> None:
    assert submitted == p.submit("dsr-1", "erasure", T0, "dpo", T0).request
    assert ledger.get("dsr-1") == submitted
    assert submitted.due_at == datetime(2028, 2, 29, 22, 59, 59, 999999, tzinfo=UTC)
    assert ledger.identifiers("dsr-1") == sorted(
        [("phone", digest("phone")), ("email", digest("mail"))], key=lambda pair: pair[1]
    )
    (event,) = ledger.events("dsr-1")
    assert (event.event, event.actor, event.from_state, event.state, event.at) == (
        "submitted", "cli:dpo", None, "identity_unverified", T0)  # fmt: skip
    assert dict(event.details) == {"verified": False}
    again = p.submit("dsr-1", "access", T0, "dpo", T0)
    assert ledger.submit(again, [("phone", digest("x"))], "cli:dpo", T0) == (submitted, False)
    assert ledger.get("dsr-missing") is None


def test_only_keyed_digests_are_accepted_never_raw_identifiers(
    ledger: PrivacyRequests, digest: Callable[[str], str]
) -> None:
    step = p.submit("dsr-2", "erasure", T0, "dpo", T0)
    for identifiers in ([("phone", RAW_PHONE)], [], [("fax", digest("a"))],
                        [("phone", digest("a")), ("email", digest("a"))]):  # fmt: skip
        with pytest.raises(InvalidIdentifierError) as caught:
            ledger.submit(step, identifiers, "cli:dpo", T0)
        assert RAW_PHONE not in str(caught.value)
    assert ledger.get("dsr-2") is None


def test_a_request_lives_through_its_transitions_with_history(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    request = ledger.apply(p.verify(submitted, "id_card_copy", _at(1)), "cli:dpo", _at(1))
    request = ledger.apply(p.resolve(request, [ALICE], ["ORES", "COMNEXIO"], _at(2)), "privacy",
                           _at(2))  # fmt: skip
    request = ledger.apply(p.route(request, (), _at(2)), "privacy", _at(2))
    assert request.state == "awaiting_controller"
    early = pc.plan_commands(request, REGISTRY, set(), _at(2))
    assert ledger.add_commands(early, "privacy", _at(2)) == list(early)
    assert ledger.add_commands(early, "privacy", _at(3)) == [], "already stored"
    request = ledger.apply(p.instruct(request, "execute", None, "ores", _at(5)), "ores", _at(5))
    issued = {c.command_id for c in ledger.commands("dsr-1")}
    ledger.add_commands(pc.plan_commands(request, REGISTRY, issued, _at(5)), "privacy", _at(5))
    commands = ledger.commands("dsr-1")
    assert {c.controller for c in commands} == {"ORES", "COMNEXIO"}
    request = ledger.apply(pc.commands_issued(request, REGISTRY, commands, _at(5)), "privacy",
                           _at(5))  # fmt: skip
    for command in commands:
        answered = pc.record_answer(command, "done", None, _at(6))
        ledger.update_command(command, answered, "command_answered", command.consumer, _at(6))
    step = pc.complete(request, ledger.commands("dsr-1"), _at(7))
    request = ledger.apply(step, "privacy", _at(7))
    assert request == step.request == ledger.get("dsr-1")
    assert (request.state, request.closed_at, request.subjects) == ("completed", _at(7), (ALICE,))
    events = ledger.events("dsr-1")
    transitions = [(e.event, e.from_state, e.state) for e in events if e.command_id is None]
    assert transitions == [
        ("submitted", None, "identity_unverified"),
        ("verified", "identity_unverified", "received"),
        ("resolved", "received", "resolved"),
        ("routed", "resolved", "awaiting_controller"),
        ("instructed", "awaiting_controller", "executing"),
        ("commands_issued", "executing", "awaiting_acks"),
        ("completed", "awaiting_acks", "completed"),
    ]
    per_command = [e.event for e in events if e.command_id is not None]
    assert per_command == ["command_issued"] * len(commands) + ["command_answered"] * len(commands)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_a_transition_from_a_stale_copy_is_refused(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    verified = ledger.apply(p.verify(submitted, "id_card_copy", _at(1)), "cli:dpo", _at(1))
    with pytest.raises(StaleRequestError, match="request dsr-1 changed"):
        ledger.apply(p.verify(submitted, "id_card_copy", _at(2)), "cli:dpo", _at(2))
    first = p.extend(verified, 1, "complex", _at(3))
    second = p.extend(verified, 2, "very complex", _at(3))
    ledger.apply(first, "cli:dpo", _at(3))
    with pytest.raises(StaleRequestError):
        ledger.apply(second, "cli:dpo", _at(3))
    assert ledger.get("dsr-1") == first.request
    with pytest.raises(LedgerError):
        ledger.apply(p.submit("dsr-1", "erasure", T0, "dpo", T0), "cli:dpo", T0)
    with pytest.raises(UnknownRequestError):
        ledger.apply(p.verify(replace(submitted, request_id="dsr-9"), "x", T0), "cli", T0)


def test_refusal_and_extension_are_recorded_with_their_reasons(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    brussels = timezone(timedelta(hours=1))
    request = ledger.apply(p.verify(submitted, "id_card_copy", _at(1)), "dpo", _at(1))
    request = ledger.apply(p.extend(request, 2, "five channels", _at(1)), "dpo",
                           _at(1).astimezone(brussels))  # fmt: skip
    request = ledger.apply(p.resolve(request, [ALICE], ["ORES"], _at(2)), "privacy", _at(2))
    request = ledger.apply(p.route(request, (), _at(2)), "privacy", _at(2))
    refusal = p.instruct(request, "refuse", "legal obligation to keep", "ores-dpo", _at(3))
    stored = ledger.apply(refusal, "ores", _at(3))
    assert (stored.state, stored.decision_reason, stored.decided_by) == (
        "refused", "legal obligation to keep", "ores-dpo")  # fmt: skip
    assert (stored.extension_months, stored.extension_reason) == (2, "five channels")
    assert stored.extended_until == deadline_after(T0, 3)
    details = [dict(e.details) for e in ledger.events("dsr-1")]
    assert {"months": 2, "total_months": 2} in details
    assert "legal obligation" not in repr(details), "reasons stay in the request row"


def test_overdue_and_open_requests_on_a_moved_clock(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest, digest: Callable[[str], str]
) -> None:
    later = p.submit("dsr-2", "access", T0 + timedelta(days=3), "dpo", T0 + timedelta(days=3))
    ledger.submit(later, [("email", digest("b"))], "dpo", T0 + timedelta(days=3))
    assert [r.request_id for r in ledger.open_requests()] == ["dsr-1", "dsr-2"]
    assert ledger.overdue(submitted.due_at) == []
    assert [r.request_id for r in ledger.overdue(submitted.due_at + timedelta(seconds=1))] == [
        "dsr-1"]  # fmt: skip
    extended = ledger.apply(p.extend(submitted, 1, "complex", _at(1)), "dpo", _at(1))
    assert ledger.overdue(submitted.due_at + timedelta(seconds=1)) == []
    overdue = ledger.overdue(extended.deadline + timedelta(days=5))
    assert [r.request_id for r in overdue] == ["dsr-2", "dsr-1"], "earliest deadline first"
    assert ledger.count_open(submitted.due_at + timedelta(seconds=1)) == (2, 0)  # extended
    assert ledger.count_open(extended.deadline + timedelta(days=5)) == (2, 2)
    escalated_at = extended.deadline + timedelta(days=5)
    escalation = p.escalate(extended, escalated_at)
    assert ledger.apply(escalation, "timer", escalated_at).escalated_at == escalated_at
    ledger.apply(p.reject_unverified(later.request, "no id", "dpo", _at(2)), "dpo", _at(2))
    assert [r.request_id for r in ledger.open_requests()] == ["dsr-1"]


def _awaiting_acks(ledger: PrivacyRequests, request: p.PrivacyRequest) -> p.PrivacyRequest:
    request = ledger.apply(p.verify(request, "id_card_copy", T0), "dpo", T0)
    request = ledger.apply(p.resolve(request, [ALICE], ["COMNEXIO"], T0), "privacy", T0)
    request = ledger.apply(p.route(request, (), T0), "privacy", T0)
    ledger.add_commands(pc.plan_commands(request, REGISTRY, set(), T0), "privacy", T0)
    step = pc.commands_issued(request, REGISTRY, ledger.commands(request.request_id), T0)
    return ledger.apply(step, "privacy", T0)


def test_commands_needing_attention_resent_and_escalated(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    request = _awaiting_acks(ledger, submitted)
    commands = ledger.commands("dsr-1")
    assert [c.consumer for c in commands] == [
        "coaching_tool", "recording_store", "reporting_warehouse"]  # fmt: skip
    coaching, store, warehouse = commands
    ledger.update_command(warehouse, pc.record_answer(warehouse, "done", None, _at(1)),
                          "command_answered", "reporting_warehouse", _at(1))  # fmt: skip
    failed = pc.record_answer(store, "failed", "disk full", _at(1))
    ledger.update_command(store, failed, "command_answered", "recording_store", _at(1))
    assert ledger.commands_needing_attention(_at(2)) == [failed]
    late = coaching.answer_by + timedelta(seconds=1)
    assert ledger.commands_needing_attention(late) == [failed, coaching]
    assert pc.commands_to_resend([coaching, failed], REGISTRY, late) == (coaching,)
    second = ledger.update_command(coaching, pc.resend(coaching, REGISTRY, late),
                                   "command_resent", "timer", late)  # fmt: skip
    assert (second.attempt, second.issued_at) == (2, late)
    with pytest.raises(StaleRequestError, match="command"):
        ledger.update_command(coaching, pc.resend(coaching, REGISTRY, late), "x", "timer", late)
    escalated = pc.escalate_command(failed, late)
    ledger.update_command(failed, escalated, "command_escalated", "timer", late)
    assert ledger.commands_needing_attention(late) == []
    with pytest.raises(LedgerError, match="only its attempt or answer"):
        ledger.update_command(second, replace(second, consumer="crm"), "x", "timer", late)
    with pytest.raises(UnknownCommandError):
        ledger.update_command(replace(second, command_id="c-" + "0" * 32), second, "x", "t", late)
    ledger.apply(p.escalate(request, request.deadline + timedelta(days=1)), "timer", late)
    assert ledger.get_command(second.command_id) == second
    assert [e.event for e in ledger.events("dsr-1")][-4:] == [
        "command_answered", "command_resent", "command_escalated", "escalated"]  # fmt: skip


def test_digests_are_discarded_only_once_the_request_is_closed(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    with pytest.raises(LedgerError, match="still open"):
        ledger.discard_identifiers("dsr-1", "dpo", _at(1))
    ledger.apply(p.reject_unverified(submitted, "no id", "dpo", _at(1)), "dpo", _at(1))
    assert ledger.discard_identifiers("dsr-1", "dpo", _at(2)) == 2
    assert ledger.identifiers("dsr-1") == []
    assert dict(ledger.events("dsr-1")[-1].details) == {"count": 2}


def test_for_subject_finds_the_requests_that_resolved_to_it(
    ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    assert ledger.for_subject(ALICE) == []
    request = ledger.apply(p.verify(submitted, "id_card_copy", T0), "dpo", T0)
    request = ledger.apply(p.resolve(request, [ALICE], ["ORES"], T0), "privacy", T0)
    assert ledger.for_subject(ALICE) == [request]


def test_history_is_append_only_and_the_schema_refuses_inconsistent_rows(
    session: Session, ledger: PrivacyRequests, submitted: p.PrivacyRequest
) -> None:
    session.commit()
    event = session.get(RequestEvent, ledger.events("dsr-1")[0].id)
    assert event is not None
    event.event = "rewritten"
    with pytest.raises(AppendOnlyViolationError):
        session.flush()
    session.rollback()
    for statement in (
        "UPDATE privacy_requests SET state = 'lost'",
        "UPDATE privacy_requests SET state = 'completed'",  # closed without closed_at
        "UPDATE privacy_requests SET extension_months = 1",  # extended without a reason
        "UPDATE privacy_requests SET decision = 'refuse', decision_source = 'controller', "
        "decided_at = received_at",  # refused without a reason
        "INSERT INTO request_events (request_id, at, actor, event, state, details) "
        "VALUES ('dsr-missing', CURRENT_TIMESTAMP, 'x', 'x', 'received', '{}')",
    ):
        with pytest.raises(IntegrityError):
            session.execute(text(statement))
        session.rollback()
