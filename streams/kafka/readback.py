"""Read a topic from its start to its current end: for demos, tests and operators."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.errors import ContactflowError

_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
}


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout: float) -> tuple[int, int]:
    """Low and high offsets; retried while a just-created partition elects its leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_all(
    client_config: Mapping[str, Any],
    topic: str,
    timeout: float = 30.0,
    *,
    committed_only: bool = True,
    since: Mapping[int, int] | None = None,
) -> list[Message]:
    """Every message now in `topic` (all partitions, offset order per partition).

    Reads up to the high watermark seen when called; `committed_only` reads with
    `isolation.level=read_committed`, so aborted transactional writes are not returned.
    `since` (partition -> offset, from `end_offsets`) reads only what came after it.
    """
    consumer = Consumer(
        {
            **client_config,
            "group.id": f"contactflow-readback-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions
        if metadata.topics[topic].error is not None:
            raise ContactflowError(f"cannot read topic {topic}: {metadata.topics[topic].error}")
        ends: dict[int, int] = {}
        assignment = []
        for partition in partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, partition), timeout)
            low = max(low, (since or {}).get(partition, 0))
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        if not assignment:
            return []
        consumer.assign(assignment)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                messages.append(message)
                partition, offset = message.partition(), message.offset()
                if (
                    partition is not None
                    and offset is not None
                    and offset + 1 >= ends.get(partition, 0)
                ):
                    ends.pop(partition, None)
            for tp in past_end(consumer, topic, ends):
                ends.pop(tp.partition, None)  # the tail was a transaction marker
        if ends:
            raise ContactflowError(
                f"timed out reading {topic}: partitions {sorted(ends)} not read to the end"
            )
        return messages
    finally:
        consumer.close()


def past_end(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> list[TopicPartition]:
    """The partitions of `ends` (partition -> end offset) whose position has reached their
    end: read to the end even if no record says so, because the tail was a transaction's
    marker, which a read_committed consumer never returns. Their positions, as read."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return [tp for tp in positions if tp.offset >= ends[tp.partition]]


def end_offsets(
    client_config: Mapping[str, Any], topic: str, timeout: float = 30.0
) -> dict[int, int]:
    """Each partition's high watermark now: `since` for a later `read_all` of what is new."""
    consumer = Consumer({**client_config, "group.id": f"contactflow-readback-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        return {
            partition: _watermarks(consumer, TopicPartition(topic, partition), timeout)[1]
            for partition in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()
