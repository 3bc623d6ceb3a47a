"""The whole pipeline on the secured broker, each worker as its own role, each doing what
its task needs and no more: producers -> router -> tagged topics and recordings ->
privacy app (faust) registers -> retention sweep -> recording store reads the deletion
command; ORES reads its events as ciphertext; the data engineer reads dead letters only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from appproc import running_privacy_app
from confluent_kafka import Producer
from secureclients import read_outcomes, recording_call, wait_registered
from typer.testing import CliRunner

from schemas.serde import AvroSerde
from streams.bootstrap import bootstrap
from streams.cli import app
from streams.keys import load_keys
from streams.ledger import session_factory, upgrade
from streams.plaintext import open_event, vault_lookup
from streams.router.worker import RouterWorker
from streams.telemetry import Telemetry

pytestmark = pytest.mark.integration


def test_every_worker_runs_as_its_own_role(secure, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "backend"  # the ledger and keys the back-end workers share

    def as_role(role: str):  # type: ignore[no-untyped-def]
        return bootstrap(secure.settings(role, shared), telemetry=Telemetry.in_memory())

    router = as_role("router")
    upgrade(router.settings.resolved_database_url())
    load_keys(router.settings)
    recording_id = f"rec-{uuid.uuid4().hex[:10]}"
    call = recording_call(recording_id)
    phone = as_role("producer-phone").producer()
    phone.send("phone", call)
    phone.flush()
    garbage = Producer(as_role("producer-email").settings.kafka_client_config())
    garbage.produce(router.topics.name("contact.raw.email.v1"), b"not an event", b"bad-1")
    assert garbage.flush(10) == 0
    stats = RouterWorker(router).run(max_idle_s=1.5)
    assert stats.events_in >= 2

    log = tmp_path / "privacy-app.log"
    env = {**secure.env("privacy-app", shared), "CONTACTFLOW_RETENTION_SWEEP_INTERVAL_S": "3600"}
    with running_privacy_app(env, log):
        registered = wait_registered(router, recording_id, log)
    assert registered.state == "standard"
    assert not any(s in log.read_text() for s in secure.all_secrets())

    far = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    swept = CliRunner().invoke(
        app, ["retention", "sweep", "--now", far], env=secure.env("retention", shared)
    )
    assert swept.exit_code == 0, swept.output
    assert "1 recording(s) expired" in swept.output

    serde = AvroSerde(router.schemas)
    store = as_role("recording-store")
    expired = store.topics.name("recordings.expired.v1")
    (commands,) = read_outcomes(store.settings.kafka_client_config(), [expired]).values()
    assert commands is not None
    assert recording_id in [serde.deserialize(m.value())[1]["recording_id"] for m in commands]

    ores = as_role("ores-consumer")
    ores_topic = ores.topics.name("contact.ores.v1")
    (tagged,) = read_outcomes(ores.settings.kafka_client_config(), [ores_topic]).values()
    assert tagged, "ORES reads the events it controls"
    phone_number = call["envelope"]["subject"]["phone"]
    for clear in (phone_number, phone_number.replace(" ", "")):
        assert all(clear.encode() not in m.value() for m in tagged), "PII is ciphertext"
    contact = call["envelope"]["contact_id"]
    mine = next(
        serde.deserialize(m.value())[1]
        for m in tagged
        if serde.deserialize(m.value())[1]["contact_id"] == contact
    )
    keys = load_keys(router.settings)
    with session_factory(router.ledger_engine)() as session:
        opened = open_event(serde, mine, keys.master_key, vault_lookup(session))
    # Only the master key and the ledger's key vault open it; no Kafka role holds them.
    assert opened["envelope"]["subject"]["phone"] == phone_number

    engineer = as_role("data-engineer")
    config = engineer.settings.kafka_client_config()
    dead_topic = engineer.topics.name("contact.deadletter.v1")
    outcomes = read_outcomes(config, [dead_topic, ores_topic])
    assert outcomes[ores_topic] is None, "no tagged payload for the data engineer"
    assert any(m.key() and b"contact.raw.email.v1" in m.key() for m in outcomes[dead_topic] or [])
