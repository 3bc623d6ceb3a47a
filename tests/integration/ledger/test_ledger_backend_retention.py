"""Recording retention on every backend: holds outrank expiry, sweeps are idempotent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import (
    IdentifierKind,
    LedgerError,
    NewHold,
    NewRecording,
    RecordingHeldError,
    RecordingRecord,
    RetentionLedger,
    SubjectIndex,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 29, 0, 30, 0, 654321, tzinfo=UTC)  # the night clocks move in Belgium
PERIOD = timedelta(days=30)
GRACE = timedelta(days=7)
ALICE, BOB = "s-" + "a1" * 16, "s-" + "b2" * 16


def _recording(
    n: int,
    *,
    ended_at: datetime = NOW - PERIOD,
    contact: str | None = None,
    subject: str = ALICE,
    controller: str = "ORES",
    channel: str = "phone",
) -> NewRecording:
    return NewRecording(
        recording_id=f"rec-{n}",
        contact_id=contact or f"contact-{n}",
        subject_pseudonym=subject,
        controller=controller,
        purpose="contact_handling",
        channel=channel,
        recording_kind="chat_transcript" if channel == "chat" else "call_audio",
        ended_at=ended_at,
        retain_until=ended_at + PERIOD,
        policy_version="2026.11.1",
    )


def _hold(hold_id: str, scope: str, target: str, reason: str = "complaint") -> NewHold:
    return NewHold(hold_id, scope, target, reason, "TICKET-7", "dpo", source="signal")


def _ids(records: Sequence[RecordingRecord]) -> list[str]:
    return [r.recording_id for r in records]


def test_register_hold_sweep_release_across_transactions(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        ledger = RetentionLedger(session)
        assert ledger.register(_recording(1, contact="contact-A"), NOW)[1] is True
        ledger.register(_recording(2, contact="contact-A"), NOW)
        ledger.register(_recording(3, subject=BOB), NOW)
        ledger.register(_recording(4), NOW)  # exactly due at NOW
        ledger.register(_recording(5, ended_at=NOW - PERIOD + timedelta(microseconds=1)), NOW)
        ledger.register(_recording(6), NOW)
        for hold in (
            _hold("h-rec", "recording", "rec-6", "litigation"),
            _hold("h-contact", "contact", "contact-A", "fraud"),
            _hold("h-subject", "subject", BOB, "authority_request"),
        ):
            ledger.place_hold(hold, NOW)
        for recording_id, hold_id in (("rec-6", "h-rec"), ("rec-1", "h-contact")):
            assert ledger.mark_held(recording_id, hold_id, NOW) is True

    with sessions.begin() as session:
        ledger = RetentionLedger(session)
        assert ledger.register(_recording(1), NOW + timedelta(days=1))[1] is False
        assert ledger.place_hold(_hold("h-rec", "contact", "x"), NOW)[1] is False
        due = ledger.due_for_expiry(NOW)
        assert _ids(due) == ["rec-4"]
        assert [ledger.mark_expired(r.recording_id, NOW, "sweep-1") for r in due] == [True]
        with pytest.raises(RecordingHeldError):
            ledger.mark_expired("rec-6", NOW, "sweep-1")

    with sessions.begin() as session:
        ledger = RetentionLedger(session)
        assert ledger.mark_expired("rec-4", NOW, "sweep-2") is False
        assert ledger.due_for_expiry(NOW) == []
        ledger.release_hold("h-rec", "legal-service", "settled", NOW + timedelta(days=90))

    release = NOW + timedelta(days=90)
    with sessions.begin() as session:
        ledger = RetentionLedger(session)
        assert [h.hold_id for h in ledger.active_holds()] == ["h-contact", "h-subject"]
        assert ledger.mark_standard("rec-6", release + GRACE, release, hold_id="h-rec") is True

    with sessions() as session:
        ledger = RetentionLedger(session)
        assert [(h.action, h.hold_id) for h in ledger.history("rec-6")] == [
            ("registered", None),
            ("held", "h-rec"),
            ("released", "h-rec"),
        ]
        assert [h.action for h in ledger.history("rec-4")] == ["registered", "expired"]
        assert _ids(ledger.due_for_expiry(release + GRACE)) == ["rec-5", "rec-6"]
        record = ledger.get("rec-6")
        assert record is not None
        for instant in (record.ended_at, record.retain_until, record.updated_at):
            assert instant.tzinfo is UTC
        assert record.retain_until == release + GRACE
        assert record.retain_until.microsecond == NOW.microsecond


def test_subject_holds_follow_merges_on_the_backend(
    sessions: sessionmaker[Session],
    digest: Callable[[str], str],
    pseudonym_for: Callable[[str], str],
) -> None:
    phone, email = (IdentifierKind.PHONE, digest("p1")), (IdentifierKind.EMAIL, digest("e1"))
    with sessions.begin() as session:
        index = SubjectIndex(session)
        older = index.resolve_or_create([phone], pseudonym_for, NOW)
        newer = index.resolve_or_create([email], pseudonym_for, NOW + timedelta(hours=1))
        ledger = RetentionLedger(session)
        for n, subject in ((1, newer), (2, newer), (3, older), (4, BOB)):
            ledger.register(_recording(n, subject=subject), NOW)
        ledger.place_hold(_hold("h-older", "subject", older), NOW)
    with sessions.begin() as session:
        assert _ids(RetentionLedger(session).due_for_expiry(NOW)) == ["rec-1", "rec-2", "rec-4"]
        SubjectIndex(session).resolve_or_create([phone, email], pseudonym_for, NOW)
    with sessions() as session:
        ledger = RetentionLedger(session)
        assert _ids(ledger.due_for_expiry(NOW)) == ["rec-4"]
        report = ledger.report(NOW)
        assert report.total("held", "complaint") == 3


def test_report_on_the_backend(sessions: sessionmaker[Session]) -> None:
    soon = NOW - PERIOD + timedelta(days=2)
    with sessions.begin() as session:
        ledger = RetentionLedger(session)
        ledger.register(_recording(1, ended_at=soon), NOW)
        ledger.register(_recording(2, ended_at=soon, channel="chat", controller="COMNEXIO"), NOW)
        ledger.register(_recording(3, contact="contact-C"), NOW)
        ledger.register(_recording(4, contact="contact-C", channel="chat"), NOW)
        ledger.register(_recording(5), NOW)
        ledger.place_hold(_hold("h-c", "contact", "contact-C", "dispute"), NOW)
        ledger.place_hold(_hold("h-3", "recording", "rec-3", "dispute"), NOW)
        ledger.mark_expired("rec-5", NOW, "sweep-1")
    with sessions() as session:
        report = RetentionLedger(session).report(NOW)
    assert [(r.measure, r.reason, r.controller, r.channel, r.count) for r in report.rows] == [
        ("due_soon", None, "COMNEXIO", "chat", 1),
        ("due_soon", None, "ORES", "phone", 1),
        ("expired", None, "ORES", "phone", 1),
        ("held", "dispute", "ORES", "chat", 1),
        ("held", "dispute", "ORES", "phone", 1),
    ]


def test_the_schema_refuses_inconsistent_rows(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        RetentionLedger(session).register(_recording(1), NOW)
    for statement in (
        "UPDATE recordings SET state = 'deleted'",
        "UPDATE recordings SET state = 'expired'",  # expired without expired_at
        "INSERT INTO recording_history (recording_id, at, action, details) "
        "VALUES ('rec-missing', CURRENT_TIMESTAMP, 'held', '{}')",
    ):
        with sessions() as session, pytest.raises(IntegrityError):
            session.execute(text(statement))


def test_a_hold_and_a_sweep_racing_on_one_recording_do_not_both_win(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    """The sweep waits for the hold's transaction: PostgreSQL's row lock makes it refuse
    the expiry, SQLite's IMMEDIATE transaction makes it see the recording held."""
    with sessions.begin() as session:
        RetentionLedger(session).register(_recording(1), NOW)
    placer = sessions()
    held = RetentionLedger(placer)
    held.place_hold(_hold("h1", "recording", "rec-1"), NOW)
    held.mark_held("rec-1", "h1", NOW)
    outcome: list[str] = []

    def sweep() -> None:
        try:
            with sessions.begin() as session:
                ledger = RetentionLedger(session)
                for record in ledger.due_for_expiry(NOW):
                    ledger.mark_expired(record.recording_id, NOW, "sweep-1")
            outcome.append("swept")
        except (LedgerError, OperationalError) as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=sweep)
    thread.start()
    thread.join(timeout=0.5)
    placer.commit()
    placer.close()
    thread.join(timeout=30)
    assert not thread.is_alive()

    expected = {"postgresql": ["RecordingHeldError"], "sqlite": ["swept"]}[backend]
    assert outcome == expected
    with sessions() as session:
        record = RetentionLedger(session).get("rec-1")
    assert record is not None
    assert record.state == "held"
