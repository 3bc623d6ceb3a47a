"""A transactional call that librdkafka keeps failing as retriable must not hold the router
forever. Seen in `bench faults`: after two of three nodes were killed, the router's
`send_offsets_to_transaction` answered NOT_COORDINATOR for over seven minutes, through
the nodes' return and a restart of the whole cluster. Past `TXN_GIVE_UP_S` of retries
(the broker has aborted the transaction by then) the router abandons the transaction,
starts a new transactional producer and reads the batch again: nothing lost, nothing
twice. The retry loop's clock is moved, not waited for."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from people import PHONE, example, fresh

from schemas.serde import AvroSerde
from streams.kafka.readback import read_all
from streams.router.transaction import TXN_GIVE_UP_S
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration


class _StuckOffsets:
    """A transactional producer whose `send_offsets_to_transaction` always fails the way
    librdkafka did: NOT_COORDINATOR, retriable. Everything else is the real producer's."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.calls = 0

    def send_offsets_to_transaction(self, *_args: Any) -> None:
        self.calls += 1
        raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR, "stuck", retriable=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def test_a_transaction_whose_offsets_never_go_is_given_up_and_the_batch_read_again(
    router_ready_container,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = router_ready_container
    events = [fresh(example("phone", "inbound_call"), phone=PHONE) for _ in range(5)]
    sdk = container.producer()
    for event in events:
        sdk.send("phone", event)
    sdk.flush()
    worker = RouterWorker(container)
    stuck = _StuckOffsets(worker.transactions.producer)
    worker.transactions.producer = stuck  # type: ignore[assignment]
    ticks = itertools.count(step=TXN_GIVE_UP_S / 3)
    worker.calls.monotonic = lambda: float(next(ticks))  # each retry: a third of the give-up

    with caplog.at_level(logging.WARNING, logger="streams.router.worker"):
        worker.run(max_idle_s=2.0)

    assert stuck.calls >= 3, "retried, then given up"
    assert worker.transactions.producer is not stuck, "a new transactional producer"
    assert worker.stats.aborted >= 1
    given_up = [r.getMessage() for r in caplog.records if "not done in" in r.getMessage()]
    assert given_up, [r.getMessage() for r in caplog.records]
    assert "send_offsets_to_transaction" in given_up[0]
    assert "NOT_COORDINATOR" in given_up[0]
    serde = AvroSerde(container.schemas)
    tagged = read_all(container.settings.kafka_client_config(),
                      container.topics.name("contact.ores.v1"))  # fmt: skip
    routed = Counter(serde.deserialize(m.value())[1]["event_id"] for m in tagged)
    assert routed == Counter(e["envelope"]["event_id"] for e in events), "each event once"
