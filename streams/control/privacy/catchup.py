"""Apply what the privacy input topics hold, once: for the demo, tests and catching up.

The control-plane app (`contactflow run privacy`) does this continuously with faust
agents; this drains `privacy.requests.v1`, `privacy.instructions.v1` and `privacy.acks.v1`
up to their current end with a consumer group of its own, committing after each record,
through the same input steps as the app (`streams.control.inputs`): a record it cannot
use goes to the dead-letter topic with its reason and bytes and the rest carry on; a
transient failure is tried again a few times, then stops the catch-up (nothing is
committed past it). Then it cuts the request records the ledger has taken in (their
identifiers are needed no more), as the app does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition

from schemas.topic_names import PRIVACY_REQUESTS
from streams.bootstrap import Container
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
    group: str = "contactflow-privacy-catchup",
) -> Drained:  # fmt: skip
    result = Drained()
    for logical, step in privacy_steps(service).items():
        topic = container.topics.name(logical)
        consumer = Consumer({**container.settings.kafka_client_config(),
                             "group.id": container.settings.scoped(group),
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "isolation.level": "read_committed"})  # fmt: skip
        try:
            result.applied[logical] = _drain(consumer, topic, step, now, result)
        finally:
            consumer.close()
        if logical == PRIVACY_REQUESTS:
            result.requests_cut = service.cut_taken_in_requests(now)
    return result


def _drain(consumer: Consumer, topic: str, step: InputStep, now: datetime, result: Drained) -> int:
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
             for p in partitions}  # fmt: skip
    ends = {p: high for p, (_, high) in marks.items()}
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    # records below the low offset are gone (cut once taken in, or past retention)
    start = {tp.partition: max(tp.offset, marks[tp.partition][0]) for tp in committed}
    pending = {p for p in partitions if start[p] < ends[p]}
    consumer.assign([TopicPartition(topic, p, start[p]) for p in partitions])
    applied = 0
    while pending:
        message = consumer.poll(5.0)
        if message is None:
            raise TimeoutError(f"{topic}: no record within 5 s before its end offsets")
        if message.error() is not None:
            continue
        if message.value() is not None:
            if apply_now(step, message, now).dead_lettered:
                result.dead_lettered += 1
            else:
                applied += 1
        consumer.commit(message=message, asynchronous=False)
        if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
            pending.discard(message.partition())
    return applied
