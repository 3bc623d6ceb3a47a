"""RetentionService without Kafka or a container: the real ledger on SQLite through its unit
of work, and an outbox that keeps what it is given. Holds outrank expiry and erasure,
erasure outranks standard retention, a release gives grace; messages leave only from a
ledger transaction about to commit, and a refused send rolls that transaction back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from doubles import MemoryOutbox
from sqlalchemy.orm import Session, sessionmaker

from schemas import records
from schemas.catalog import SchemaCatalog
from schemas.topic_names import (
    CONTACT_DEADLETTER,
    RECORDINGS_EXPIRED,
    RECORDINGS_HOLD,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
)
from streams.control.retention.service import (
    LedgerUnit,
    RetentionService,
    SqlLedgerUnitOfWork,
)
from streams.kafka.outbox import OutboxRefused
from streams.ledger import (
    AuditLog,
    IdentifierKind,
    RetentionLedger,
    SubjectIndex,
    UnknownHoldError,
)

ENDED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
MONTH = timedelta(days=30)
GRACE = timedelta(days=7)
ALICE, BOB = "s-" + "a" * 32, "s-" + "b" * 32
CATALOG = SchemaCatalog.load()


class NotingUnitOfWork:
    """The real ledger unit of work, noting how each transaction ends."""

    def __init__(self, sessions: sessionmaker[Session], events: list[str]) -> None:
        self._ledger = SqlLedgerUnitOfWork(sessions)
        self._events = events

    @contextmanager
    def begin(self) -> Iterator[LedgerUnit]:
        self._events.append("begin")
        try:
            with self._ledger.begin() as unit:
                yield unit
        except BaseException:
            self._events.append("rolled back")
            raise
        self._events.append("committed")


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def outbox(events: list[str]) -> MemoryOutbox:
    return MemoryOutbox(events)


@pytest.fixture
def units(sessions: sessionmaker[Session], events: list[str]) -> NotingUnitOfWork:
    return NotingUnitOfWork(sessions, events)


@pytest.fixture
def service(units: NotingUnitOfWork, outbox: MemoryOutbox) -> Iterator[RetentionService]:
    retention = RetentionService(units, outbox, serde=outbox.serde, actor="test", grace_days=7)
    yield retention
    retention.close()


def _announce(outbox: MemoryOutbox, recording_id: str, subject: str = ALICE,
              controller: str = "ORES", contact: str | None = None) -> bytes:  # fmt: skip
    value = records.recording_retention(
        recording_id=recording_id, contact_id=contact or f"call-{recording_id}",
        channel="phone", recording_kind="call_audio", media_ref=f"store://{recording_id}",
        controller=controller, purpose="contact_handling", subject_pseudonym=subject,
        ended_at=ENDED, retain_until=ENDED + MONTH, policy_version="test",
    )  # fmt: skip
    return outbox.encode("RecordingRetention", value)


def _signal(outbox: MemoryOutbox, signal_id: str, reason: str, at: datetime,
            subject: str = ALICE) -> bytes:  # fmt: skip
    value = {
        "signal_id": signal_id, "reason": reason, "subject_pseudonym": subject,
        "contact_id": "mail-1", "channel": "email", "kind": "email_received",
        "occurred_at": at, "policy_version": "test",
    }  # fmt: skip
    return outbox.encode("HoldSignal", value)


def _state(sessions: sessionmaker[Session], recording_id: str) -> tuple[str, datetime] | None:
    with sessions() as session:
        recording = RetentionLedger(session).get(recording_id)
    return None if recording is None else (recording.state, recording.retain_until)


def test_a_recording_is_registered_once_and_held_on_arrival_when_a_hold_awaits_it(
    service: RetentionService, outbox: MemoryOutbox, sessions: sessionmaker[Session]
) -> None:
    assert service.ingest_recording(_announce(outbox, "rec-1"), ENDED) == "registered"
    assert service.ingest_recording(_announce(outbox, "rec-1"), ENDED) == "known"
    assert outbox.audited() == ["recording.registered"]

    hold, moved = service.place_hold("subject", BOB, "fraud", "case-77", "ops", ENDED)
    assert (hold.reason, moved) == ("fraud", 0)
    assert service.ingest_recording(_announce(outbox, "rec-2", BOB), ENDED) == "held"
    assert outbox.on(RECORDINGS_HOLD)[0][1] == records.recording_retention(
        recording_id="rec-2", contact_id="call-rec-2", channel="phone",
        recording_kind="call_audio", media_ref="store://rec-2", controller="ORES",
        purpose="contact_handling", subject_pseudonym=BOB, ended_at=ENDED,
        retain_until=ENDED + MONTH, policy_version="test", hold_reasons=["fraud"],
    )  # fmt: skip
    assert outbox.on(RECORDINGS_STANDARD) == [(b"rec-2", None)]
    assert _state(sessions, "rec-2") == ("held", ENDED + MONTH)


def test_a_sweep_expires_what_no_hold_covers_and_never_what_one_does(
    service: RetentionService, outbox: MemoryOutbox, sessions: sessionmaker[Session]
) -> None:
    service.ingest_recording(_announce(outbox, "rec-alice"), ENDED)
    service.ingest_recording(_announce(outbox, "rec-bob", BOB), ENDED)
    day20 = ENDED + timedelta(days=20)
    assert service.apply_signal(_signal(outbox, "e-1", "complaint", day20, BOB), day20) == 1
    assert service.apply_signal(_signal(outbox, "e-1", "complaint", day20, BOB), day20) == 0

    assert service.sweep(ENDED + MONTH - timedelta(minutes=1)).expired == []
    assert service.sweep(ENDED + MONTH).expired == ["rec-alice"]
    for months in (1, 2, 12):
        assert service.sweep(ENDED + months * MONTH + GRACE).expired == []
    (command,) = outbox.on(RECORDINGS_EXPIRED)
    assert command[0] == b"rec-alice"
    assert command[1] is not None
    assert (command[1]["media_ref"], command[1]["expired_at"]) == (
        "store://rec-alice",
        ENDED + MONTH,
    )
    assert (b"rec-alice", None) in outbox.on(RECORDINGS_STANDARD)
    assert _state(sessions, "rec-bob") == ("held", ENDED + MONTH)


def test_a_signal_after_the_window_holds_nothing(
    service: RetentionService, outbox: MemoryOutbox, sessions: sessionmaker[Session]
) -> None:
    service.ingest_recording(_announce(outbox, "rec-1"), ENDED)
    late = ENDED + MONTH + timedelta(days=1)
    assert service.apply_signal(_signal(outbox, "e-late", "dispute", late), late) == 0
    assert _state(sessions, "rec-1") == ("standard", ENDED + MONTH)


def test_an_erasure_deletes_before_the_date_but_keeps_held_recordings_restricted(
    service: RetentionService,
    units: NotingUnitOfWork,
    outbox: MemoryOutbox,
    sessions: sessionmaker[Session],
) -> None:
    service.ingest_recording(_announce(outbox, "rec-free"), ENDED)
    service.ingest_recording(_announce(outbox, "rec-held", contact="call-disputed"), ENDED)
    service.ingest_recording(_announce(outbox, "rec-coaching", controller="COMNEXIO"), ENDED)
    dispute, _ = service.place_hold("contact", "call-disputed", "dispute", "c-9", "dpo", ENDED)
    later = ENDED + timedelta(hours=1)
    service.place_hold("recording", "rec-held", "fraud", "c-10", "dpo", later)
    outbox.sent.clear()

    now = ENDED + timedelta(days=3)  # well inside the standard month
    with units.begin() as unit:
        erased, messages = service.erase_recordings(unit.session, [ALICE], {"ORES"}, "req-1", now)
    assert erased.deleted == ["rec-free"]
    assert erased.held == [("rec-held", ["dispute", "fraud"])]
    assert outbox.sent == [], "the caller sends the messages"
    outbox.sent.extend(messages)
    assert [key for key, _ in outbox.on(RECORDINGS_EXPIRED)] == [b"rec-free"]
    assert outbox.audited() == ["recording.expired", "recording.retained_under_hold"]
    assert _state(sessions, "rec-free") == ("expired", ENDED + MONTH)
    assert _state(sessions, "rec-held") == ("held", ENDED + MONTH)
    assert _state(sessions, "rec-coaching") == ("standard", ENDED + MONTH), "not ORES's"
    with sessions() as session:
        restricted = RetentionLedger(session).history("rec-held")[-1]
    assert (restricted.action, restricted.hold_id) == ("restricted", dispute.hold_id), "oldest"
    assert dict(restricted.details) == {"erasure_request": "req-1", "answer": "retained_under_hold"}


def test_releasing_the_last_hold_returns_the_recording_with_grace(
    service: RetentionService, outbox: MemoryOutbox, sessions: sessionmaker[Session]
) -> None:
    service.ingest_recording(_announce(outbox, "rec-1", contact="call-1"), ENDED)
    complaint, _ = service.place_hold("subject", ALICE, "complaint", "c-1", "dpo", ENDED)
    fraud, _ = service.place_hold("contact", "call-1", "fraud", "c-2", "dpo", ENDED)
    released_at = ENDED + 3 * MONTH

    assert service.release_hold(complaint.hold_id, "settled", "dpo", released_at) == []
    assert _state(sessions, "rec-1") == ("held", ENDED + MONTH), "the fraud hold still covers it"
    assert service.release_hold(fraud.hold_id, "closed", "dpo", released_at) == ["rec-1"]
    assert _state(sessions, "rec-1") == ("standard", released_at + GRACE)
    assert outbox.on(RECORDINGS_HOLD)[-1] == (b"rec-1", None)
    returned = outbox.on(RECORDINGS_STANDARD)[-1][1]
    assert returned is not None
    assert (returned["state"], returned["retain_until"]) == ("standard", released_at + GRACE)

    assert service.sweep(released_at + GRACE - timedelta(minutes=1)).expired == []
    assert service.sweep(released_at + GRACE).expired == ["rec-1"]


def test_a_hold_on_a_merged_subject_holds_the_recordings_filed_under_its_alias(
    service: RetentionService,
    outbox: MemoryOutbox,
    sessions: sessionmaker[Session],
    digest: Callable[[str], str],
    pseudonym_for: Callable[[str], str],
) -> None:
    phone, email = (IdentifierKind.PHONE, digest("p1")), (IdentifierKind.EMAIL, digest("e1"))
    with sessions.begin() as session:
        index = SubjectIndex(session)
        older = index.resolve_or_create([phone], pseudonym_for, ENDED)
        newer = index.resolve_or_create([email], pseudonym_for, ENDED + timedelta(hours=1))
    service.ingest_recording(_announce(outbox, "rec-newer", newer), ENDED)
    with sessions.begin() as session:
        SubjectIndex(session).resolve_or_create([phone, email], pseudonym_for, ENDED)

    assert service.place_hold("subject", older, "litigation", "c-3", "dpo", ENDED)[1] == 1
    assert _state(sessions, "rec-newer") == ("held", ENDED + MONTH)
    assert service.sweep(ENDED + 2 * MONTH).expired == []


def test_messages_leave_only_from_a_transaction_about_to_commit(
    service: RetentionService, outbox: MemoryOutbox, events: list[str]
) -> None:
    service.ingest_recording(_announce(outbox, "rec-1"), ENDED)
    assert events == ["begin", "send 1", "committed"]

    events.clear()
    with pytest.raises(UnknownHoldError):
        service.release_hold("h-missing", "closed", "dpo", ENDED)
    assert events == ["begin", "rolled back"], "the ledger refused: nothing was sent"


def test_a_refused_send_rolls_the_ledger_back_and_the_action_can_be_retried(
    service: RetentionService,
    outbox: MemoryOutbox,
    events: list[str],
    sessions: sessionmaker[Session],
) -> None:
    outbox.refusing = True
    with pytest.raises(OutboxRefused):
        service.ingest_recording(_announce(outbox, "rec-1"), ENDED)
    assert events == ["begin", "send 1", "rolled back"]
    assert _state(sessions, "rec-1") is None
    with sessions() as session:
        assert AuditLog(session).entries() == [], "the audit entry went with the transaction"
    assert outbox.sent == []

    outbox.refusing = False
    assert service.ingest_recording(_announce(outbox, "rec-1"), ENDED) == "registered"
    assert outbox.audited() == ["recording.registered"]


def test_a_dead_letter_and_the_report_need_no_container(
    service: RetentionService, outbox: MemoryOutbox
) -> None:
    service.ingest_recording(_announce(outbox, "rec-1"), ENDED)
    service.dead_letter(RETENTION_SIGNALS, 0, 7, b"k", b"not avro", "retention",
                        "malformed", "not Avro", ENDED)  # fmt: skip
    ((key, letter),) = outbox.on(CONTACT_DEADLETTER)
    assert key == records.dead_letter_key(RETENTION_SIGNALS, 0, 7)
    assert letter is not None
    assert (letter["source_offset"], letter["reason_code"]) == (7, "malformed")
    report = service.report(ENDED + MONTH - timedelta(days=1))
    assert report.total("due_soon") == 1
