"""`contactflow deadletters summary | replay` on the real broker, with dead letters made by
the real router: counted without their bytes, replayed to their source topic once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from appproc import app_env
from confluent_kafka import Producer
from typer.testing import CliRunner

from schemas.examples import example_events
from streams.cli import app
from streams.deadletters import REPLAY_HEADER, REPLAYED_ACTION
from streams.errors import ContactflowError
from streams.ledger import AuditLog, session_factory, upgrade
from streams.producer import raw_topic
from streams.readback import read_all
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration

# A single-object header with a fingerprint no contract has, and bytes without the header.
BROKEN = [(b"contact-1", b"\xc3\x01 broken +32 471 12 34 56"), (b"contact-2", b"\x00\x01")]


def _raw_phone(container):  # type: ignore[no-untyped-def]
    topic = container.topics.name(raw_topic("phone"))
    return read_all(container.settings.kafka_client_config(), topic)


def _route(container) -> None:  # type: ignore[no-untyped-def]
    RouterWorker(container, helper=False).run(max_idle_s=1.0)


def test_dead_letters_are_summarised_and_replayed_once(container) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    producer = Producer(container.settings.kafka_client_config())
    topic = container.topics.name(raw_topic("phone"))
    for key, value in BROKEN:
        producer.produce(topic, value, key, headers=[("origin", b"ivr-7")])
    producer.flush(30)
    valid = container.producer()
    valid.send("phone", example_events("phone")[0])
    assert valid.flush().delivered == 1
    _route(container)
    runner, env = CliRunner(), app_env(container)

    summary = runner.invoke(app, ["deadletters", "summary", "--format", "json"], env=env)
    assert summary.exit_code == 0, summary.output
    counted = json.loads(summary.output)
    assert counted["total"] == 2
    assert counted["by_reason"] == [
        {"source_topic": topic, "stage": "decode", "reason_code": code, "count": 1}
        for code in ("malformed", "unknown_fingerprint")
    ]
    assert "471" not in summary.output
    assert "broken" not in summary.output

    dry = runner.invoke(app, ["deadletters", "replay", "--reason", "malformed", "--dry-run"],
                        env=env)  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert "would send 1" in dry.output
    assert len(_raw_phone(container)) == 3  # nothing sent

    replay = runner.invoke(app, ["deadletters", "replay", "--reason", "malformed", "--by",
                                 "data-engineer"], env=env)  # fmt: skip
    assert replay.exit_code == 0, replay.output
    assert "sent 1" in replay.output
    messages = _raw_phone(container)
    replayed = [m for m in messages if REPLAY_HEADER in dict(m.headers() or [])]
    assert [(m.key(), m.value()) for m in replayed] == BROKEN[1:]  # the malformed one only
    for message in replayed:
        headers = dict(message.headers() or [])
        assert headers["origin"] == b"ivr-7"  # the original headers travel too
        assert headers[REPLAY_HEADER].startswith(b"t")  # the dead-letter topic's position
    with session_factory(container.ledger_engine)() as session:
        (entry,) = AuditLog(session).entries(action=REPLAYED_ACTION)
    assert entry.actor == "data-engineer"
    assert entry.details["count"] == 1
    assert entry.details["reason_code"] == "malformed"

    again = runner.invoke(app, ["deadletters", "replay", "--reason", "malformed"], env=env)
    assert again.exit_code == 0, again.output
    assert "1 replayed before; sent 0" in again.output
    assert len(_raw_phone(container)) == 4

    _route(container)  # still malformed: dead-lettered again, at new positions
    table = runner.invoke(app, ["deadletters", "summary"], env=env)
    assert table.exit_code == 0, table.output
    assert "3 dead letter(s)" in table.output
    assert "1 replayed before" in table.output


def test_replay_refuses_a_source_topic_not_declared(container) -> None:  # type: ignore[no-untyped-def]
    from schemas.serde import AvroSerde

    upgrade(container.settings.resolved_database_url())
    serde = AvroSerde(container.schemas)
    letter = {
        "source_topic": "somebody.elses.topic", "source_partition": 0, "source_offset": 7,
        "stage": "decode", "reason_code": "malformed", "reason": "not Avro",
        "original_key": None, "original_value": b"x", "original_headers": {},
        "failed_at": datetime.now(UTC),
    }  # fmt: skip
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name("contact.deadletter.v1"),
                     serde.serialize(letter, container.schemas.latest("DeadLetter")))  # fmt: skip
    producer.flush(30)
    result = CliRunner().invoke(app, ["deadletters", "replay", "--reason", "malformed"],
                                env=app_env(container))  # fmt: skip
    assert result.exit_code == 1
    assert isinstance(result.exception, ContactflowError)  # `contactflow` prints it, exit 1
    assert "not declared in infra/topics.yaml" in str(result.exception)
