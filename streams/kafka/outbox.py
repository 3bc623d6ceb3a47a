"""Messages a control-plane action sends before its ledger transaction commits.

Both control-plane services (retention, privacy requests) work the same way: the ledger
transaction decides, the messages it implies are collected, produced and flushed, and
only then does the transaction commit. If Kafka refuses them the ledger rolls back and the
action can be retried; a crash between flush and commit repeats them (at least once), so
every consumer treats a repeated message as the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaException, Producer
from sqlalchemy.orm import Session

from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.topic_names import PRIVACY_AUDIT
from streams.errors import ContactflowError
from streams.kafka.refusals import about_the_records
from streams.ledger import AuditLog
from streams.topics import TopicCatalog

Message = tuple[str, bytes, bytes | None]
"""(logical topic, key, value or None for a tombstone)."""
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]] | None]
"""(topic, key, value, headers) as produced."""


@dataclass
class Delivery:
    """What the broker made of records sent with `deliver_all`."""

    delivered: int = 0
    undelivered: int = 0  # still queued when the flush timed out
    refusals: list[str] = field(default_factory=list)  # error names, one per refused record

    @property
    def complete(self) -> bool:
        return not self.undelivered and not self.refusals

    def describe(self) -> str:
        names = ", ".join(sorted(set(self.refusals))) or "none"
        return f"{self.undelivered} unacknowledged, {len(self.refusals)} refused ({names})"


def deliver_all(producer: Producer, records: Iterable[Record], timeout: float = 60.0) -> Delivery:
    """Produce every record, waiting while the local queue is full, then flush."""
    delivery = Delivery()

    def on_delivery(error: Any, _message: Any) -> None:
        if error is None:
            delivery.delivered += 1
        else:
            delivery.refusals.append(error.name())

    for topic, key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.05)
            except KafkaException as exc:  # refused before sending (too large for the client)
                delivery.refusals.append(exc.args[0].name())
                break
        producer.poll(0)
    delivery.undelivered = producer.flush(timeout)
    return delivery


class OutboxRefused(ContactflowError):
    """Kafka did not take a unit's messages, so nothing was committed. `about_the_records`:
    it refused them for what they are (size, form), so sending them again cannot succeed;
    otherwise (the broker away, a timeout) the same unit may well succeed later."""

    def __init__(self, message: str, delivery: Delivery) -> None:
        super().__init__(message)
        self.delivery = delivery
        self.about_the_records = not delivery.undelivered and about_the_records(delivery.refusals)

    @property
    def reason_code(self) -> str:
        """The broker's error name (the first), for a dead letter."""
        return sorted(set(self.delivery.refusals))[0] if self.delivery.refusals else "timed_out"


class Outbox:
    """An idempotent producer that sends a unit's messages and waits until Kafka has them."""

    def __init__(
        self, client_config: Mapping[str, Any], topics: TopicCatalog, schemas: SchemaCatalog
    ) -> None:
        self._topics = topics
        self._schemas = schemas
        self.serde = AvroSerde(schemas)
        self._producer = Producer(
            {**client_config, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )

    def encode(self, contract: str, record: Mapping[str, Any]) -> bytes:
        """`record` in the latest version of `contract`, single-object encoded."""
        return self.serde.serialize(dict(record), self._schemas.latest(contract))

    def send(self, messages: Sequence[Message], what: str) -> None:
        """Produce and flush; OutboxRefused (nothing committed) unless Kafka takes them all."""
        records = (
            (self._topics.name(logical), key, value, None) for logical, key, value in messages
        )
        delivery = deliver_all(self._producer, records, 30)
        if not delivery.complete:
            raise OutboxRefused(
                f"Kafka did not take the {what} messages ({delivery.describe()}); "
                "nothing was committed",
                delivery,
            )

    def audit(
        self, session: Session, actor: str, action: str, now: datetime, *,
        request_id: str | None = None, subject: str | None = None,
        details: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> Message:  # fmt: skip
        """Append to the hash-chained audit log and return its `privacy.audit.v1` message."""
        facts = dict(details or {})
        entry = AuditLog(session).append(actor, action, now, request_id=request_id,
                                         subject=subject, details=facts)  # fmt: skip
        value = {
            "audit_id": entry.entry_hash, "at": now, "actor": actor, "action": action,
            "request_id": request_id, "subject_pseudonym": subject,
            "details": {k: str(v) for k, v in facts.items()},
        }  # fmt: skip
        label = key or request_id or action
        return PRIVACY_AUDIT, label.encode(), self.encode("AuditEvent", value)

    def close(self) -> None:
        self._producer.flush(30)
