"""The compacted `privacy.subject-state.v1` topic, kept in memory as a table.

Every router reads all partitions of the topic (it is small: one record per subject with
a restriction, objection or erasure) so any worker can route any subject without a
database round trip. `catch_up` blocks until the table holds everything that was in the
topic when the worker started; `poll` then applies new states between batches.
`on_erased` is told of each subject whose state says erased as soon as it is read, so
the router drops the subject's key at once, not at the subject's next event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from processors.routing import NO_RESTRICTIONS, SubjectStatus
from schemas.errors import SerdeError
from schemas.serde import AvroSerde

log = logging.getLogger(__name__)


class SubjectStateTable:
    def __init__(
        self,
        client_config: Mapping[str, Any],
        topic: str,
        serde: AvroSerde,
        *,
        on_erased: Callable[[str], None] | None = None,
    ) -> None:
        self._topic = topic
        self._serde = serde
        self._on_erased = on_erased
        self._states: dict[str, SubjectStatus] = {}
        self._consumer = Consumer(
            {
                **client_config,
                "group.id": f"contactflow-router-state-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        partitions = metadata.topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self._partitions = list(partitions)

    def __len__(self) -> int:
        return len(self._states)

    def status(self, subject: str) -> SubjectStatus:
        return self._states.get(subject, NO_RESTRICTIONS)

    def catch_up(self, timeout: float = 60.0) -> None:
        """Read the topic up to the end offsets it had when called."""
        ends = {}
        for partition in self._partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=timeout
            )
            ends[partition] = high
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.2)
            positions = self._consumer.position(
                [TopicPartition(self._topic, p) for p in self._partitions]
            )
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                return
        raise TimeoutError(f"could not read {self._topic} to its end in {timeout:.0f}s")

    def poll(self, timeout: float = 0.0) -> int:
        """Apply the states that arrived since the last call; return how many."""
        applied = 0
        for message in self._consumer.consume(10_000, timeout):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("subject-state read error: %s", error.name())
                continue
            try:
                erased = self._apply(message.key(), message.value())
            except (UnicodeDecodeError, SerdeError, KeyError, TypeError, ValueError) as exc:
                log.error(
                    "unreadable subject state skipped: %s partition %s offset %s (%s)",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    type(exc).__name__,
                )
                continue
            applied += 1
            if erased is not None and self._on_erased is not None:
                self._on_erased(erased)
        return applied

    def _apply(self, key: bytes | None, value: bytes | None) -> str | None:
        """One record: a state, or a tombstone (the subject has no restriction left); the
        subject if the state says erased."""
        if value is None:
            self._states.pop((key or b"").decode(), None)
            return None
        _, state = self._serde.deserialize(value, "SubjectState")
        subject = state["subject_pseudonym"]
        status = SubjectStatus(
            restricted=state["restricted"],
            objected_purposes=frozenset(state["objected_purposes"]),
            erased=state["erased"],
            suppressed_from_surveys=state["suppressed_from_surveys"],
        )
        self._states[subject] = status
        return subject if status.erased else None

    def close(self) -> None:
        self._consumer.close()
