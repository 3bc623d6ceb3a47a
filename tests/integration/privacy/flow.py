"""Steps the privacy tests share: route a person's events, answer commands, read topics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from confluent_kafka import Producer

from people import one_person_on_five_channels
from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.privacy.catchup import apply_privacy_topics
from streams.privacy.service import PrivacyService
from streams.readback import read_all
from streams.retention.catchup import apply_retention_topics
from streams.retention.service import RetentionService
from streams.router.worker import RouterWorker


def send(container: Container, events: list[tuple[str, dict[str, Any]]]) -> None:
    producer = container.producer()
    for channel, event in events:
        producer.send(channel, event)
    producer.flush()


def route(container: Container) -> None:
    RouterWorker(container).run(max_idle_s=1.5)


def route_person(container: Container, now: datetime, extra: list[Any] = ()) -> list[Any]:  # type: ignore[assignment]
    """The five-channel person routed, their recordings registered with retention."""
    events = [*one_person_on_five_channels(), *extra]
    send(container, events)
    route(container)
    retention = RetentionService(container, actor="test", grace_days=7)
    try:
        apply_retention_topics(container, retention, now)
    finally:
        retention.close()
    return events


def decoded(container: Container, logical: str) -> list[tuple[Any, dict[str, Any]]]:
    serde = AvroSerde(container.schemas)
    config = container.settings.kafka_client_config()
    return [(m, serde.deserialize(m.value())[1])
            for m in read_all(config, container.topics.name(logical)) if m.value() is not None]  # fmt: skip


def publish(container: Container, logical: str, contract: str, key: str, value: dict[str, Any]) -> None:
    serde = AvroSerde(container.schemas)
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name(logical),
                     serde.serialize(value, container.schemas.latest(contract)), key.encode())  # fmt: skip
    producer.flush(10)


def drain(container: Container, privacy: PrivacyService, now: datetime) -> None:
    apply_privacy_topics(container, privacy, now)
