"""Audit log on every backend: the chain verifies, tampering shows, the ORM refuses edits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import AppendOnlyViolationError, AuditLog, verify_chain
from streams.ledger.models import AuditEntry

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def _append(sessions: sessionmaker[Session], count: int) -> list[int]:
    with sessions.begin() as session:
        log = AuditLog(session)
        for n in range(count):
            log.append(
                "privacy-app",
                "erasure.ack",
                T0 + timedelta(seconds=n),
                request_id="req-1",
                subject="b2" * 16,
                details={"consumer": f"consumer-{n}", "attempt": n, "ratio": 0.1 * n},
            )
        return [entry.id for entry in log.entries()]


def test_chain_verifies_then_raw_sql_tampering_is_detected(sessions: sessionmaker[Session]) -> None:
    ids = _append(sessions, 5)
    with sessions() as session:
        report = verify_chain(session)
        entries = AuditLog(session).entries(request_id="req-1")
    assert report.ok
    assert report.entries_checked == 5
    assert all(entry.at.tzinfo is UTC for entry in entries)

    with sessions.begin() as session:
        session.execute(
            text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :id"), {"id": ids[1]}
        )
        session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[3]})
    with sessions() as session:
        report = verify_chain(session)
    assert not report.ok
    assert [problem.entry_id for problem in report.problems] == [ids[1], ids[4]]


def test_orm_update_and_delete_of_audit_entries_are_refused(
    sessions: sessionmaker[Session],
) -> None:
    _append(sessions, 2)
    with sessions() as session:
        entry = session.query(AuditEntry).order_by(AuditEntry.id).first()
        assert entry is not None
        entry.details = {"rewritten": True}
        with pytest.raises(AppendOnlyViolationError):
            session.flush()
        session.rollback()
        session.delete(session.query(AuditEntry).order_by(AuditEntry.id).first())
        with pytest.raises(AppendOnlyViolationError):
            session.flush()
        session.rollback()
        with pytest.raises(AppendOnlyViolationError):
            session.execute(update(AuditEntry).values(action="x"))
        with pytest.raises(AppendOnlyViolationError):
            session.execute(delete(AuditEntry))
    with sessions() as session:
        assert verify_chain(session).ok


def test_concurrent_appenders_never_fork_the_chain(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    """Both serialise appenders: PostgreSQL with an advisory lock, SQLite because every
    transaction begins IMMEDIATE (the second waits for the first to commit)."""
    first = sessions()
    AuditLog(first).append("worker-1", "tick", T0)
    outcome: list[str] = []

    def second_appender() -> None:
        try:
            with sessions.begin() as session:
                AuditLog(session).append("worker-2", "tick", T0)
            outcome.append("appended")
        except OperationalError as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=second_appender)
    thread.start()
    thread.join(timeout=0.5)
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()

    assert outcome == ["appended"], backend
    with sessions() as session:
        report = verify_chain(session)
    assert report.ok
    assert report.entries_checked == 2
