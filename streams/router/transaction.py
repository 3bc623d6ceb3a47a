"""The router's Kafka transactions: one per batch, holding its outputs and its input offsets.

`RouterTransactions` owns the transactional producer (the loop in `streams.router.worker`
does not): it begins a transaction and produces a batch's outputs (`send`), adds the
input offsets and commits (`commit`), aborts, and replaces the producer when it cannot go
on (`renew`). Every call that waits for the broker goes through `KafkaCalls`, and a
transaction's end retried as retriable for `TXN_GIVE_UP_S` is given up (`GaveUp`): the
broker aborts a transaction after `transaction.timeout.ms` anyway, and librdkafka can keep
answering NOT_COORDINATOR for a coordinator that moved (seen for over 7 minutes after two
of three nodes were killed). A new producer finds it afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.errors import ContactflowError
from streams.kafka.refusals import RECORD_ERRORS
from streams.router.kafka_calls import GaveUp, KafkaCalls
from streams.router.pipeline import Output

log = logging.getLogger(__name__)
PRODUCER_MAX_BYTES = 4 * 1024 * 1024
TXN_GIVE_UP_S = 90.0


class RouterTransactions:
    """The transactional producer of one router instance (`transactional.id` per instance:
    a restart fences the previous incarnation and aborts what it left open)."""

    def __init__(
        self, client: dict[str, Any], transactional_id: str, calls: KafkaCalls, instance: str
    ) -> None:
        self._config = {
            **client,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 60_000,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": PRODUCER_MAX_BYTES,
            "queue.buffering.max.messages": 500_000,
            # Only failures are reported, so a refused record is known by its error.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery_error,
        }
        self._calls = calls
        self._instance = instance
        self.producer = Producer(self._config)
        self.renew_before_next = False  # the broker went away: start the next one afresh
        self._delivery_errors: list[KafkaError] = []

    def init(self) -> None:
        self._calls.until_done("init_transactions", 60, lambda: self.producer.init_transactions(60))

    def send(self, outputs: Sequence[Output]) -> KafkaException | None:
        """Begin a transaction and produce `outputs`: None when `commit` may follow, else
        the error (the caller aborts, `refusal`)."""
        if self.renew_before_next:  # librdkafka's transaction state may not survive an outage
            self.renew_before_next = False
            log.info("partitions reassigned or broker lost: new transactional producer")
            self.renew()
        producer = self.producer
        self._delivery_errors.clear()
        try:
            producer.begin_transaction()
            for output in outputs:
                while True:
                    try:
                        producer.produce(
                            output.topic,
                            output.value,
                            output.key,
                            headers=output.headers,  # type: ignore[arg-type]
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            return None
        except KafkaException as exc:
            return exc

    def commit(self, offsets: list[TopicPartition], group: Any) -> KafkaException | GaveUp | None:
        """Add the input offsets to the open transaction and commit it (any thread): the
        error that stopped it, if any."""
        producer = self.producer
        try:
            self._calls.until_done(
                "send_offsets_to_transaction",
                15,
                lambda: producer.send_offsets_to_transaction(offsets, group, 15),
                give_up_s=TXN_GIVE_UP_S,
            )
            self._calls.until_done(
                "commit_transaction",
                60,
                lambda: producer.commit_transaction(60),
                give_up_s=TXN_GIVE_UP_S,
            )
            return None
        except (KafkaException, GaveUp) as exc:
            return exc

    def refusal(self, error: KafkaError) -> tuple[KafkaError, bool]:
        """After a Kafka error ended a transaction: abort it, and say why, as (the error to
        name, whether one record is to blame). A fenced producer stops the router."""
        self.producer.poll(0)  # serve the delivery reports of the refused records
        cause = next(
            (e for e in (error, *self._delivery_errors) if e.code() in RECORD_ERRORS), None
        )
        if error.code() == KafkaError._FENCED:
            raise ContactflowError(
                "router fenced: another router started with the same "
                f"CONTACTFLOW_ROUTER_INSTANCE ({self._instance}); "
                "this one stops, nothing it did not commit is lost"
            ) from None
        log.warning("batch aborted (%s); re-reading it", (cause or error).name())
        self.abort(error)
        return cause or error, cause is not None

    def abort(self, error: KafkaError | None) -> None:
        """Abort the open transaction; a producer that cannot (a fatal error, or a broker
        that forgot the transaction) is replaced by a new one with the same id, whose
        start aborts whatever the broker still holds open."""
        if error is None or not error.fatal():
            try:
                self._calls.until_done(
                    "abort_transaction",
                    30,
                    lambda: self.producer.abort_transaction(30),
                    give_up_s=TXN_GIVE_UP_S,
                )
                return
            except GaveUp as gave_up:
                error = gave_up.error
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError._FENCED:
                    raise ContactflowError(
                        "router fenced while aborting: another router started with the same "
                        "CONTACTFLOW_ROUTER_INSTANCE; this one stops"
                    ) from None
        log.warning("transactional producer replaced after %s", error.name())
        self.renew()

    def renew(self) -> None:
        """A new transactional producer with the same id: a refused record leaves the old
        one's sequence numbers ahead of the broker's (OUT_OF_ORDER_SEQUENCE_NUMBER on its
        next transaction). The new one fences the old one and starts clean."""
        self.producer.flush(0)
        self.producer = Producer(self._config)
        self.init()

    def _on_delivery_error(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._delivery_errors.append(error)
