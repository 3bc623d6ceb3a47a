"""Apply what the retention topics hold now, once: for demos and catching up by hand.

The control-plane app (`contactflow run privacy`) does this continuously; this reads
`recordings.standard.v1` and `retention.signals.v1` from the start and applies every
record through the same `RetentionService`, whose actions are idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Message

from schemas.errors import SerdeError
from schemas.topic_names import RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.control.retention.service import STANDARD, RetentionService
from streams.kafka.readback import read_all

log = logging.getLogger(__name__)


@dataclass
class CatchUp:
    registered: int = 0
    held_on_arrival: int = 0
    held_by_signals: int = 0


def apply_retention_topics(
    container: Container, service: RetentionService, now: datetime
) -> CatchUp:
    config = container.settings.kafka_client_config()
    result = CatchUp()
    for message in read_all(config, container.topics.name(STANDARD)):
        value = message.value()
        if value is None:
            continue
        try:
            outcome = service.ingest_recording(value, now)
        except SerdeError as exc:
            _skip(message, exc)
            continue
        result.registered += outcome in ("registered", "held")
        result.held_on_arrival += outcome == "held"
    for message in read_all(config, container.topics.name(RETENTION_SIGNALS)):
        if message.value() is not None:
            try:
                result.held_by_signals += service.apply_signal(message.value() or b"", now)
            except SerdeError as exc:
                _skip(message, exc)
    return result


def _skip(message: Message, error: Exception) -> None:
    """An unreadable record on a retention input is logged by position, never its bytes."""
    log.error(
        "unreadable record skipped: %s partition %s offset %s (%s)",
        message.topic(),
        message.partition(),
        message.offset(),
        type(error).__name__,
    )
