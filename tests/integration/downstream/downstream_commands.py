"""Helpers of the downstream tests: publish commands as the privacy app does, read acks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.kafka.readback import read_all
from streams.sdk.downstream.client import DownstreamConsumer, ReceivedCommand

ISSUED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def pseudonym() -> str:
    return f"sp-{uuid.uuid4().hex}"


def command(
    consumer: str,
    kind: str = "erase",
    *,
    command_id: str | None = None,
    attempt: int = 1,
    held: Iterable[str] = (),
    subject: str | None = None,
) -> dict[str, Any]:
    """A DownstreamCommand v2 record, as the privacy app publishes it."""
    return {
        "command_id": command_id or f"cmd-{uuid.uuid4().hex[:12]}",
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "command": kind,
        "consumer": consumer,
        "subject_pseudonym": subject or pseudonym(),
        "controller": "ORES",
        "purpose": "contact_handling" if kind == "stop_purpose" else None,
        "issued_at": ISSUED,
        "answer_by": ISSUED + timedelta(days=2),
        "attempt": attempt,
        "held_recordings": list(held),
        "rectified_kinds": ["phone"] if kind == "rectify" else [],
    }


def topic_of(record: dict[str, Any]) -> str:
    return "privacy.erasure.v1" if record["command"] == "erase" else "privacy.restriction.v1"


def publish(container: Container, records: Iterable[dict[str, Any]]) -> None:
    """Each record on its command topic, keyed by subject pseudonym, flushed."""
    serde = AvroSerde(container.schemas)
    contract = container.schemas.latest("DownstreamCommand")
    raw = [
        (topic_of(r), r["subject_pseudonym"].encode(), serde.serialize(r, contract))
        for r in records
    ]
    publish_raw(container, raw)


def publish_raw(container: Container, messages: Iterable[tuple[str, bytes, bytes | None]]) -> None:
    producer = Producer({**container.settings.kafka_client_config(), "acks": "all"})
    for logical, key, value in messages:
        producer.produce(container.topics.name(logical), value, key)
    assert producer.flush(30) == 0


def read_acks(container: Container) -> list[tuple[bytes, dict[str, Any]]]:
    """Every acknowledgement on privacy.acks.v1 as (key, record)."""
    serde = AvroSerde(container.schemas)
    messages = read_all(
        container.settings.kafka_client_config(), container.topics.name("privacy.acks.v1")
    )
    return [(m.key(), serde.deserialize(m.value(), "Acknowledgement")[1]) for m in messages]


def poll_until(
    consumer: DownstreamConsumer, count: int, timeout: float = 30.0
) -> list[ReceivedCommand]:
    """Poll until `count` commands arrived (or the timeout passed); returns what came."""
    received: list[ReceivedCommand] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received += consumer.poll(1.0)
    return received
