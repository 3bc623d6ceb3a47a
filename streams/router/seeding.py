"""Seeding the router's dedup window when it is given partitions: the event ids routed just
before the group's committed offsets, so a producer's retry of an event routed by the
partition's previous owner is still known for one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from streams.bootstrap import Container
from streams.router.decode import Decoded, EventDecoder
from streams.router.dedup import DedupWindow
from streams.router.pipeline import decode_request

log = logging.getLogger(__name__)
SEED_TRY_S = 10.0  # one try at the group's committed offsets when seeding the dedup window
_READ_S = 120.0  # how long reading the partitions up to their committed offsets may take


def seed_dedup_window(
    container: Container,
    consumer: Consumer,
    group_id: str,
    dedup: DedupWindow,
    decoder: EventDecoder,
    clock: Callable[[], datetime],
    partitions: list[TopicPartition],
) -> None:
    """Remember the event ids routed just before the committed offsets.

    All partitions are read at once up to their committed offset. A record counts only
    if it passes the live path's validation, and the first copy of an id wins, as it
    did when it was routed (a later copy with other bytes was dead-lettered).
    """
    window = dedup.capacity
    if window == 0 or not partitions:
        return
    started = time.monotonic()
    # A short try: right after a broker's return the first request can stall on a
    # stale connection for its whole timeout (30 s seen); the caller tries again.
    ends = {
        (tp.topic, tp.partition): tp.offset
        for tp in consumer.committed(partitions, timeout=SEED_TRY_S)
        if tp.offset > 0
    }
    if not ends:
        return
    reader = Consumer(
        {
            **container.settings.kafka_client_config(),
            "group.id": container.settings.scoped(f"{group_id}-seed"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        }
    )
    first: dict[tuple[str, int], dict[str, bytes]] = {key: {} for key in ends}
    try:
        starts = []
        for (topic, partition), end in ends.items():
            low, _ = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            starts.append(TopicPartition(topic, partition, max(low, end - window)))
        reader.assign(starts)
        pending = {
            (tp.topic, tp.partition) for tp in starts if tp.offset < ends[(tp.topic, tp.partition)]
        }
        deadline = time.monotonic() + _READ_S
        while pending and time.monotonic() < deadline:
            messages = [
                m for m in reader.consume(5000, 0.2)
                if m.error() is None and (m.offset() or 0) < ends[_key(m)]
            ]  # fmt: skip
            request = decode_request(messages)  # type: ignore[arg-type]
            outcomes = decoder.decode_batch(request, clock())
            for message, item in zip(messages, outcomes, strict=True):
                if isinstance(item, Decoded):
                    first[_key(message)].setdefault(item.event_id, item.content)
            positions = reader.position([TopicPartition(t, p) for t, p in pending])
            pending -= {
                (tp.topic, tp.partition)
                for tp in positions
                if tp.offset >= ends[(tp.topic, tp.partition)]
            }
        if pending:
            log.warning("dedup window only partly seeded for %d partition(s)", len(pending))
    finally:
        reader.close()
    for key, events in first.items():
        dedup.remember(key, events.items())
    log.info(
        "dedup window seeded: %d event id(s) of %d partition(s) in %.1f s",
        sum(len(events) for events in first.values()),
        len(first),
        time.monotonic() - started,
    )


def _key(message: Message) -> tuple[str, int]:
    return message.topic() or "", message.partition() or 0
