"""Steps the privacy tests share: route a person's events, answer commands, read topics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer
from people import PHONE, one_person_on_five_channels

from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.control.privacy.catchup import apply_privacy_topics
from streams.control.privacy.service import PrivacyService
from streams.control.retention.catchup import apply_retention_topics
from streams.control.retention.service import RetentionService
from streams.kafka.readback import read_all
from streams.ledger import UnknownRequestError
from streams.router.worker import RouterWorker


def send(container: Container, events: list[tuple[str, dict[str, Any]]]) -> None:
    producer = container.producer()
    for channel, event in events:
        producer.send(channel, event)
    producer.flush()


def route(container: Container) -> None:
    RouterWorker(container).run(max_idle_s=1.5)


def route_person(
    container: Container, now: datetime, extra: list[tuple[str, dict[str, Any]]] | None = None
) -> list[Any]:
    """The five-channel person routed, their recordings registered with retention."""
    events = [*one_person_on_five_channels(), *(extra or [])]
    send(container, events)
    route(container)
    retention = RetentionService.from_container(container, actor="test", grace_days=7)
    try:
        apply_retention_topics(container, retention, now)
    finally:
        retention.close()
    return events


def decoded(container: Container, logical: str) -> list[tuple[Any, dict[str, Any]]]:
    serde = AvroSerde(container.schemas)
    config = container.settings.kafka_client_config()
    messages = read_all(config, container.topics.name(logical))
    return [(m, serde.deserialize(m.value())[1]) for m in messages if m.value() is not None]


def restriction_request(request_id: str) -> dict[str, Any]:
    """A restriction of the five-channel person (PHONE), as a platform system sends it on
    privacy.requests.v1, received now and with proof of identity."""
    return {
        "request_id": request_id, "request_type": "restriction",
        "identifiers": [{"kind": "phone", "value": PHONE}], "purpose": None,
        "received_at": datetime.now(UTC), "verified_by": "id_card_copy",
        "submitted_by": "intake-portal", "reason": None,
    }  # fmt: skip


def publish(
    container: Container, logical: str, contract: str, key: str, value: dict[str, Any]
) -> None:
    encoded = AvroSerde(container.schemas).serialize(value, container.schemas.latest(contract))
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name(logical), encoded, key.encode())
    producer.flush(10)


def drain(container: Container, privacy: PrivacyService, now: datetime) -> None:
    apply_privacy_topics(container, privacy, now)


def taken_in(privacy: PrivacyService, request_id: str) -> bool:
    """Whether the ledger holds the request (the privacy app took it in)."""
    try:
        privacy.get(request_id)
    except UnknownRequestError:
        return False
    return True
