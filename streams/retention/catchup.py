"""Apply what the retention topics hold now, once: for demos and catching up by hand.

The control-plane app (`contactflow run privacy`) does this continuously; this reads
`recordings.standard.v1` and `retention.signals.v1` from the start and applies every
record through the same `RetentionService`, whose actions are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streams.bootstrap import Container
from streams.readback import read_all
from streams.retention.service import STANDARD, RetentionService

SIGNALS = "retention.signals.v1"


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
        outcome = service.ingest_recording(value, now)
        result.registered += outcome in ("registered", "held")
        result.held_on_arrival += outcome == "held"
    for message in read_all(config, container.topics.name(SIGNALS)):
        if message.value() is not None:
            result.held_by_signals += service.apply_signal(message.value() or b"", now)
    return result
