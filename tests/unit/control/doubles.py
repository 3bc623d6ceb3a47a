"""What the control-plane orchestrators' unit tests stand in for Kafka with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.topic_names import PRIVACY_AUDIT
from streams.kafka.outbox import Delivery, Message, OutboxRefused
from streams.ledger import AuditLog

CATALOG = SchemaCatalog.load()


class MemoryOutbox:
    """The outbox's contract without a producer: real encoding, sends kept in order (or
    refused while `refusing`), audit entries appended to the ledger's chained log."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.serde = AvroSerde(CATALOG)
        self.sent: list[Message] = []
        self.refusing = False
        self._events = events if events is not None else []

    def encode(self, contract: str, record: Mapping[str, Any]) -> bytes:
        return self.serde.serialize(dict(record), CATALOG.latest(contract))

    def send(self, messages: Sequence[Message], what: str) -> None:
        self._events.append(f"send {len(messages)}")
        if self.refusing:
            raise OutboxRefused("Kafka is away", Delivery(undelivered=len(messages)))
        self.sent.extend(messages)

    def audit(
        self, session: Session, actor: str, action: str, now: datetime, *,
        request_id: str | None = None, subject: str | None = None,
        details: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> Message:  # fmt: skip
        AuditLog(session).append(actor, action, now, request_id=request_id, subject=subject,
                                 details=dict(details or {}))  # fmt: skip
        return PRIVACY_AUDIT, (key or request_id or action).encode(), action.encode()

    def close(self) -> None:
        self._events.append("closed")

    def on(self, topic: str) -> list[tuple[bytes, dict[str, Any] | None]]:
        """(key, decoded value or None for a tombstone) of what was sent to `topic`."""
        return [
            (key, None if value is None else self.serde.deserialize(value)[1])
            for logical, key, value in self.sent
            if logical == topic
        ]

    def audited(self) -> list[str]:
        return [value.decode() for topic, _, value in self.sent if topic == PRIVACY_AUDIT and value]
