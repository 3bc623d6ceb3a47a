"""Plain confluent-kafka tries as a role, independent of `streams.ops.acl.verify`.

The tests use these to see with their own eyes what the broker lets a role do; the
verify command has its own, side-effect-free probes.
"""

from __future__ import annotations

import copy
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from schemas.examples import example_events
from streams.ledger import RetentionLedger, session_factory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_outcomes(
    config: dict[str, Any], topics: Iterable[str], timeout: float = 20.0
) -> dict[str, list[Message] | None]:
    """Read each topic from its start to its end: the messages, or None when refused.

    A topic whose metadata the role is refused cannot be fetched at all, so that refusal
    counts as a denied read, as it does for any Kafka client.
    """
    consumer = Consumer(
        {**config, "group.id": f"probe-{uuid.uuid4()}", "enable.auto.commit": False,
         "enable.partition.eof": True, "log_level": 0, "error_cb": lambda _: None}
    )  # fmt: skip
    result: dict[str, list[Message] | None] = {}
    try:
        assignment = []
        for topic in topics:
            described = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if described.error is not None:
                assert described.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (
                    described.error
                )
                result[topic] = None
                continue
            result[topic] = []
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in described.partitions]
        pending = {(tp.topic, tp.partition) for tp in assignment}
        if assignment:
            consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            topic, partition = message.topic() or "", message.partition()
            error = message.error()
            if error is None:
                bucket = result.get(topic)
                if bucket is not None:
                    bucket.append(message)
            elif not topic:
                continue  # group-level (FindCoordinator refused): assign() needs no group
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard((topic, partition))
            elif error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                result[topic] = None
                pending = {p for p in pending if p[0] != topic}
            else:
                raise AssertionError(f"unexpected answer reading {topic}: {error}")
        assert not pending, f"no answer for {sorted(pending)}"
    finally:
        consumer.close()
    return result


def recording_call(recording_id: str) -> dict:  # type: ignore[type-arg]
    """A phone `recording_available` event of two days ago, for recording `recording_id`."""
    now = datetime.now(UTC)
    call = copy.deepcopy(
        next(e for e in example_events("phone") if e["kind"] == "recording_available")
    )
    call["envelope"] |= {"event_id": str(uuid.uuid4()), "purpose": "contact_handling",
                         "occurred_at": (now - timedelta(days=2)).isoformat()}  # fmt: skip
    call["payload"] |= {"recording_id": recording_id,
                        "started_at": (now - timedelta(days=2, minutes=5)).isoformat(),
                        "ended_at": (now - timedelta(days=2)).isoformat()}  # fmt: skip
    return call


def wait_registered(shared, recording_id: str, log: Path, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    """The recording's retention entry once the privacy app has registered it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory(shared.ledger_engine)() as session:
            found = RetentionLedger(session).get(recording_id)
        if found is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"the privacy app did not register it; log:\n{log.read_text()[-3000:]}")
