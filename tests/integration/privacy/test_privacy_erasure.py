"""Erasure end to end on the real broker and ledger: one person on five channels, a held
recording, ORES's instruction through privacy.instructions.v1, every consumer answering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flow import decoded, drain, publish, route, route_person, send
from people import EMAIL, HANDLE, PHONE, RAW_SPELLINGS, coaching_recording, example, fresh

from processors.crypto import KeyUnavailable
from schemas.serde import AvroSerde
from streams.control.privacy.config import load_registry
from streams.control.privacy.evidence import request_report
from streams.control.privacy.intake import Intake, identifiers
from streams.control.retention.service import RetentionService
from streams.keys import load_keys
from streams.ledger import session_factory
from streams.plaintext import open_event, vault_lookup
from streams.sdk.downstream.example import serve_registered

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)
TAGGED_TOPICS = ("contact.ores.v1", "contact.comnexio.v1", "contact.restricted.v1")


def _erasure(**overrides: object) -> Intake:
    values: dict[str, object] = {
        "request_type": "erasure",
        "identifiers": identifiers([("phone", PHONE), ("social_handle", f"facebook:{HANDLE}")]),
        "submitted_by": "privacy-office", "received_at": NOW, "verified_by": "id_card_copy",
    }  # fmt: skip
    return Intake(**{**values, **overrides})  # type: ignore[arg-type]


def test_erasure_across_five_channels_with_a_held_recording(
    container, privacy, telemetry, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("DEBUG")
    route_person(container, NOW, [("phone", coaching_recording())])
    recordings = decoded(container, "recordings.standard.v1")
    held_id = next(
        r["recording_id"] for _, r in recordings if r["recording_kind"] == "chat_transcript"
    )
    retention = RetentionService.from_container(container, actor="test", grace_days=7)
    retention.place_hold("recording", held_id, "dispute", "case 2026-118", "legal", NOW)
    retention.close()

    request = privacy.submit(_erasure(), NOW)
    assert request.state == "awaiting_controller"
    assert request.controllers == {"ORES", "COMNEXIO"}
    assert len(request.subjects) == 1
    forwarded = decoded(container, "privacy.controller.ores.v1")
    assert [r["request_id"] for _, r in forwarded] == [request.request_id]

    publish(container, "privacy.instructions.v1", "ControllerInstruction", request.request_id, {
        "request_id": request.request_id, "decision": "execute", "reason": None,
        "decided_at": NOW, "controller": "ORES"})  # fmt: skip
    drain(container, privacy, NOW + timedelta(minutes=5))
    request = privacy.get(request.request_id)
    assert request.state == "awaiting_acks"

    commands = decoded(container, "privacy.erasure.v1")
    consumers = {(c["consumer"], c["controller"]) for _, c in commands}
    assert consumers == {
        ("crm", "ORES"), ("recording_store", "ORES"), ("recording_store", "COMNEXIO"),
        ("coaching_tool", "COMNEXIO"), ("survey_tool", "ORES"), ("reporting_warehouse", "ORES"),
        ("reporting_warehouse", "COMNEXIO"), ("ores_systems", "ORES"),
    }  # fmt: skip
    held = [(c["consumer"], c["held_recordings"]) for _, c in commands if c["held_recordings"]]
    assert {consumer for consumer, _ in held} <= {"recording_store", "coaching_tool"}
    kept = {recording for _, ids in held for recording in ids}
    assert held_id in kept  # the hold placed by hand; complaints among the events hold more
    answered: list[str] = []
    serve_registered(container, load_registry(container).consumers, max_idle_s=2.0,
                     say=answered.append)  # fmt: skip
    assert len(answered) == len(commands)
    drain(container, privacy, NOW + timedelta(hours=1))
    request = privacy.get(request.request_id)
    assert request.state == "completed"
    acks = decoded(container, "privacy.acks.v1")
    kept_answers = {a["consumer"] for _, a in acks if a["outcome"] == "retained_under_hold"}
    assert kept_answers == {consumer for consumer, _ in held}

    keys = load_keys(container.settings)
    serde = AvroSerde(container.schemas)
    with session_factory(container.ledger_engine)() as session:
        for logical in TAGGED_TOPICS:
            for _, tagged in decoded(container, logical):
                with pytest.raises(KeyUnavailable):
                    open_event(serde, tagged, keys.master_key, vault_lookup(session))
    expired = {r["recording_id"] for _, r in decoded(container, "recordings.expired.v1")}
    assert expired == {r["recording_id"] for _, r in recordings} - kept
    with session_factory(container.ledger_engine)() as session:
        report = request_report(session, request.request_id, NOW + timedelta(hours=2))
    assert {c["consumer"] for c in report["consumers"]} == {c for c, _ in consumers}
    assert all(c["outcome"] in {"done", "retained_under_hold"} for c in report["consumers"])
    assert report["execution"][-1]["keys_shredded"] >= 1
    assert sum(step["recordings_retained_under_hold"] for step in report["execution"]) >= 1
    assert PHONE not in repr(report)
    assert EMAIL not in repr(report)
    states = [s for _, s in decoded(container, "privacy.subject-state.v1")]
    assert states
    assert all(s["erased"] for s in states)
    assert EMAIL not in repr(states)
    erased_subject = request.subjects[0]
    comeback = fresh(example("phone", "inbound_call"), phone=PHONE)
    send(container, [("phone", comeback)])
    route(container)
    (new,) = [t for _, t in decoded(container, "contact.ores.v1")
              if t["event_id"] == comeback["envelope"]["event_id"]]  # fmt: skip
    assert new["governance"]["subject_pseudonym"] != erased_subject  # a new subject
    with session_factory(container.ledger_engine)() as session:
        opened = open_event(serde, new, keys.master_key, vault_lookup(session))
    assert opened["envelope"]["subject"]["phone"] == PHONE

    captured = caplog.text + "\n" + telemetry.exported_text()
    assert "privacy.execute" in captured
    assert "contactflow.privacy.requests" in captured
    for raw in (*RAW_SPELLINGS, HANDLE.encode(), EMAIL.lower().encode()):
        assert raw.decode() not in captured
