"""`contactflow deadletters summary | replay` on the real broker, with dead letters made by
the real router: counted without their bytes, replayed to their source topic once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from appproc import app_env
from confluent_kafka import Producer
from typer.testing import CliRunner

from schemas.examples import example_events
from streams.cli import app
from streams.errors import ContactflowError
from streams.kafka.readback import read_all
from streams.ledger import AuditLog, session_factory, upgrade
from streams.ops.deadletters import REPLAY_HEADER, REPLAYED_ACTION
from streams.router.worker import RouterWorker
from streams.sdk.producer import raw_topic

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


def test_purge_deletes_dead_letters_older_than_the_cut_off_per_partition(container) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka import Consumer, TopicPartition

    from schemas.serde import AvroSerde
    from streams.ops.deadletters import PURGED_ACTION

    upgrade(container.settings.resolved_database_url())
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    serde, contract = AvroSerde(container.schemas), container.schemas.latest("DeadLetter")
    topic = container.topics.name("contact.deadletter.v1")
    ages = {0: [10, 0.04, 9], 1: [5, 4], 2: [0.08]}  # days, in offset order per partition
    producer = Producer(container.settings.kafka_client_config())
    for partition, in_partition in ages.items():
        for offset, age in enumerate(in_partition):
            letter = {
                "source_topic": container.topics.name(raw_topic("phone")),
                "source_partition": 0, "source_offset": 10 * partition + offset,
                "stage": "decode", "reason_code": "malformed", "reason": "not Avro",
                "original_key": None, "original_value": b"+32 471 12 34 56",
                "original_headers": {}, "failed_at": now - timedelta(days=age),
            }  # fmt: skip
            producer.produce(topic, serde.serialize(letter, contract), partition=partition)
    producer.flush(30)
    with session_factory(container.ledger_engine).begin() as session:  # one replayed before
        AuditLog(session).append("cli", REPLAYED_ACTION, now - timedelta(days=3),
                                 details={"topic": topic, "positions": [[1, 0]]})  # fmt: skip
    runner, env = CliRunner(), app_env(container)
    purge = ["deadletters", "purge", "--older-than", "3d", "--now", now.isoformat()]

    dry = runner.invoke(app, [*purge, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 dead letter(s)" in dry.output
    assert "(2 never replayed); 3 kept, of which 1 older" in dry.output
    assert len(read_all(container.settings.kafka_client_config(), topic)) == 6

    done = runner.invoke(app, [*purge, "--by", "privacy-office"], env=env)
    assert done.exit_code == 0, done.output
    assert "deleted 3 dead letter(s)" in done.output
    assert "471" not in dry.output + done.output
    left = read_all(container.settings.kafka_client_config(), topic)
    assert sorted((m.partition(), m.offset()) for m in left) == [(0, 1), (0, 2), (2, 0)]
    reader = Consumer({**container.settings.kafka_client_config(), "group.id": "purge-check"})
    try:  # gone for every reader, not only for ours
        lows = [reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[0]
                for p in range(3)]  # fmt: skip
    finally:
        reader.close()
    assert lows == [1, 2, 0]
    with session_factory(container.ledger_engine)() as session:
        (entry,) = AuditLog(session).entries(action=PURGED_ACTION)
    assert entry.actor == "privacy-office"
    assert entry.details == {
        "topic": topic, "before": (now - timedelta(days=3)).isoformat(), "count": 3,
        "never_replayed": 2, "cuts": [[0, 1], [1, 2]],
    }  # fmt: skip

    again = runner.invoke(app, purge, env=env)
    assert again.exit_code == 0, again.output
    assert "deleted 0 dead letter(s)" in again.output
    with session_factory(container.ledger_engine)() as session:
        assert len(AuditLog(session).entries(action=PURGED_ACTION)) == 1  # nothing to record

    wrong = runner.invoke(app, ["deadletters", "purge", "--older-than", "soon"], env=env)
    assert wrong.exit_code == 2
    assert "expected a duration" in wrong.output
