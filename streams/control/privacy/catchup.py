"""Apply what the privacy input topics hold, once: for the demo, tests and catching up.

The control-plane app (`contactflow run privacy`) does this continuously with faust
agents; this drains `privacy.requests.v1`, `privacy.instructions.v1` and `privacy.acks.v1`
up to their current end with the catch-ups' consumer group, committing after each record
(`streams.control.drain`), through the same input steps as the app
(`streams.control.inputs`): a record it cannot use goes to the dead-letter topic with its
reason and bytes and the rest carry on; a transient failure is tried again a few times,
then stops the catch-up (nothing is committed past it). Then it cuts the request records
the ledger has taken in (their identifiers are needed no more), as the app does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Message

from schemas.topic_names import PRIVACY_REQUESTS
from streams.bootstrap import Container
from streams.control.drain import CATCHUP_GROUP, drain_topic
from streams.control.inputs import InputStep, apply_now, privacy_steps
from streams.control.privacy.request_cut import RequestCut
from streams.control.privacy.service import PrivacyService

log = logging.getLogger(__name__)


@dataclass
class Drained:
    applied: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    requests_cut: RequestCut = field(default_factory=RequestCut)


def apply_privacy_topics(
    container: Container, service: PrivacyService, now: datetime, *,
    group: str = CATCHUP_GROUP,
) -> Drained:  # fmt: skip
    result = Drained()
    config = container.settings.kafka_client_config()
    for logical, step in privacy_steps(service).items():
        applied = 0

        def apply(message: Message, step: InputStep = step) -> None:
            nonlocal applied
            if message.value() is None:
                return
            if apply_now(step, message, now).dead_lettered:
                result.dead_lettered += 1
            else:
                applied += 1

        drain_topic(config, container.settings.scoped(group), container.topics.name(logical),
                    apply)  # fmt: skip
        result.applied[logical] = applied
        if logical == PRIVACY_REQUESTS:
            result.requests_cut = service.cut_taken_in_requests(now)
    return result
