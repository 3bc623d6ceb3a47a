"""Recording retention on SQLite: schedule, legal holds, sweep, history and report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from streams.ledger import (
    DUE_WINDOW,
    AppendOnlyViolationError,
    HoldNotApplicableError,
    HoldReleasedError,
    IdentifierKind,
    InvalidIdentifierError,
    InvalidRetentionValueError,
    NaiveDatetimeError,
    NewHold,
    NewRecording,
    RecordingExpiredError,
    RecordingHeldError,
    RecordingNotDueError,
    RecordingRecord,
    RetentionLedger,
    SubjectIndex,
    UnknownHoldError,
    UnknownRecordingError,
)
from streams.ledger.models import RecordingHistoryEntry

NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
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
    """A recording whose standard period ends at ended_at + 30 days (NOW by default)."""
    return NewRecording(
        recording_id=f"rec-{n}",
        contact_id=contact or f"contact-{n}",
        subject_pseudonym=subject,
        controller=controller,
        purpose="contact_handling",
        channel=channel,
        recording_kind="call_audio",
        ended_at=ended_at,
        retain_until=ended_at + PERIOD,
        policy_version="2026.11.1",
        media_ref=f"s3://recordings/rec-{n}.opus",
    )


def _hold(hold_id: str, scope: str, target: str, reason: str = "complaint") -> NewHold:
    return NewHold(hold_id, scope, target, reason, reference="CASE-2026-0042", placed_by="dpo")


def _ids(records: Sequence[RecordingRecord]) -> list[str]:
    return [r.recording_id for r in records]


@pytest.fixture
def ledger(session: Session) -> RetentionLedger:
    return RetentionLedger(session)


def test_register_is_idempotent_and_writes_one_history_row(ledger: RetentionLedger) -> None:
    brussels = timezone(timedelta(hours=1))
    stored, created = ledger.register(_recording(1), NOW.astimezone(brussels))
    again, created_again = ledger.register(replace(_recording(1), purpose="other"), NOW)
    assert (created, created_again) == (True, False)
    assert again == stored == ledger.get("rec-1")
    assert (stored.state, stored.retain_until, stored.expired_at) == ("standard", NOW, None)
    assert stored.registered_at == NOW
    assert stored.registered_at.tzinfo is UTC
    history = ledger.history("rec-1")
    assert [(h.action, h.retain_until) for h in history] == [("registered", NOW)]
    assert dict(history[0].details) == {"policy_version": "2026.11.1"}
    assert ledger.get("rec-missing") is None
    assert ledger.history("rec-missing") == []


def test_register_refuses_bad_values_without_echoing_them(ledger: RetentionLedger) -> None:
    with pytest.raises(NaiveDatetimeError):
        ledger.register(replace(_recording(1), ended_at=NOW.replace(tzinfo=None)), NOW)
    with pytest.raises(NaiveDatetimeError):
        ledger.register(_recording(1), NOW.replace(tzinfo=None))
    with pytest.raises(InvalidIdentifierError) as caught:
        ledger.register(replace(_recording(1), subject_pseudonym="jan@example.invalid"), NOW)
    assert "jan@" not in str(caught.value)
    bad = [
        replace(_recording(1), retain_until=NOW - PERIOD - timedelta(seconds=1)),
        replace(_recording(1), controller="ACME"),
        replace(_recording(1), recording_kind="video"),
        replace(_recording(1), recording_id=""),
        replace(_recording(1), contact_id="x" * 201),
    ]
    for recording in bad:
        with pytest.raises(InvalidRetentionValueError):
            ledger.register(recording, NOW)
    assert ledger.get("rec-1") is None


def test_holds_cover_recordings_by_recording_contact_and_subject(ledger: RetentionLedger) -> None:
    ledger.register(_recording(1, contact="contact-A"), NOW)
    ledger.register(_recording(2, contact="contact-A"), NOW)
    ledger.register(_recording(3, subject=BOB), NOW)
    ledger.register(_recording(4, subject=BOB), NOW)
    ledger.place_hold(_hold("h-rec", "recording", "rec-3"), NOW)
    ledger.place_hold(_hold("h-contact", "contact", "contact-A", "fraud"), NOW)
    ledger.place_hold(_hold("h-subject", "subject", BOB, "dispute"), NOW)

    def holds_of(recording_id: str) -> list[str]:
        record = ledger.get(recording_id)
        assert record is not None
        return [h.hold_id for h in ledger.active_holds_for(record)]

    assert holds_of("rec-1") == holds_of("rec-2") == ["h-contact"]
    assert holds_of("rec-3") == ["h-rec", "h-subject"]
    assert holds_of("rec-4") == ["h-subject"]
    assert _ids(ledger.recordings_for("recording", "rec-3")) == ["rec-3"]
    assert _ids(ledger.recordings_for("contact", "contact-A")) == ["rec-1", "rec-2"]
    assert _ids(ledger.recordings_for("subject", BOB)) == ["rec-3", "rec-4"]
    assert [h.hold_id for h in ledger.active_holds()] == ["h-contact", "h-rec", "h-subject"]
    with pytest.raises(InvalidRetentionValueError):
        ledger.recordings_for("building", "x")
    with pytest.raises(InvalidIdentifierError):
        ledger.place_hold(_hold("h-raw", "subject", "+32470000000"), NOW)


def test_a_subject_hold_covers_recordings_filed_under_a_merged_pseudonym(
    session: Session,
    ledger: RetentionLedger,
    digest: Callable[[str], str],
    pseudonym_for: Callable[[str], str],
) -> None:
    index = SubjectIndex(session)
    phone, email = (IdentifierKind.PHONE, digest("p1")), (IdentifierKind.EMAIL, digest("e1"))
    older = index.resolve_or_create([phone], pseudonym_for, NOW)
    newer = index.resolve_or_create([email], pseudonym_for, NOW + timedelta(days=1))
    ledger.register(_recording(1, subject=newer), NOW)
    ledger.register(_recording(2, subject=newer), NOW)
    ledger.register(_recording(3, subject=BOB), NOW)
    ledger.place_hold(_hold("h-old", "subject", older), NOW)
    assert _ids(ledger.due_for_expiry(NOW)) == ["rec-1", "rec-2", "rec-3"]
    assert index.resolve_or_create([phone, email], pseudonym_for, NOW) == older
    record = ledger.get("rec-1")
    assert record is not None
    assert [h.hold_id for h in ledger.active_holds_for(record)] == ["h-old"]
    assert _ids(ledger.recordings_for("subject", older)) == ["rec-1", "rec-2"]
    assert _ids(ledger.recordings_for("subject", newer)) == ["rec-1", "rec-2"]
    assert _ids(ledger.due_for_expiry(NOW)) == ["rec-3"], "other subjects stay due"
    ledger.place_hold(_hold("h-alias", "subject", newer, "dispute"), NOW)
    assert [h.hold_id for h in ledger.active_holds_for(record)] == ["h-alias", "h-old"]


def test_due_for_expiry_takes_exactly_due_and_leaves_held_and_future(
    ledger: RetentionLedger,
) -> None:
    ledger.register(_recording(1), NOW)  # retain_until == NOW: due
    ledger.register(_recording(2, ended_at=NOW - PERIOD - timedelta(days=3)), NOW)  # overdue
    ledger.register(_recording(3, ended_at=NOW - PERIOD + timedelta(microseconds=1)), NOW)
    ledger.register(_recording(4), NOW)  # marked held
    ledger.register(_recording(5, contact="contact-held"), NOW)  # covered, not yet marked
    ledger.place_hold(_hold("h4", "recording", "rec-4"), NOW)
    ledger.mark_held("rec-4", "h4", NOW)
    ledger.place_hold(_hold("h5", "contact", "contact-held"), NOW)

    assert _ids(ledger.due_for_expiry(NOW)) == ["rec-2", "rec-1"]
    assert _ids(ledger.due_for_expiry(NOW, limit=1)) == ["rec-2"]
    assert _ids(ledger.due_for_expiry(NOW - timedelta(days=3, microseconds=1))) == []
    with pytest.raises(InvalidRetentionValueError):
        ledger.due_for_expiry(NOW, limit=0)


def test_a_sweep_run_twice_expires_nothing_twice(ledger: RetentionLedger) -> None:
    ledger.register(_recording(1), NOW)
    due = ledger.due_for_expiry(NOW)
    assert [ledger.mark_expired(r.recording_id, NOW, "sweep-1") for r in due] == [True]
    assert ledger.mark_expired("rec-1", NOW + timedelta(hours=1), "sweep-2") is False
    assert ledger.due_for_expiry(NOW + timedelta(hours=1)) == []
    record = ledger.get("rec-1")
    assert record is not None
    assert (record.state, record.expired_at) == ("expired", NOW)
    history = ledger.history("rec-1")
    assert [h.action for h in history] == ["registered", "expired"]
    assert dict(history[1].details) == {"sweep_id": "sweep-1"}
    assert ledger.recordings_for("recording", "rec-1") == []
    assert _ids(ledger.recordings_for("recording", "rec-1", include_expired=True)) == ["rec-1"]
    ledger.place_hold(_hold("h-late", "recording", "rec-1"), NOW)
    with pytest.raises(RecordingExpiredError):
        ledger.mark_held("rec-1", "h-late", NOW)
    with pytest.raises(UnknownRecordingError):
        ledger.mark_expired("rec-missing", NOW, "sweep-1")


def test_expiry_is_refused_while_held_or_not_due(ledger: RetentionLedger) -> None:
    ledger.register(_recording(1), NOW)
    ledger.register(_recording(2, subject=BOB), NOW)
    ledger.register(_recording(3, ended_at=NOW - PERIOD + timedelta(days=1)), NOW)
    ledger.place_hold(_hold("h1", "recording", "rec-1"), NOW)
    ledger.mark_held("rec-1", "h1", NOW)
    ledger.place_hold(_hold("h2", "subject", BOB), NOW)  # covers rec-2, not marked yet
    with pytest.raises(RecordingHeldError, match="h1"):
        ledger.mark_expired("rec-1", NOW, "sweep-1")
    with pytest.raises(RecordingHeldError, match="h2"):
        ledger.mark_expired("rec-2", NOW, "sweep-1")
    with pytest.raises(RecordingNotDueError):
        ledger.mark_expired("rec-3", NOW, "sweep-1")
    ledger.release_hold("h1", "dpo", "complaint closed", NOW)
    with pytest.raises(RecordingHeldError, match="state held"):
        ledger.mark_expired("rec-1", NOW, "sweep-1")  # still held until mark_standard
    states = [ledger.get(f"rec-{n}") for n in (1, 2, 3)]
    assert [r.state if r else None for r in states] == ["held", "standard", "standard"]


def test_release_writes_history_and_clears_the_hold(ledger: RetentionLedger) -> None:
    ledger.register(_recording(1), NOW)
    placed, created = ledger.place_hold(_hold("h1", "recording", "rec-1", "litigation"), NOW)
    again, created_again = ledger.place_hold(_hold("h1", "contact", "other"), NOW)
    assert (created, created_again, again) == (True, False, placed)
    assert ledger.mark_held("rec-1", "h1", NOW) is True
    assert ledger.mark_held("rec-1", "h1", NOW) is False

    released_at = NOW + timedelta(days=60)
    released = ledger.release_hold("h1", "legal-service", "case closed", released_at)
    assert (released.active, released.released_at, released.released_by) == (
        False,
        released_at,
        "legal-service",
    )
    assert ledger.get_hold("h1") == released
    assert ledger.active_holds() == []
    assert ledger.mark_standard("rec-1", released_at + GRACE, released_at, hold_id="h1") is True
    assert ledger.mark_standard("rec-1", released_at + GRACE, released_at, hold_id="h1") is False
    record = ledger.get("rec-1")
    assert record is not None
    assert (record.state, record.retain_until) == ("standard", released_at + GRACE)
    assert [(h.action, h.hold_id, h.retain_until) for h in ledger.history("rec-1")] == [
        ("registered", None, NOW),
        ("held", "h1", None),
        ("released", "h1", released_at + GRACE),
    ]
    assert ledger.due_for_expiry(released_at + GRACE - timedelta(microseconds=1)) == []
    assert _ids(ledger.due_for_expiry(released_at + GRACE)) == ["rec-1"]
    with pytest.raises(HoldReleasedError):
        ledger.release_hold("h1", "dpo", "again", released_at)
    with pytest.raises(HoldReleasedError):
        ledger.mark_held("rec-1", "h1", released_at)
    with pytest.raises(UnknownHoldError):
        ledger.release_hold("h-missing", "dpo", "closed", released_at)


def test_a_recording_stays_held_while_another_hold_covers_it(ledger: RetentionLedger) -> None:
    ledger.register(_recording(1, contact="contact-A"), NOW)
    ledger.register(_recording(2), NOW)
    ledger.place_hold(_hold("h-complaint", "recording", "rec-1"), NOW)
    ledger.place_hold(_hold("h-fraud", "contact", "contact-A", "fraud"), NOW)
    ledger.mark_held("rec-1", "h-complaint", NOW)
    ledger.mark_held("rec-1", "h-fraud", NOW)
    with pytest.raises(HoldNotApplicableError):
        ledger.mark_held("rec-2", "h-fraud", NOW)
    ledger.release_hold("h-complaint", "dpo", "answered", NOW)
    with pytest.raises(RecordingHeldError, match="h-fraud"):
        ledger.mark_standard("rec-1", NOW + GRACE, NOW, hold_id="h-complaint")
    restriction = ledger.record_restriction("rec-1", NOW, "h-fraud", {"request_id": "req-9"})
    assert (restriction.action, dict(restriction.details)) == (
        "restricted",
        {"request_id": "req-9"},
    )
    record = ledger.get("rec-1")
    assert record is not None
    assert record.state == "held"


def test_history_is_append_only(session: Session, ledger: RetentionLedger) -> None:
    ledger.register(_recording(1), NOW)
    session.commit()
    entry = session.query(RecordingHistoryEntry).one()
    entry.action = "expired"
    with pytest.raises(AppendOnlyViolationError):
        session.flush()
    session.rollback()
    session.delete(session.query(RecordingHistoryEntry).one())
    with pytest.raises(AppendOnlyViolationError):
        session.flush()


def test_report_counts_due_held_and_expired_by_controller_and_channel(
    ledger: RetentionLedger,
) -> None:
    soon = NOW - PERIOD + timedelta(days=3)
    ledger.register(_recording(1, ended_at=soon), NOW)
    ledger.register(_recording(2, ended_at=soon, channel="chat"), NOW)
    ledger.register(_recording(3, ended_at=soon + timedelta(days=4)), NOW)  # exactly now + 7 d
    ledger.register(_recording(4, ended_at=soon + timedelta(days=5)), NOW)  # beyond the window
    ledger.register(_recording(5, controller="COMNEXIO", subject=BOB), NOW)
    ledger.register(_recording(6, controller="COMNEXIO", subject=BOB, ended_at=soon), NOW)
    ledger.register(_recording(7), NOW)
    ledger.place_hold(_hold("h-bob", "subject", BOB, "fraud"), NOW)
    ledger.place_hold(_hold("h-bob-2", "recording", "rec-5", "dispute"), NOW)
    ledger.mark_expired("rec-7", NOW, "sweep-1")

    report = ledger.report(NOW)
    table = {(r.measure, r.reason, r.controller, r.channel): r.count for r in report.rows}
    assert table == {
        ("due_soon", None, "ORES", "phone"): 2,
        ("due_soon", None, "ORES", "chat"): 1,
        ("held", "dispute", "COMNEXIO", "phone"): 1,
        ("held", "fraud", "COMNEXIO", "phone"): 2,
        ("expired", None, "ORES", "phone"): 1,
    }
    assert (report.total("due_soon"), report.total("held", "fraud")) == (3, 2)
    assert report.due_window == DUE_WINDOW
    dumped = json.loads(json.dumps(report.as_dict()))
    assert dumped["as_of"] == "2026-02-10T12:00:00+00:00"
    assert len(dumped["rows"]) == len(report.rows)
    assert "a1a1" not in json.dumps(dumped), "reports carry no pseudonyms"


def _count_statements(session: Session) -> Callable[[], int]:
    """How many statements the session's engine has run since this call."""
    engine = session.get_bind()
    seen = [0]

    def count(*_args: object, **_kwargs: object) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    return lambda: seen[0]


def test_a_sweep_decides_pages_of_recordings_in_a_few_statements(
    session: Session,
    ledger: RetentionLedger,
    digest: Callable[[str], str],
    pseudonym_for: Callable[[str], str],
) -> None:
    """Covered recordings first in line do not end a limited sweep early, and a page of
    hundreds is decided and expired in a bounded number of statements, not one per row."""
    index = SubjectIndex(session)
    phone, email = (IdentifierKind.PHONE, digest("p1")), (IdentifierKind.EMAIL, digest("e1"))
    older = index.resolve_or_create([phone], pseudonym_for, NOW)
    newer = index.resolve_or_create([email], pseudonym_for, NOW + timedelta(days=1))
    index.resolve_or_create([phone, email], pseudonym_for, NOW)  # newer is now older's alias
    for n in range(1100):
        subject, ended = (
            (newer, NOW - PERIOD - timedelta(days=2)) if n < 600 else (BOB, NOW - PERIOD)
        )
        ledger.register(_recording(n, subject=subject, ended_at=ended - timedelta(seconds=n)), NOW)
    ledger.place_hold(_hold("h-older", "subject", older), NOW)  # covers rec-0 .. rec-599

    statements = _count_statements(session)
    due = ledger.due_for_expiry(NOW, limit=400)  # the first page (500) is all covered
    assert len(due) == 400
    assert {r.subject_pseudonym for r in due} == {BOB}
    assert statements() < 20
    decided = statements()
    assert ledger.mark_expired_all([r.recording_id for r in due], NOW, "sweep-1") == [True] * 400
    assert statements() - decided < 20
    assert len(ledger.due_for_expiry(NOW)) == 100
    assert ledger.report(NOW).total("held", "complaint") == 600


def test_a_batch_expiry_refused_for_one_recording_changes_none(ledger: RetentionLedger) -> None:
    for n in (1, 2, 3):
        ledger.register(_recording(n), NOW)
    ledger.place_hold(_hold("h2", "recording", "rec-2"), NOW)
    with pytest.raises(RecordingHeldError, match="h2"):
        ledger.mark_expired_all(["rec-1", "rec-2", "rec-3"], NOW, "sweep-1")
    assert [r.state if r else None for r in map(ledger.get, ["rec-1", "rec-3"])] == [
        "standard",
        "standard",
    ]
    assert ledger.mark_expired_all(["rec-1", "rec-3", "rec-1"], NOW, "sweep-1") == [
        True,
        True,
        False,
    ]
    assert ledger.mark_expired_all(["rec-3"], NOW, "sweep-2") == [False]
    assert [h.action for h in ledger.history("rec-1")] == ["registered", "expired"]
    with pytest.raises(UnknownRecordingError):
        ledger.mark_expired_all(["rec-2", "rec-missing"], NOW, "sweep-1")


def test_covering_holds_answers_for_a_batch_and_report_counts_a_recording_once_per_reason(
    ledger: RetentionLedger,
) -> None:
    ledger.register(_recording(1, contact="contact-A"), NOW)
    ledger.register(_recording(2, subject=BOB), NOW)
    ledger.register(_recording(3), NOW)
    ledger.place_hold(_hold("h-a", "contact", "contact-A", "fraud"), NOW)
    ledger.place_hold(_hold("h-b", "recording", "rec-1", "fraud"), NOW)
    ledger.place_hold(_hold("h-c", "subject", ALICE, "dispute"), NOW)
    records = [r for r in map(ledger.get, ["rec-1", "rec-2", "rec-3"]) if r]
    covering = {k: [h.hold_id for h in v] for k, v in ledger.covering_holds(records).items()}
    assert covering == {"rec-1": ["h-a", "h-b", "h-c"], "rec-2": [], "rec-3": ["h-c"]}
    table = {(r.measure, r.reason): r.count for r in ledger.report(NOW).rows}
    assert table == {("held", "fraud"): 1, ("held", "dispute"): 2}
