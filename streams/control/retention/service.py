"""Every retention action, one way: ledger first, Kafka messages, audit, then commit.

Each action runs in one ledger transaction. Its messages (a recording moved to the hold
topic, a tombstone, a deletion command on `recordings.expired.v1`, an audit event) are
produced and flushed *before* that transaction commits: if Kafka refuses them, the ledger
rolls back and the action can simply be retried. A crash between the flush and the commit
repeats the messages on retry (at least once); the recording store treats a second
deletion command for the same recording as done. The clock is always a parameter.

What a hold, expiry, an erasure or a release does is `processors.retention`'s decision:
this service loads the facts through the ledger, stores the result and sends the messages.
It takes its ledger (a unit of work) and its outbox as arguments; `from_container` builds
the real ones.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from processors.retention import (
    RETAINED_UNDER_HOLD,
    ErasureAction,
    ReleaseAction,
    erasure_of,
    holds_on_placement,
    release_of,
    signal_hold_id,
)
from schemas import records
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CONTACT_DEADLETTER,
    RECORDINGS_EXPIRED,
    RECORDINGS_HOLD,
    RECORDINGS_STANDARD,
)
from streams.bootstrap import Container
from streams.kafka.outbox import Message, Outbox
from streams.ledger import (
    HoldRecord,
    NewHold,
    NewRecording,
    RecordingRecord,
    RetentionLedger,
    RetentionReport,
    UnknownRecordingError,
    session_factory,
)

log = logging.getLogger(__name__)

STANDARD, HOLD, EXPIRED = RECORDINGS_STANDARD, RECORDINGS_HOLD, RECORDINGS_EXPIRED


@dataclass
class SweepResult:
    sweep_id: str
    expired: list[str] = field(default_factory=list)


@dataclass
class ErasedRecordings:
    """What an erasure did to recordings: deleted ids, and held ids with hold reasons."""

    deleted: list[str] = field(default_factory=list)
    held: list[tuple[str, list[str]]] = field(default_factory=list)


class RetentionUnit(Protocol):
    """One ledger transaction: the retention repository, and the session it and the audit
    log work in."""

    @property
    def session(self) -> Session: ...
    @property
    def ledger(self) -> RetentionLedger: ...


class LedgerUnitOfWork(Protocol):
    """Opens ledger transactions: `begin()` commits on a clean exit, rolls back otherwise."""

    def begin(self) -> AbstractContextManager[RetentionUnit]: ...


class RetentionOutbox(Protocol):
    """Where an action's messages go (`streams.kafka.outbox.Outbox` fits). `send` returns
    once Kafka has them all, or raises, and the action's transaction rolls back."""

    def encode(self, contract: str, record: Mapping[str, Any]) -> bytes: ...
    def send(self, messages: Sequence[Message], what: str) -> None: ...
    def audit(
        self, session: Session, actor: str, action: str, now: datetime, *,
        request_id: str | None = None, subject: str | None = None,
        details: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> Message: ...  # fmt: skip
    def close(self) -> None: ...


@dataclass(frozen=True)
class LedgerUnit:
    """A `RetentionUnit` over one SQLAlchemy session."""

    session: Session
    ledger: RetentionLedger

    @classmethod
    def of(cls, session: Session) -> LedgerUnit:
        return cls(session, RetentionLedger(session))


class SqlLedgerUnitOfWork:
    """The `LedgerUnitOfWork` of the ledger's session factory."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def begin(self) -> Iterator[LedgerUnit]:
        with self._sessions.begin() as session:
            yield LedgerUnit.of(session)


@dataclass
class _Unit:
    """One action's ledger transaction and the messages it will send before committing."""

    session: Session
    ledger: RetentionLedger
    messages: list[Message] = field(default_factory=list)


class RetentionService:
    def __init__(
        self, ledger: LedgerUnitOfWork, outbox: RetentionOutbox, *, serde: AvroSerde,
        actor: str, grace_days: int,
    ) -> None:  # fmt: skip
        self._ledger = ledger
        self._outbox = outbox
        self._serde = serde
        self._actor = actor
        self._grace_days = grace_days

    @classmethod
    def from_container(
        cls, container: Container, *, actor: str, grace_days: int
    ) -> RetentionService:
        """The service over the container's ledger, with a Kafka outbox of its own."""
        outbox = Outbox(container.settings.kafka_client_config(), container.topics,
                        container.schemas)  # fmt: skip
        ledger = SqlLedgerUnitOfWork(session_factory(container.ledger_engine))
        return cls(ledger, outbox, serde=outbox.serde, actor=actor, grace_days=grace_days)

    # -- inputs from the data plane ------------------------------------------------------

    def ingest_recording(self, value: bytes, now: datetime) -> str:
        """Register a recording the router announced; hold it at once if a hold covers it."""
        _, record = self._serde.deserialize(value, "RecordingRetention")
        if record["state"] != "standard":
            return "ignored"
        with self._unit() as unit:
            recording, created = unit.ledger.register(
                NewRecording(
                    recording_id=record["recording_id"], contact_id=record["contact_id"],
                    subject_pseudonym=record["subject_pseudonym"],
                    controller=record["controller"], purpose=record["purpose"],
                    channel=record["channel"], recording_kind=record["recording_kind"],
                    ended_at=record["ended_at"], retain_until=record["retain_until"],
                    policy_version=record["policy_version"], media_ref=record["media_ref"],
                ),
                now,
            )  # fmt: skip
            if not created:
                return "known"
            self._audit(unit, "recording.registered", now, recording)
            holds = unit.ledger.active_holds_for(recording)
            if holds:
                self._hold(unit, recording, holds, now)
                return "held"
        return "registered"

    def apply_signal(self, value: bytes, now: datetime) -> int:
        """A complaint, fraud attempt or dispute: hold the subject's recordings in window."""
        _, signal = self._serde.deserialize(value, "HoldSignal")
        with self._unit() as unit:
            hold, created = unit.ledger.place_hold(
                NewHold(
                    hold_id=signal_hold_id(signal["signal_id"]), scope="subject",
                    target=signal["subject_pseudonym"], reason=signal["reason"],
                    reference=f"{signal['channel']} {signal['kind']} {signal['contact_id']}",
                    placed_by="policy", source="signal",
                ),
                now,
            )  # fmt: skip
            if not created:
                return 0
            self._audit(unit, "hold.placed", now, details=_hold_details(hold))
            return self._hold_covered(unit, hold, now, at=signal["occurred_at"])

    # -- operator actions ----------------------------------------------------------------

    def place_hold(
        self, scope: str, target: str, reason: str, reference: str, by: str, now: datetime
    ) -> tuple[HoldRecord, int]:
        """A hold placed by hand; returns it and how many recordings it moved to hold."""
        with self._unit() as unit:
            if scope == "recording" and unit.ledger.get(target) is None:
                raise UnknownRecordingError(target)
            hold, _ = unit.ledger.place_hold(
                NewHold(f"h-{uuid.uuid4().hex[:16]}", scope, target, reason, reference, by),
                now,
            )
            self._audit(unit, "hold.placed", now, details=_hold_details(hold))
            return hold, self._hold_covered(unit, hold, now, at=None)

    def release_hold(self, hold_id: str, reason: str, by: str, now: datetime) -> list[str]:
        """Release a hold; recordings no other hold covers return to standard retention."""
        with self._unit() as unit:
            hold = unit.ledger.release_hold(hold_id, by, reason, now)
            self._audit(unit, "hold.released", now, details=_hold_details(hold))
            named = unit.ledger.recordings_for(hold.scope, hold.target)
            covering = unit.ledger.covering_holds(named)
            returned = []
            for recording in named:
                release = release_of(
                    recording, covering[recording.recording_id], now, self._grace_days
                )
                if release.action is not ReleaseAction.RETURN_TO_STANDARD:
                    continue
                recording_id = recording.recording_id
                if unit.ledger.mark_standard(recording_id, release.retain_until, now,
                                             hold.hold_id):  # fmt: skip
                    moved = unit.ledger.get(recording_id) or recording
                    self._send_state(unit, moved, STANDARD, HOLD, [])
                    self._audit(unit, "recording.released", now, moved)
                    returned.append(recording_id)
            return returned

    def sweep(self, now: datetime, batch: int = 500) -> SweepResult:
        """Expire every recording past its date that no hold covers; idempotent."""
        result = SweepResult(sweep_id=f"sweep-{uuid.uuid4().hex[:12]}")
        while True:
            with self._unit() as unit:
                due = unit.ledger.due_for_expiry(now, limit=batch)
                ids = [recording.recording_id for recording in due]
                expired = unit.ledger.mark_expired_all(ids, now, result.sweep_id)
                for recording, done in zip(due, expired, strict=True):
                    if done:
                        self._send_expiry(unit, recording, now, result.sweep_id)
                        result.expired.append(recording.recording_id)
            if len(due) < batch:
                return result

    def erase_recordings(
        self, session: Session, subjects: list[str], controllers: set[str], request_id: str,
        now: datetime,
    ) -> tuple[ErasedRecordings, list[Message]]:  # fmt: skip
        """Erasure of the subjects' recordings of these controllers, in the caller's ledger
        transaction: deletion commands for those no hold covers, the held ones kept and
        restricted (GDPR Art. 17(3)(e)). The caller sends the messages before committing."""
        result = ErasedRecordings()
        unit = _Unit(session, RetentionLedger(session))
        for subject in subjects:
            named = unit.ledger.recordings_for("subject", subject)
            theirs = [r for r in named if r.controller in controllers]
            covering = unit.ledger.covering_holds(theirs)
            for recording in theirs:
                erasure = erasure_of(recording, covering[recording.recording_id])
                if erasure.action is ErasureAction.RETAIN_UNDER_HOLD:
                    unit.ledger.record_restriction(
                        recording.recording_id, now, erasure.hold_id,
                        {"erasure_request": request_id, "answer": RETAINED_UNDER_HOLD},
                    )  # fmt: skip
                    self._audit(unit, "recording.retained_under_hold", now, recording,
                                {"request_id": request_id})  # fmt: skip
                    result.held.append((recording.recording_id, list(erasure.hold_reasons)))
                elif erasure.action is ErasureAction.DELETE and unit.ledger.erase_recording(
                    recording.recording_id, now, request_id
                ):
                    self._send_expiry(unit, recording, now, f"erasure:{request_id}")
                    result.deleted.append(recording.recording_id)
        return result, unit.messages

    def dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        stage: str, code: str, reason: str, now: datetime,
    ) -> None:  # fmt: skip
        """Park an input the control plane cannot use, with its bytes and the reason; one
        line names where it was (never its bytes)."""
        log.error("%s failed at %s[%s]@%s: %s", stage, topic, partition, offset, code)
        letter = records.dead_letter(
            source_topic=topic, source_partition=partition, source_offset=offset, stage=stage,
            reason_code=code, reason=reason, original_key=key, original_value=value,
            failed_at=now,
        )  # fmt: skip
        where = records.dead_letter_key(topic, partition, offset)
        encoded = self._outbox.encode("DeadLetter", letter)
        self._outbox.send([(CONTACT_DEADLETTER, where, encoded)], "dead-letter")

    def report(self, now: datetime) -> RetentionReport:
        with self._ledger.begin() as unit:
            return unit.ledger.report(now)

    def close(self) -> None:
        self._outbox.close()

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _unit(self) -> Iterator[_Unit]:
        with self._ledger.begin() as transaction:
            unit = _Unit(transaction.session, transaction.ledger)
            yield unit
            self._outbox.send(unit.messages, "retention")

    def _hold_covered(
        self, unit: _Unit, hold: HoldRecord, now: datetime, at: datetime | None
    ) -> int:
        moved = 0
        for recording in unit.ledger.recordings_for(hold.scope, hold.target):
            if holds_on_placement(recording, at):
                moved += self._hold(unit, recording, [hold], now)
        return moved

    def _hold(
        self, unit: _Unit, recording: RecordingRecord, holds: list[HoldRecord], now: datetime
    ) -> int:
        if not unit.ledger.mark_held(recording.recording_id, holds[0].hold_id, now):
            return 0
        held = unit.ledger.get(recording.recording_id) or recording
        self._send_state(unit, held, HOLD, STANDARD, sorted({h.reason for h in holds}))
        self._audit(unit, "recording.held", now, held, {"hold_id": holds[0].hold_id})
        return 1

    def _send_state(
        self, unit: _Unit, recording: RecordingRecord, to: str, tombstone: str, reasons: list[str]
    ) -> None:
        value = records.recording_retention(
            recording_id=recording.recording_id, contact_id=recording.contact_id,
            channel=recording.channel, recording_kind=recording.recording_kind,
            media_ref=recording.media_ref, controller=recording.controller,
            purpose=recording.purpose, subject_pseudonym=recording.subject_pseudonym,
            ended_at=recording.ended_at, retain_until=recording.retain_until,
            hold_reasons=reasons if to == HOLD else (),
            policy_version=recording.policy_version,
        )  # fmt: skip
        key = recording.recording_id.encode()
        unit.messages.append((to, key, self._outbox.encode("RecordingRetention", value)))
        unit.messages.append((tombstone, key, None))

    def _send_expiry(
        self, unit: _Unit, recording: RecordingRecord, now: datetime, sweep_id: str
    ) -> None:
        value = {
            "recording_id": recording.recording_id, "contact_id": recording.contact_id,
            "media_ref": recording.media_ref, "controller": recording.controller,
            "retain_until": recording.retain_until, "expired_at": now, "sweep_id": sweep_id,
        }  # fmt: skip
        key = recording.recording_id.encode()
        unit.messages.append((EXPIRED, key, self._outbox.encode("RecordingExpired", value)))
        unit.messages.append((STANDARD, key, None))
        self._audit(unit, "recording.expired", now, recording, {"sweep_id": sweep_id})

    def _audit(
        self, unit: _Unit, action: str, now: datetime, recording: RecordingRecord | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        facts = dict(details or {})
        if recording is not None:
            facts |= {"recording_id": recording.recording_id, "state": recording.state,
                      "retain_until": recording.retain_until.isoformat(),
                      "controller": recording.controller}  # fmt: skip
        subject = recording.subject_pseudonym if recording is not None else None
        key = facts.get("recording_id") or facts.get("hold_id") or action
        audit = self._outbox.audit(unit.session, self._actor, action, now, subject=subject,
                                   details=facts, key=key)  # fmt: skip
        unit.messages.append(audit)


def _hold_details(hold: HoldRecord) -> dict[str, Any]:
    return {"hold_id": hold.hold_id, "scope": hold.scope, "target": hold.target,
            "reason": hold.reason, "source": hold.source, "reference": hold.reference}  # fmt: skip
