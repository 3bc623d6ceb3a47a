"""Retention decisions against a moved clock: the real ledger and broker, no sleeping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.serde import AvroSerde
from streams.control.retention.service import RetentionService
from streams.kafka.readback import read_all
from streams.ledger import RetentionLedger, session_factory, upgrade

pytestmark = pytest.mark.integration

ENDED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SUBJECT = "s-" + "c" * 32
MONTH = timedelta(days=30)


@pytest.fixture
def service(container):  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    retention = RetentionService.from_container(container, actor="test", grace_days=7)
    yield retention
    retention.close()


def _announce(container, recording_id: str, subject: str = SUBJECT) -> bytes:  # type: ignore[no-untyped-def]
    value: dict[str, Any] = {
        "recording_id": recording_id, "contact_id": f"call-{recording_id}", "channel": "phone",
        "recording_kind": "call_audio", "media_ref": f"store://{recording_id}",
        "controller": "ORES", "purpose": "contact_handling", "subject_pseudonym": subject,
        "ended_at": ENDED, "retain_until": ENDED + MONTH, "state": "standard",
        "hold_reasons": [], "policy_version": "test",
    }  # fmt: skip
    return AvroSerde(container.schemas).serialize(
        value, container.schemas.latest("RecordingRetention")
    )


def _signal(container, reason: str, at: datetime, subject: str = SUBJECT) -> bytes:  # type: ignore[no-untyped-def]
    value = {
        "signal_id": str(uuid.uuid4()), "reason": reason, "subject_pseudonym": subject,
        "contact_id": "mail-1", "channel": "email", "kind": "email_received",
        "occurred_at": at, "policy_version": "test",
    }  # fmt: skip
    return AvroSerde(container.schemas).serialize(value, container.schemas.latest("HoldSignal"))


def _state(container, recording_id: str) -> str:  # type: ignore[no-untyped-def]
    with session_factory(container.ledger_engine)() as session:
        recording = RetentionLedger(session).get(recording_id)
    assert recording is not None
    return recording.state


def test_expires_after_one_month_at_the_next_sweep_not_a_minute_before(container, service) -> None:  # type: ignore[no-untyped-def]
    assert service.ingest_recording(_announce(container, "rec-a"), ENDED) == "registered"
    assert service.ingest_recording(_announce(container, "rec-a"), ENDED) == "known"

    assert service.sweep(ENDED + MONTH - timedelta(minutes=1)).expired == []
    assert service.sweep(ENDED + MONTH).expired == ["rec-a"]
    assert service.sweep(ENDED + MONTH + timedelta(days=1)).expired == [], "second sweep: no-op"

    commands = read_all(
        container.settings.kafka_client_config(), container.topics.name("recordings.expired.v1")
    )
    assert [m.key() for m in commands] == [b"rec-a"]
    expired = AvroSerde(container.schemas).deserialize(commands[0].value())[1]
    assert expired["media_ref"] == "store://rec-a"
    standard = read_all(
        container.settings.kafka_client_config(), container.topics.name("recordings.standard.v1")
    )
    assert [(m.key(), m.value()) for m in standard] == [(b"rec-a", None)], "a tombstone"


def test_complaint_on_day_20_holds_until_release_then_grace(container, service) -> None:  # type: ignore[no-untyped-def]
    service.ingest_recording(_announce(container, "rec-b"), ENDED)
    other = "s-" + "d" * 32
    service.ingest_recording(_announce(container, "rec-other", other), ENDED)

    day20 = ENDED + timedelta(days=20)
    assert service.apply_signal(_signal(container, "complaint", day20), day20) == 1
    assert _state(container, "rec-b") == "held"
    assert _state(container, "rec-other") == "standard"

    for months in (1, 2, 6, 24):
        later = ENDED + months * MONTH
        assert "rec-b" not in service.sweep(later).expired, "nothing held ever expires"

    with session_factory(container.ledger_engine)() as session:
        (hold,) = RetentionLedger(session).active_holds()
    released_at = ENDED + 3 * MONTH
    assert service.release_hold(hold.hold_id, "complaint settled", "dpo", released_at) == ["rec-b"]
    assert _state(container, "rec-b") == "standard"
    assert service.sweep(released_at + timedelta(days=7) - timedelta(minutes=1)).expired == []
    assert service.sweep(released_at + timedelta(days=7)).expired == ["rec-b"]


def test_a_signal_after_the_window_holds_nothing_and_replays_change_nothing(  # type: ignore[no-untyped-def]
    container, service
) -> None:
    service.ingest_recording(_announce(container, "rec-c"), ENDED)
    signal = _signal(container, "dispute", ENDED + MONTH + timedelta(days=1))
    assert service.apply_signal(signal, ENDED + MONTH + timedelta(days=1)) == 0
    assert service.apply_signal(signal, ENDED + MONTH + timedelta(days=2)) == 0
    assert _state(container, "rec-c") == "standard"


def test_a_hold_placed_before_a_recording_arrives_holds_it_on_arrival(container, service) -> None:  # type: ignore[no-untyped-def]
    hold, moved = service.place_hold("subject", SUBJECT, "fraud", "case-77", "ops", ENDED)
    assert moved == 0
    assert service.ingest_recording(_announce(container, "rec-d"), ENDED) == "held"
    held = read_all(
        container.settings.kafka_client_config(), container.topics.name("recordings.hold.v1")
    )
    value = AvroSerde(container.schemas).deserialize(held[0].value())[1]
    assert (value["state"], value["hold_reasons"]) == ("held", ["fraud"])
    assert hold.reason == "fraud"
