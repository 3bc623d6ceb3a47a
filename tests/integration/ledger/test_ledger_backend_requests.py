"""Privacy requests on every backend: a request's life across transactions, stale writers
refused, deadlines and late commands queried on a moved clock, the schema's guards."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from processors import privacy as p
from processors import privacy_commands as pc
from processors.consumers import parse_registry
from processors.deadlines import deadline_after
from streams.ledger import PrivacyRequests, StaleRequestError
from streams.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

REGISTRY = parse_registry(yaml.safe_load((PROJECT_ROOT / "infra" / "consumers.yaml").read_text()))
T0 = datetime(2026, 3, 28, 23, 30, 0, 654321, tzinfo=UTC)  # 29 March in Brussels, clocks move
ALICE, BOB = "s-" + "a1" * 16, "s-" + "b2" * 16
REQUEST_TABLES = ("privacy_requests", "request_identifiers", "request_commands", "request_events")


def _submit(
    sessions: sessionmaker[Session], digest: Callable[[str], str], request_id: str = "dsr-1"
) -> p.PrivacyRequest:
    with sessions.begin() as session:
        step = p.submit(request_id, "erasure", T0, "dpo", T0, verified_by="id_card_copy")
        stored, _ = PrivacyRequests(session).submit(step, [("phone", digest(request_id))],
                                                    "cli:dpo", T0)  # fmt: skip
    return stored


def test_a_request_lives_across_transactions(
    sessions: sessionmaker[Session], digest: Callable[[str], str]
) -> None:
    request = _submit(sessions, digest)
    assert request.due_at == datetime(2026, 4, 29, 21, 59, 59, 999999, tzinfo=UTC)
    steps: list[Callable[[p.PrivacyRequest], p.Step]] = [
        lambda r: p.resolve(r, [BOB, ALICE], ["ORES", "COMNEXIO"], T0 + timedelta(minutes=1)),
        lambda r: p.route(r, (), T0 + timedelta(minutes=2)),
        lambda r: p.extend(r, 1, "five channels", T0 + timedelta(days=2)),
        lambda r: p.instruct(r, "execute", "instruction ORES-123", "ores", T0 + timedelta(days=3)),
    ]
    for make in steps:
        with sessions.begin() as session:
            ledger = PrivacyRequests(session)
            current = ledger.get("dsr-1")
            assert current == request
            request = ledger.apply(make(current), "privacy", T0 + timedelta(days=3))
    with sessions.begin() as session:
        ledger = PrivacyRequests(session)
        commands = pc.plan_commands(request, REGISTRY, set(), T0 + timedelta(days=3))
        ledger.add_commands(commands, "privacy", T0 + timedelta(days=3))
    with sessions() as session:
        ledger = PrivacyRequests(session)
        stored = ledger.get("dsr-1")
        assert stored == request
        assert stored is not None
        assert stored.subjects == (ALICE, BOB)
        assert stored.controllers == {"ORES", "COMNEXIO"}
        assert stored.extended_until == deadline_after(T0, 2)
        assert stored.received_at.tzinfo is UTC
        assert ledger.commands("dsr-1") == sorted(
            commands, key=lambda c: (c.consumer, c.controller, c.subject_pseudonym, c.command_id)
        )
        assert len(ledger.events("dsr-1")) == 5 + len(commands)


def test_two_workers_cannot_both_move_one_request(
    backend: str, sessions: sessionmaker[Session], digest: Callable[[str], str]
) -> None:
    """Both read the request; the first commits its transition; the second, deciding
    from what it read, is refused as stale (SQLite serialises the two transactions, so
    the second reads in a transaction of its own that ended before the first wrote)."""
    _submit(sessions, digest)
    with sessions() as reader:
        seen = PrivacyRequests(reader).get("dsr-1")
    assert seen is not None
    with sessions.begin() as first:
        PrivacyRequests(first).apply(p.extend(seen, 1, "complex", T0), "dpo-a", T0)
    with pytest.raises(StaleRequestError), sessions.begin() as second:
        PrivacyRequests(second).apply(p.extend(seen, 2, "other", T0), "dpo-b", T0)
    with sessions() as session:
        stored = PrivacyRequests(session).get("dsr-1")
        assert stored is not None
        assert (stored.extension_months, stored.extension_reason) == (1, "complex")


def test_overdue_requests_and_late_commands_on_a_moved_clock(
    sessions: sessionmaker[Session], digest: Callable[[str], str]
) -> None:
    first = _submit(sessions, digest, "dsr-1")
    _submit(sessions, digest, "dsr-2")
    with sessions.begin() as session:
        ledger = PrivacyRequests(session)
        request = ledger.apply(p.resolve(first, [ALICE], ["COMNEXIO"], T0), "privacy", T0)
        request = ledger.apply(p.route(request, (), T0), "privacy", T0)
        ledger.add_commands(pc.plan_commands(request, REGISTRY, set(), T0), "privacy", T0)
        extended = ledger.apply(p.extend(request, 2, "complex", T0), "dpo", T0)
    due = first.due_at
    with sessions() as session:
        ledger = PrivacyRequests(session)
        assert ledger.overdue(due) == []
        assert [r.request_id for r in ledger.overdue(due + timedelta(microseconds=1))] == ["dsr-2"]
        late = ledger.overdue(extended.deadline + timedelta(microseconds=1))
        assert [r.request_id for r in late] == ["dsr-2", "dsr-1"]
        assert ledger.count_open(due + timedelta(microseconds=1)) == (2, 1)
        assert ledger.count_open(extended.deadline + timedelta(microseconds=1)) == (2, 2)
        commands = ledger.commands("dsr-1")
        first_late = min(c.answer_by for c in commands)
        assert ledger.commands_needing_attention(first_late) == []
        attention = ledger.commands_needing_attention(first_late + timedelta(microseconds=1))
        assert [c.answer_by for c in attention] == [first_late]


def test_the_schema_refuses_inconsistent_rows(
    sessions: sessionmaker[Session], digest: Callable[[str], str]
) -> None:
    _submit(sessions, digest)
    for statement in (
        "UPDATE privacy_requests SET request_type = 'deletion'",
        "UPDATE privacy_requests SET verified_by = NULL",
        "UPDATE privacy_requests SET closed_at = received_at",
        "UPDATE privacy_requests SET extension_months = 3",
        "UPDATE privacy_requests SET decision = 'execute'",
        "INSERT INTO request_identifiers (request_id, identifier_digest, identifier_kind) "
        "VALUES ('dsr-1', 'ab', 'fax')",
        "INSERT INTO request_commands (command_id, request_id, consumer, command, "
        "subject_pseudonym, controller, issued_at, answer_by, attempt, outcome, answered_at) "
        "VALUES ('c-1', 'dsr-1', 'crm', 'erase', 's-1', 'ORES', CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP, 1, 'failed', CURRENT_TIMESTAMP)",
    ):
        with sessions() as session, pytest.raises(IntegrityError):
            session.execute(text(statement))


def test_check_constraints_carry_the_naming_conventions_names(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in REQUEST_TABLES:
        names = [str(c["name"]) for c in inspector.get_check_constraints(table)]
        assert all(n.startswith(f"ck_{table}_") for n in names), names
        assert not any(n.startswith(f"ck_{table}_ck_") for n in names), names
    found = {str(c["name"]) for c in inspector.get_check_constraints("privacy_requests")}
    assert {"ck_privacy_requests_state", "ck_privacy_requests_extension_has_reason"} <= found
