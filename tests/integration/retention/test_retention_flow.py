"""One call's recording through the whole retention life on the real broker: router ->
recordings.standard.v1 -> the faust control-plane app registers it -> a hold (by hand) ->
release -> a sweep at a moved clock -> the deletion command, each step in the audit log."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from appproc import app_env, privacy_app, wait_for
from typer.testing import CliRunner

from schemas.examples import example_events
from schemas.serde import AvroSerde
from streams.cli import app
from streams.kafka.readback import read_all
from streams.ledger import AuditLog, RetentionLedger, session_factory, upgrade
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration


def _recording(container, recording_id: str):  # type: ignore[no-untyped-def]
    with session_factory(container.ledger_engine)() as session:
        return RetentionLedger(session).get(recording_id)


def test_one_call_from_raw_event_to_deletion_command(container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    now = datetime.now(UTC)
    call = copy.deepcopy(
        next(e for e in example_events("phone") if e["kind"] == "recording_available")
    )
    recording_id = f"rec-{uuid.uuid4().hex[:10]}"
    call["envelope"] |= {"event_id": str(uuid.uuid4()), "purpose": "contact_handling",
                         "occurred_at": (now - timedelta(days=2)).isoformat()}  # fmt: skip
    call["payload"] |= {"recording_id": recording_id,
                        "started_at": (now - timedelta(days=2, minutes=5)).isoformat(),
                        "ended_at": (now - timedelta(days=2)).isoformat()}  # fmt: skip
    producer = container.producer()
    producer.send("phone", call)
    producer.flush()
    RouterWorker(container).run(max_idle_s=1.5)

    log = tmp_path / "privacy-app.log"
    with privacy_app(container, log):
        registered = wait_for(
            lambda: _recording(container, recording_id), "the app to register it", log
        )
    assert registered.state == "standard"
    assert registered.retain_until == registered.ended_at + timedelta(days=30)

    runner, env = CliRunner(), app_env(container)
    placed = runner.invoke(app, ["hold", "place", "--recording", recording_id, "--reason",
                                 "dispute", "--ref", "CASE-2026-118"], env=env)  # fmt: skip
    assert placed.exit_code == 0, placed.output
    assert "1 recording(s) moved to hold" in placed.output
    hold_id = placed.output.split("placed hold ")[1].split()[0]
    assert _recording(container, recording_id).state == "held"

    far = (now + timedelta(days=400)).isoformat()
    swept = runner.invoke(app, ["retention", "sweep", "--now", far], env=env)
    assert "0 recording(s) expired" in swept.output, "a held recording never expires"

    release_at = now + timedelta(days=60)
    released = runner.invoke(app, ["hold", "release", hold_id, "--reason", "settled",
                                   "--now", release_at.isoformat()], env=env)  # fmt: skip
    assert released.exit_code == 0, released.output
    assert _recording(container, recording_id).state == "standard"
    early = (release_at + timedelta(days=7) - timedelta(minutes=1)).isoformat()
    assert "0 recording(s) expired" in runner.invoke(
        app, ["retention", "sweep", "--now", early], env=env).output  # fmt: skip
    due = (release_at + timedelta(days=7)).isoformat()
    assert "1 recording(s) expired" in runner.invoke(
        app, ["retention", "sweep", "--now", due], env=env).output  # fmt: skip
    assert (
        "0 recording(s) expired"
        in runner.invoke(app, ["retention", "sweep", "--now", due], env=env).output
    ), "second sweep: no-op"

    config = container.settings.kafka_client_config()
    serde = AvroSerde(container.schemas)
    (command,) = read_all(config, container.topics.name("recordings.expired.v1"))
    assert serde.deserialize(command.value())[1]["recording_id"] == recording_id
    held = read_all(config, container.topics.name("recordings.hold.v1"))
    assert [m.key().decode() for m in held] == [recording_id, recording_id]  # held, tombstone
    assert held[1].value() is None
    with session_factory(container.ledger_engine)() as session:
        actions = [e.action for e in AuditLog(session).entries()]
        history = [h.action for h in RetentionLedger(session).history(recording_id)]
    for step in ("recording.registered", "hold.placed", "recording.held", "hold.released",
                 "recording.released", "recording.expired"):  # fmt: skip
        assert step in actions
    assert history == ["registered", "held", "released", "expired"]
    report = runner.invoke(app, ["retention", "report", "--format", "json", "--now", due], env=env)
    assert '"expired"' in report.output
