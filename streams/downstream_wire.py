"""Kafka in and out of the downstream SDK: the command source, its records, the answers.

Reading never raises on bad input: it returns a reason code, and the caller skips the
record (the bytes are never quoted anywhere). Sending queues answers and then waits for
Kafka to take all of them, raising if any was refused. Errors name codes, never values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.catalog import SchemaCatalog
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.serde import AvroSerde
from streams.downstream_model import Answer, DownstreamError, ReceivedCommand
from streams.downstream_offsets import Partition
from streams.telemetry import inject_context

log = logging.getLogger("streams.downstream")
COMMAND_CONTRACT = "DownstreamCommand"
_CONNECT_TIMEOUT_S = 5.0
_DELIVERY_TIMEOUT_S = 30.0
_POLL_BATCH = 500
_LOST_GENERATION = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                              KafkaError.UNKNOWN_MEMBER_ID})  # fmt: skip
Rebalance = Callable[[Consumer, list[TopicPartition]], None]


class CommandSource:
    """The group consumer of both command topics: read_committed, offsets committed by hand."""

    def __init__(
        self, client: Mapping[str, Any], group_id: str, topics: list[str], consumer: str
    ) -> None:
        self._topics = topics
        self._name = consumer
        self._consumer = Consumer(
            {**client, "group.id": group_id, "enable.auto.commit": False,
             "auto.offset.reset": "earliest", "isolation.level": "read_committed"}
        )  # fmt: skip

    def subscribe(self, bootstrap: str, on_assign: Rebalance, on_revoke: Rebalance) -> None:
        """Check the broker answers and both topics exist, then join the group."""
        try:
            metadata = self._consumer.list_topics(timeout=_CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            raise DownstreamError(
                f"cannot reach Kafka at {bootstrap} ({exc.args[0].name()}): is the broker up?"
            ) from None
        for topic in self._topics:
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise DownstreamError(f"topic {topic} is missing: run `contactflow topics apply`")
        self._consumer.subscribe(
            self._topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
        )

    def consume(self, timeout: float) -> list[Message]:
        """The next records; raises on a Kafka error a retry cannot mend."""
        messages = []
        for message in self._consumer.consume(_POLL_BATCH, timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal() or not error.retriable():
                raise DownstreamError(f"consumer {self._name}: Kafka error {error.name()}")
            else:
                log.warning("consumer %s: Kafka error %s, retrying", self._name, error.name())
        return messages

    def commit(self, offsets: Mapping[Partition, int]) -> bool:
        """Commit synchronously; False when a rebalance refused it (the next owner re-reads)."""
        wanted = [TopicPartition(topic, p, offset) for (topic, p), offset in offsets.items()]
        try:
            result = self._consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            return self._commit_failed(exc.args[0])
        failed = [tp.error for tp in result or [] if tp.error is not None]
        return self._commit_failed(failed[0]) if failed else True

    def seek(self, offsets: Mapping[Partition, int]) -> None:
        """Move back to unanswered commands, so a later poll returns them again."""
        for (topic, partition), offset in offsets.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("consumer %s: cannot seek back (%s); a new instance re-reads",
                            self._name, exc.args[0].name())  # fmt: skip

    def close(self) -> None:
        self._consumer.close()

    def _commit_failed(self, error: KafkaError) -> bool:
        if error.code() in _LOST_GENERATION:
            log.warning("consumer %s: commit refused (%s); commands will be read again",
                        self._name, error.name())  # fmt: skip
            return False
        raise DownstreamError(f"consumer {self._name}: cannot commit offsets: {error.name()}")


class CommandReader:
    """DownstreamCommand bytes of any version, read as the latest version."""

    def __init__(self, schemas: SchemaCatalog) -> None:
        self._serde = AvroSerde(schemas)

    def read(self, value: bytes | None) -> tuple[dict[str, Any] | None, str]:
        """The command record and "ok", or None and why not (a reason code)."""
        if value is None:
            return None, "tombstone"
        try:
            writer, record = self._serde.deserialize(value, COMMAND_CONTRACT)
        except MalformedPayload:
            return None, "malformed"
        except UnknownFingerprint:
            return None, "unknown_writer"
        except SchemaMismatch:
            return None, "not_a_command"
        if writer.short_name != COMMAND_CONTRACT:
            return None, "not_a_command"
        return record, "ok"


class AnswerSender:
    """Acknowledgements to `privacy.acks.v1`: idempotent, acks=all, keyed by request id."""

    def __init__(
        self, client: Mapping[str, Any], schemas: SchemaCatalog, topic: str, consumer: str
    ) -> None:
        self._serde = AvroSerde(schemas)
        self._contract = schemas.latest("Acknowledgement")
        self._topic = topic
        self._consumer = consumer
        self._refused: list[str] = []
        self._producer = Producer(
            {**client, "enable.idempotence": True, "acks": "all", "linger.ms": 2}
        )

    def queue(self, command: ReceivedCommand, answer: Answer, now: datetime) -> None:
        """Hand one answer to the producer, with the current trace context in its headers."""
        value = {"command_id": command.command_id, "request_id": command.request_id,
                 "consumer": self._consumer, "outcome": answer.outcome,
                 "reason": answer.reason, "acknowledged_at": now}  # fmt: skip
        try:
            self._producer.produce(
                self._topic, self._serde.serialize(value, self._contract),
                command.request_id.encode(), on_delivery=self._on_delivery,
                headers=inject_context([]),  # type: ignore[arg-type]
            )  # fmt: skip
        except (KafkaException, BufferError) as exc:
            why = exc.args[0].name() if isinstance(exc, KafkaException) else "queue full"
            raise DownstreamError(
                f"consumer {self._consumer}: cannot send the answer to {command.command_id}: {why}"
            ) from None
        self._producer.poll(0)

    def wait_delivered(self, count: int) -> None:
        """Block until Kafka has every queued answer; raise if any was refused or is late."""
        remaining = self._producer.flush(_DELIVERY_TIMEOUT_S)
        if remaining or self._refused:
            refused = sorted(set(self._refused))
            self._refused.clear()
            raise DownstreamError(
                f"consumer {self._consumer}: Kafka did not take {count} answer(s) "
                f"({remaining} pending, refused: {refused}); their commands stay uncommitted "
                "and will be read again"
            )

    def close(self) -> None:
        self._producer.flush(_DELIVERY_TIMEOUT_S)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._refused.append(error.name())
