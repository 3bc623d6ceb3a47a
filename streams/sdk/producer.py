"""Producer SDK for the platform systems that publish contact events.

An event is checked against its channel's contract before it leaves the process: an
invalid event raises `ContractViolation` naming each field and problem, and nothing is
sent. Valid events are Avro single-object encoded, keyed by contact id, sent with an
idempotent, `acks=all` confluent-kafka producer, and carry the W3C trace context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import topic_names
from schemas.catalog import Contract, SchemaCatalog
from schemas.serde import AvroSerde
from schemas.topic_names import CHANNELS
from schemas.validation import from_json
from streams.errors import ContactflowError
from streams.telemetry import Telemetry, inject_context
from streams.topics import TopicCatalog

SCHEMA_HEADER = "contactflow-schema"


class DeliveryError(ContactflowError):
    """Some events were not acknowledged by the broker; the message counts them by error."""


def raw_topic(channel: str) -> str:
    """The declared raw topic of a channel, e.g. `contact.raw.phone.v1`."""
    try:
        return topic_names.raw_topic(channel)
    except ValueError as unknown:
        raise ContactflowError(str(unknown)) from None


@dataclass
class DeliveryTally:
    delivered: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.refused(error)

    def refused(self, error: KafkaError) -> None:
        self.failed[error.name()] = self.failed.get(error.name(), 0) + 1


class ContactEventProducer:
    """Validates, encodes and sends contact events to the raw channel topics."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        topics: TopicCatalog,
        schemas: SchemaCatalog,
        telemetry: Telemetry,
        **overrides: Any,
    ) -> None:
        config: dict[str, Any] = {
            **client_config,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
        for key, value in overrides.items():
            config[key.replace("_", ".")] = value
        if config.get("acks") not in ("all", -1, "-1") or not config["enable.idempotence"]:
            raise ContactflowError(
                "the contact-event producer must be idempotent with acks=all; "
                "do not override enable.idempotence or acks"
            )
        self._producer = Producer(config)
        self._topics = topics
        self._serde = AvroSerde(schemas)
        self._contracts: dict[str, Contract] = {
            channel: schemas.latest(topics.spec(raw_topic(channel)).value_schema)
            for channel in CHANNELS
        }
        self._tracer = telemetry.tracer("contactflow.producer")
        self._sent = telemetry.meter("contactflow.producer").create_counter(
            "contactflow.producer.events", unit="{event}", description="events handed to Kafka"
        )
        self.tally = DeliveryTally()

    def contract(self, channel: str) -> Contract:
        raw_topic(channel)
        return self._contracts[channel]

    def encode(self, channel: str, event: Mapping[str, Any]) -> tuple[str, bytes]:
        """Check `event` (JSON-shaped) against the channel contract; return (key, bytes)."""
        contract = self.contract(channel)
        record = from_json(contract, event)
        return record["envelope"]["contact_id"], self._serde.serialize(record, contract)

    def send(self, channel: str, event: Mapping[str, Any]) -> None:
        """Validate and enqueue one event; raises ContractViolation and sends nothing if bad."""
        contract = self.contract(channel)
        topic = self._topics.name(raw_topic(channel))
        with self._tracer.start_as_current_span(
            "produce contact event",
            attributes={"messaging.destination.name": topic, "contactflow.channel": channel},
        ) as span:
            key, value = self.encode(channel, event)
            span.set_attribute("contactflow.contact_id", key)
            headers = inject_context(
                [(SCHEMA_HEADER, f"{contract.name}.v{contract.version}".encode())]
            )
            self._produce(topic, key.encode(), value, headers)
        self._sent.add(1, {"contactflow.channel": channel})

    def _produce(self, topic: str, key: bytes, value: bytes, headers: list[Any]) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self.tally.on_delivery
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.1)
            except KafkaException as refused:
                # librdkafka refuses at once what cached metadata already forbids (a topic
                # this principal may not write); report it at flush like a refused delivery
                self.tally.refused(refused.args[0])
                break
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> DeliveryTally:
        """Wait for every enqueued event; raise DeliveryError if any was not acknowledged."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} event(s) still unacknowledged after {timeout:.0f}s")
        if self.tally.failed:
            detail = ", ".join(f"{n} x {name}" for name, n in sorted(self.tally.failed.items()))
            raise DeliveryError(f"the broker refused events: {detail}")
        return self.tally
