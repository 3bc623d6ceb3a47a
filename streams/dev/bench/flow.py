"""Raw events for the router's fault tests and `bench faults`, produced at once or as a
paced background flow.

Events are the `schemas.examples` shapes with fresh event ids, contact ids and recording
ids, a few of them for a service the policy does not know (quarantine).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from processors.routing import RECORDING_KINDS
from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.topic_names import CHANNELS
from schemas.validation import from_json
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.sdk.producer import SCHEMA_HEADER, raw_topic


class ProduceFailed(ContactflowError):
    """The broker did not acknowledge every event of a flow; the message says how many."""


UNKNOWN_SERVICE = "unlisted_service"  # no policy rule names it: quarantined
RECORDING_ID_FIELD = {kind: spec[1] for kind, spec in RECORDING_KINDS.items()}


@dataclass(frozen=True)
class RawEvent:
    channel: str
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["envelope"]["event_id"])

    @property
    def recording_id(self) -> str | None:
        id_field = RECORDING_ID_FIELD.get(self.event["kind"])
        return None if id_field is None else str(self.event["payload"][id_field])


def fresh_events(count: int, *, quarantine_every: int = 40) -> list[RawEvent]:
    """`count` valid events cycling over every example, each with new ids (see
    `fresh_event_stream`)."""
    return list(itertools.islice(fresh_event_stream(quarantine_every=quarantine_every), count))


def fresh_event_stream(*, quarantine_every: int = 40) -> Iterator[RawEvent]:
    """Valid events without end, cycling over every example, each with new ids.

    Contact ids are spread (so keys cover the partitions); recording ids are unique, so
    recordings.standard.v1 can be checked one record per event.
    """
    templates = [(c, e) for c in CHANNELS for e in example_events(c)]
    for index, (channel, template) in enumerate(itertools.cycle(templates)):
        event = {**template, "envelope": dict(template["envelope"])}
        event["payload"] = dict(template["payload"])
        envelope = event["envelope"]
        envelope["event_id"] = str(uuid.uuid4())
        envelope["contact_id"] = f"{envelope['contact_id']}-{index % 97:02d}"
        if quarantine_every and index % quarantine_every == quarantine_every - 1:
            envelope["service"] = UNKNOWN_SERVICE
        id_field = RECORDING_ID_FIELD.get(event["kind"])
        if id_field is not None:
            unique = uuid.uuid4().hex
            event["payload"][id_field] = (
                f"<{unique}@mail.example.org>" if id_field == "message_id" else f"rec-{unique}"
            )
        yield RawEvent(channel, event)


@dataclass(frozen=True)
class EncodedEvent:
    event: RawEvent
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode_events(
    container: Container, events: Iterable[RawEvent], serde: AvroSerde | None = None
) -> list[EncodedEvent]:
    """Validate and Avro-encode each event for its channel's raw topic (as the SDK does);
    pass the `serde` of earlier calls to reuse its compiled encoders."""
    serde = serde or AvroSerde(container.schemas)
    encoded = []
    for item in events:
        logical = raw_topic(item.channel)
        contract = container.schemas.latest(container.topics.spec(logical).value_schema)
        record = from_json(contract, item.event)
        encoded.append(
            EncodedEvent(
                item,
                container.topics.name(logical),
                record["envelope"]["contact_id"].encode(),
                serde.serialize(record, contract),
                ((SCHEMA_HEADER, f"{contract.name}.v{contract.version}".encode()),),
            )
        )
    return encoded


@dataclass
class Delivered:
    """Where the broker put each acknowledged record (by send order); refusals by name."""

    positions: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)


class _Sender:
    """An idempotent, acks=all producer that records where each record landed."""

    def __init__(self, container: Container) -> None:
        self.delivered = Delivered()
        self.sent = 0
        self._producer = Producer(
            {
                **container.settings.kafka_client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )

    def send(self, record: EncodedEvent) -> None:
        index = self.sent
        delivered = self.delivered

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                delivered.failures[error.name()] += 1
            else:
                delivered.positions[index] = (
                    message.topic() or "",
                    message.partition() or 0,
                    message.offset() or 0,
                )

        while True:
            try:
                self._producer.produce(
                    record.topic, record.value, record.key,
                    headers=list(record.headers), on_delivery=report,
                )  # fmt: skip
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        self._producer.poll(0)

    def flush(self) -> Delivered:
        remaining = self._producer.flush(60)
        if remaining or self.delivered.failures:
            raise ProduceFailed(f"producing failed: {remaining} unacknowledged, "
                                f"refused {dict(self.delivered.failures)}")  # fmt: skip
        return self.delivered


def produce(container: Container, records: Iterable[EncodedEvent]) -> Delivered:
    """Send `records` and wait for every acknowledgement; raise if any is refused."""
    sender = _Sender(container)
    for record in records:
        sender.send(record)
    return sender.flush()


class BackgroundFlow:
    """A steady flow of `events` from a thread until `finish` (or until they run out; an
    endless stream such as `fresh_event_stream()` is fine).

    Each event is encoded just before it is sent; `finish` returns the events the broker
    acknowledged, in send order, and re-raises a failure of the flow.
    """

    def __init__(self, container: Container, events: Iterable[RawEvent], per_second: float):
        self._container = container
        self._events = events
        self._sent_events: list[RawEvent] = []
        self._per_second = per_second
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._sender = _Sender(container)
        self._thread = threading.Thread(target=self._run, name="event-flow", daemon=True)

    def _run(self) -> None:
        try:
            serde = AvroSerde(self._container.schemas)
            started = time.monotonic()
            for index, event in enumerate(self._events):
                if self._stop.is_set():
                    break
                (record,) = encode_events(self._container, [event], serde)
                self._sender.send(record)
                self._sent_events.append(event)
                self._stop.wait(max(started + (index + 1) / self._per_second - time.monotonic(), 0))
            self._sender.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by finish()
            self._error = exc

    def start(self) -> BackgroundFlow:
        self._thread.start()
        return self

    @property
    def sent(self) -> int:
        return self._sender.sent

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop sending (teardown): no result, no error."""
        self._stop.set()
        self._thread.join(30)

    def finish(self, timeout: float = 90.0) -> list[RawEvent]:
        """Stop sending; the events the broker acknowledged, or the flow's failure."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ProduceFailed(f"the event flow did not stop within {timeout:.0f}s")
        if self._error is not None:
            raise self._error
        return self._sent_events
