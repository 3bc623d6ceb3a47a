"""Apply what the retention topics hold now, once: for demos and catching up by hand.

The control-plane app (`contactflow run privacy`) does this continuously; this reads
`recordings.standard.v1` and `retention.signals.v1` from where the last catch-up stopped
(the catch-ups' consumer group, `streams.control.drain`) to their current end, and
applies every record through the same input steps as the app (`streams.control.inputs`):
a record it cannot use goes to the dead-letter topic with its reason and bytes, once; a
transient failure is tried again a few times, then stops the catch-up (nothing is
committed past it, so the next run starts there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Message

from schemas.topic_names import RECORDINGS_STANDARD, RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.control.drain import CATCHUP_GROUP, drain_topic
from streams.control.inputs import apply_now, retention_steps
from streams.control.retention.service import RetentionService

log = logging.getLogger(__name__)


@dataclass
class CatchUp:
    registered: int = 0
    held_on_arrival: int = 0
    held_by_signals: int = 0
    dead_lettered: int = 0


def apply_retention_topics(
    container: Container, service: RetentionService, now: datetime, *,
    group: str = CATCHUP_GROUP,
) -> CatchUp:  # fmt: skip
    config = container.settings.kafka_client_config()
    steps = retention_steps(service)
    result = CatchUp()

    def register(message: Message) -> None:
        if message.value() is None:
            return
        outcome = apply_now(steps[RECORDINGS_STANDARD], message, now)
        result.dead_lettered += outcome.dead_lettered
        result.registered += outcome.result in ("registered", "held")
        result.held_on_arrival += outcome.result == "held"

    def hold(message: Message) -> None:
        if message.value() is None:
            return
        outcome = apply_now(steps[RETENTION_SIGNALS], message, now)
        result.dead_lettered += outcome.dead_lettered
        result.held_by_signals += outcome.result if isinstance(outcome.result, int) else 0

    scoped = container.settings.scoped(group)
    drain_topic(config, scoped, container.topics.name(RECORDINGS_STANDARD), register)
    drain_topic(config, scoped, container.topics.name(RETENTION_SIGNALS), hold)
    return result
