"""Audit log on SQLite: hash chain, tamper detection, append-only refusal."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import (
    GENESIS_HASH,
    AppendOnlyViolationError,
    AuditLog,
    LedgerError,
    verify_chain,
)
from streams.ledger.models import AuditEntry, Base

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SUBJECT = "a1" * 16


def _fill(session: Session, count: int = 4) -> AuditLog:
    log = AuditLog(session)
    for n in range(count):
        log.append(
            "privacy-app",
            "request.step",
            T0 + timedelta(minutes=n),
            request_id=f"req-{n % 2}",
            subject=SUBJECT,
            details={"step": n, "consumers": ["crm", "recordings"]},
        )
    return log


def test_entries_chain_from_genesis_and_verify(session: Session) -> None:
    log = _fill(session)
    entries = log.entries()
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert [e.details["step"] for e in log.entries(request_id="req-1")] == [1, 3]
    assert len(log.entries(subject=SUBJECT)) == 4
    report = log.verify_chain()
    assert report.ok
    assert (report.entries_checked, report.head_hash) == (4, entries[-1].entry_hash)
    assert all(e.at.tzinfo is UTC for e in entries)


def test_empty_log_verifies(session: Session) -> None:
    report = verify_chain(session)
    assert report.ok
    assert (report.entries_checked, report.head_hash) == (0, None)


def test_tampered_row_is_detected(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        ids = [e.id for e in _fill(session).entries()]
    with sessions.begin() as session:
        session.execute(
            text("UPDATE audit_log SET details = :d WHERE id = :id"),
            {"d": '{"step": 99}', "id": ids[1]},
        )
    with sessions() as session:
        report = verify_chain(session)
    assert not report.ok
    assert [p.entry_id for p in report.problems] == [ids[1]]
    assert "content" in report.problems[0].reason


def test_deleted_row_is_detected(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        ids = [e.id for e in _fill(session).entries()]
    with sessions.begin() as session:
        session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
    with sessions() as session:
        report = verify_chain(session)
    assert [p.entry_id for p in report.problems] == [ids[2]]
    assert "deleted" in report.problems[0].reason


def test_truncated_tail_is_detected_against_an_anchor(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        head = _fill(session).entries()[-1]
    with sessions.begin() as session:
        session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": head.id})
    with sessions() as session:
        assert verify_chain(session).ok
        report = verify_chain(session, anchor=head.entry_hash)
    assert not report.ok
    assert report.problems[0].entry_id is None


def test_orm_update_and_delete_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _fill(session, 1)
    with sessions() as session:
        entry = session.query(AuditEntry).one()
        entry.action = "rewritten"
        with pytest.raises(AppendOnlyViolationError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.query(AuditEntry).one())
        with pytest.raises(AppendOnlyViolationError, match="append-only"):
            session.flush()
        session.rollback()
        with pytest.raises(AppendOnlyViolationError, match="bulk update"):
            session.execute(update(AuditEntry).values(actor="someone-else"))
        with pytest.raises(AppendOnlyViolationError, match="bulk delete"):
            session.execute(delete(AuditEntry))
        with pytest.raises(AppendOnlyViolationError, match="bulk delete"):
            session.execute(delete(Base.metadata.tables["audit_log"]))
    with sessions() as session:
        assert verify_chain(session).ok
        assert len(AuditLog(session).entries()) == 1


def test_unchanged_entries_flush_quietly(session: Session) -> None:
    _fill(session, 1)
    entry = session.query(AuditEntry).one()
    entry.action = entry.action
    session.flush()


def test_the_chain_cannot_fork(session: Session) -> None:
    _fill(session, 1)
    with pytest.raises(IntegrityError):
        session.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, details, prev_hash, entry_hash) "
                "VALUES ('2026-01-05 10:00:00.000000', 'x', 'y', '{}', :prev, :hash)"
            ),
            {"prev": GENESIS_HASH, "hash": "f" * 64},
        )


def test_details_are_normalised_and_must_be_json(session: Session) -> None:
    log = AuditLog(session)
    mixed_keys: dict[Any, int] = {"x": 1, 7: 2}
    entry = log.append("dpo", "note", T0, details={"ids": ("a", "b"), "done": True})
    assert dict(entry.details) == {"ids": ["a", "b"], "done": True}
    with pytest.raises(LedgerError):
        log.append("dpo", "note", T0, details=mixed_keys)
    with pytest.raises(LedgerError):
        log.append("dpo", "note", T0, details={"x": math.nan})
    with pytest.raises(LedgerError):
        log.append("dpo", "note", T0, details={"x": object()})
    with pytest.raises(LedgerError):
        log.append("", "note", T0)
    with pytest.raises(LedgerError):
        log.append("dpo", "note", T0, subject="someone@example.invalid")
    assert verify_chain(session).ok
