"""Apply what the retention topics hold now, once: for demos and catching up by hand.

The control-plane app (`contactflow run privacy`) does this continuously; this reads
`recordings.standard.v1` and `retention.signals.v1` from the start and applies every
record through the same input steps as the app (`streams.control.inputs`), whose actions
are idempotent: a record it cannot use goes to the dead-letter topic with its reason and
bytes (again on each catch-up, under the same key: its topic, partition and offset); a
transient failure is tried again a few times, then stops the catch-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from schemas.topic_names import RECORDINGS_STANDARD, RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.control.inputs import apply_now, retention_steps
from streams.control.retention.service import RetentionService
from streams.kafka.readback import read_all

log = logging.getLogger(__name__)


@dataclass
class CatchUp:
    registered: int = 0
    held_on_arrival: int = 0
    held_by_signals: int = 0
    dead_lettered: int = 0


def apply_retention_topics(
    container: Container, service: RetentionService, now: datetime
) -> CatchUp:
    config = container.settings.kafka_client_config()
    steps = retention_steps(service)
    result = CatchUp()
    for message in read_all(config, container.topics.name(RECORDINGS_STANDARD)):
        if message.value() is None:
            continue
        outcome = apply_now(steps[RECORDINGS_STANDARD], message, now)
        result.dead_lettered += outcome.dead_lettered
        result.registered += outcome.result in ("registered", "held")
        result.held_on_arrival += outcome.result == "held"
    for message in read_all(config, container.topics.name(RETENTION_SIGNALS)):
        if message.value() is None:
            continue
        outcome = apply_now(steps[RETENTION_SIGNALS], message, now)
        result.dead_lettered += outcome.dead_lettered
        result.held_by_signals += outcome.result if isinstance(outcome.result, int) else 0
    return result
