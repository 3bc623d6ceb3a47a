"""Drain an input topic once, up to its end offsets of the moment, with a consumer group:
what the control plane's catch-ups (`dsr process`, the retention catch-up of the demo and
tests) read. The group's committed offsets say where the last run stopped, so a run reads
only what came since: a record is applied, or dead-lettered, once.

Each record is committed once `apply` returns; a record `apply` raises on is not, so the
next run starts with it. Reads are `read_committed`: a record of an aborted transaction
is never applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from confluent_kafka import Consumer, Message, TopicPartition

from streams.kafka.readback import past_end

CATCHUP_GROUP: Final = "contactflow-privacy-catchup"
"""The catch-ups' group (scoped by the deployment's prefix). `lag` shows it as `dsr
process`'s; `infra/acl.yaml` lets the privacy app's role use it."""
POLL_S: Final = 5.0  # no record for this long before the end offsets: give up
POLL_STEP_S: Final = 0.2
METADATA_TIMEOUT_S: Final = 30.0


def drain_topic(
    client_config: Mapping[str, Any], group: str, topic: str, apply: Callable[[Message], None]
) -> int:
    """Hand every record of `topic` after `group`'s committed offsets, up to the end
    offsets seen when called, to `apply` (tombstones too), committing each; how many."""
    consumer = Consumer({**client_config, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})  # fmt: skip
    try:
        return _drain(consumer, topic, apply)
    finally:
        consumer.close()


def _drain(consumer: Consumer, topic: str, apply: Callable[[Message], None]) -> int:
    metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    partitions = metadata.topics[topic].partitions
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                               timeout=METADATA_TIMEOUT_S)
             for p in partitions}  # fmt: skip
    ends = {p: high for p, (_, high) in marks.items()}
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                   timeout=METADATA_TIMEOUT_S)  # fmt: skip
    # records below the low offset are gone (cut once taken in, or past retention)
    start = {tp.partition: max(tp.offset, marks[tp.partition][0]) for tp in committed}
    pending = {p for p in partitions if start[p] < ends[p]}
    consumer.assign([TopicPartition(topic, p, start[p]) for p in partitions])
    seen = 0
    quiet_since = time.monotonic()
    while pending:
        message = consumer.poll(POLL_STEP_S)
        if message is not None and message.error() is None:
            apply(message)
            seen += 1
            consumer.commit(message=message, asynchronous=False)
            quiet_since = time.monotonic()
            if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                pending.discard(message.partition())
            continue
        # A partition whose tail is a transaction's marker has no record left to return:
        # its position passes the end. Committed there, `lag` shows it caught up.
        tail = past_end(consumer, topic, {p: ends[p] for p in pending})
        if tail:
            consumer.commit(offsets=tail, asynchronous=False)
            pending -= {tp.partition for tp in tail}
        elif time.monotonic() - quiet_since > POLL_S:
            raise TimeoutError(f"{topic}: no record within {POLL_S:.0f} s before its end offsets")
    return seen
