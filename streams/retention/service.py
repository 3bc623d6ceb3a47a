"""Every retention action, one way: ledger first, Kafka messages, audit, then commit.

Each action runs in one ledger transaction. Its messages (a recording moved to the hold
topic, a tombstone, a deletion command on `recordings.expired.v1`, an audit event) are
produced and flushed *before* that transaction commits: if Kafka refuses them, the ledger
rolls back and the action can simply be retried. A crash between the flush and the commit
repeats the messages on retry (at least once); the recording store treats a second
deletion command for the same recording as done. The clock is always a parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Producer
from sqlalchemy.orm import Session

from processors.retention import retain_after_release, signal_hold_id, within_window
from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.ledger import (
    AuditLog,
    HoldRecord,
    NewHold,
    NewRecording,
    RecordingRecord,
    RetentionLedger,
    RetentionReport,
    session_factory,
)

STANDARD, HOLD, EXPIRED = "recordings.standard.v1", "recordings.hold.v1", "recordings.expired.v1"
AUDIT = "privacy.audit.v1"


@dataclass
class SweepResult:
    sweep_id: str
    expired: list[str] = field(default_factory=list)


@dataclass
class _Unit:
    """One action's ledger session and the messages it will send before committing."""

    session: Session
    ledger: RetentionLedger
    messages: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)


class RetentionService:
    def __init__(self, container: Container, *, actor: str, grace_days: int) -> None:
        self._sessions = session_factory(container.ledger_engine)
        self._serde = AvroSerde(container.schemas)
        self._topics = container.topics
        self._schemas = container.schemas
        self._actor = actor
        self._grace_days = grace_days
        self._producer = Producer(
            {**container.settings.kafka_client_config(), "enable.idempotence": True,
             "acks": "all", "linger.ms": 5}
        )  # fmt: skip

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
            returned = []
            for recording in unit.ledger.recordings_for(hold.scope, hold.target):
                if recording.state != "held" or unit.ledger.active_holds_for(recording):
                    continue
                until = retain_after_release(now, self._grace_days, recording.retain_until)
                if unit.ledger.mark_standard(recording.recording_id, until, now, hold.hold_id):
                    moved = unit.ledger.get(recording.recording_id) or recording
                    self._send_state(unit, moved, STANDARD, HOLD, [])
                    self._audit(unit, "recording.released", now, moved)
                    returned.append(recording.recording_id)
            return returned

    def sweep(self, now: datetime, batch: int = 500) -> SweepResult:
        """Expire every recording past its date that no hold covers; idempotent."""
        result = SweepResult(sweep_id=f"sweep-{uuid.uuid4().hex[:12]}")
        while True:
            with self._unit() as unit:
                due = unit.ledger.due_for_expiry(now, limit=batch)
                for recording in due:
                    if unit.ledger.mark_expired(recording.recording_id, now, result.sweep_id):
                        self._send_expiry(unit, recording, now, result.sweep_id)
                        result.expired.append(recording.recording_id)
            if len(due) < batch:
                return result

    def dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        stage: str, code: str, reason: str, now: datetime,
    ) -> None:  # fmt: skip
        """Park an input the control plane cannot use, with its bytes and the reason."""
        letter = {
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "stage": stage, "reason_code": code, "reason": reason, "original_key": key,
            "original_value": value, "original_headers": {}, "failed_at": now,
        }  # fmt: skip
        contract = self._schemas.latest("DeadLetter")
        self._send([("contact.deadletter.v1", f"{topic}:{partition}:{offset}".encode(),
                     self._serde.serialize(letter, contract))])  # fmt: skip

    def report(self, now: datetime) -> RetentionReport:
        with self._sessions() as session:
            return RetentionLedger(session).report(now)

    def close(self) -> None:
        self._producer.flush(30)

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _unit(self) -> Iterator[_Unit]:
        with self._sessions.begin() as session:
            unit = _Unit(session, RetentionLedger(session))
            yield unit
            self._send(unit.messages)

    def _hold_covered(
        self, unit: _Unit, hold: HoldRecord, now: datetime, at: datetime | None
    ) -> int:
        moved = 0
        for recording in unit.ledger.recordings_for(hold.scope, hold.target):
            if recording.state != "standard" or (
                at is not None and not within_window(recording, at)
            ):
                continue
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
        value = {
            "recording_id": recording.recording_id, "contact_id": recording.contact_id,
            "channel": recording.channel, "recording_kind": recording.recording_kind,
            "media_ref": recording.media_ref, "controller": recording.controller,
            "purpose": recording.purpose, "subject_pseudonym": recording.subject_pseudonym,
            "ended_at": recording.ended_at, "retain_until": recording.retain_until,
            "state": "held" if to == HOLD else "standard", "hold_reasons": reasons,
            "policy_version": recording.policy_version,
        }  # fmt: skip
        key = recording.recording_id.encode()
        contract = self._schemas.latest("RecordingRetention")
        unit.messages.append((to, key, self._serde.serialize(value, contract)))
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
        contract = self._schemas.latest("RecordingExpired")
        unit.messages.append((EXPIRED, key, self._serde.serialize(value, contract)))
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
        entry = AuditLog(unit.session).append(self._actor, action, now, subject=subject,
                                              details=facts)  # fmt: skip
        value = {
            "audit_id": entry.entry_hash, "at": now, "actor": self._actor, "action": action,
            "request_id": None, "subject_pseudonym": subject,
            "details": {k: str(v) for k, v in facts.items()},
        }  # fmt: skip
        contract = self._schemas.latest("AuditEvent")
        key = (facts.get("recording_id") or facts.get("hold_id") or action).encode()
        unit.messages.append((AUDIT, key, self._serde.serialize(value, contract)))

    def _send(self, messages: list[tuple[str, bytes, bytes | None]]) -> None:
        failures: list[str] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error.name())

        for logical, key, value in messages:
            self._producer.produce(self._topics.name(logical), value, key, on_delivery=on_delivery)
        remaining = self._producer.flush(30)
        if remaining or failures:
            raise ContactflowError(
                f"Kafka did not take the retention messages ({remaining} pending, "
                f"{len(failures)} refused: {sorted(set(failures))}); nothing was committed"
            )


def _hold_details(hold: HoldRecord) -> dict[str, Any]:
    return {"hold_id": hold.hold_id, "scope": hold.scope, "target": hold.target,
            "reason": hold.reason, "source": hold.source, "reference": hold.reference}  # fmt: skip
