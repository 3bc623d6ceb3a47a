"""Identifiers on privacy.requests.v1 only until intake: cut the records the ledger holds.

A `PrivacyRequest` record carries the person's identifiers in clear; intake keeps only
their keyed digests. Once the ledger accounts for a record (it holds the record's request,
or the record was dead-lettered with an audit entry) nothing needs it any more, so the
partition is cut below the first record the ledger cannot account for (Kafka
DeleteRecords: gone at once for every reader and replica, and from disk when its log
segment is deleted). The proof is the ledger, never a consumer group's offsets: faust
acknowledges an event whose agent failed on it, and a record not taken in must stay.
Each removed record gets an audit entry (its request id and position, never its bytes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from sqlalchemy.orm import Session, sessionmaker

from schemas.errors import SerdeError
from schemas.serde import AvroSerde
from schemas.topic_names import PRIVACY_REQUESTS
from streams.bootstrap import Container
from streams.kafka.outbox import Message as OutboxMessage
from streams.kafka.outbox import Outbox
from streams.ledger import AuditLog, PrivacyRequests

REMOVED_ACTION = "request.record_removed"
DEAD_LETTERED_ACTION = "privacy.input_dead_lettered"
_READ_TIMEOUT_S = 10.0
_STALLED_S = 2.0  # no progress this long: the rest waits behind an open transaction
_REQUEST_ID_LIMIT = 128  # the audit log's request_id column


@dataclass
class RequestCut:
    """What one cut did, per partition of privacy.requests.v1."""

    removed: int = 0
    cuts: dict[int, int] = field(default_factory=dict)  # partition -> new first offset
    held: dict[int, int] = field(default_factory=dict)  # partition -> a record not taken in
    refused: dict[int, str] = field(default_factory=dict)  # partition -> Kafka error name


@dataclass(frozen=True)
class _Seen:
    partition: int
    offset: int
    request_id: str | None  # None: a tombstone or a record that is no usable request
    taken_in: bool


def cut_offset(seen: Sequence[tuple[int, bool]], end: int) -> int:
    """Where to cut a partition read up to `end` (the reader's position): before its first
    record not taken in, or at `end` when every record read was taken in."""
    return next((offset for offset, taken_in in seen if not taken_in), end)


def key_request_id(key: bytes | None) -> str | None:
    """A record key as the audit log's request id (the topic is keyed by request id), or
    None when it cannot be one."""
    if not key:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    return text if len(text) <= _REQUEST_ID_LIMIT and text.isprintable() else None


def dead_letter_audit(
    outbox: Outbox, session: Session, actor: str, now: datetime, *, topic: str, partition: int,
    offset: int, key: bytes | None, reason_code: str,
) -> OutboxMessage:  # fmt: skip
    """The audit entry saying an input record of the privacy app is on the dead letters
    (what lets the cut pass a record the ledger will never hold)."""
    details = {"topic": topic, "partition": partition, "offset": offset,
               "reason_code": reason_code}  # fmt: skip
    return outbox.audit(session, actor, DEAD_LETTERED_ACTION, now,
                        request_id=key_request_id(key), details=details,
                        key=f"{topic}:{partition}:{offset}")  # fmt: skip


class RequestRecords:
    """Cuts privacy.requests.v1 below what the ledger has taken in."""

    def __init__(
        self, container: Container, sessions: sessionmaker[Session], outbox: Outbox, actor: str
    ) -> None:
        self._container = container
        self._topic = container.topics.name(PRIVACY_REQUESTS)
        self._sessions = sessions
        self._outbox = outbox
        self._serde = AvroSerde(container.schemas)
        self._actor = actor
        self._consumer: Consumer | None = None

    @property
    def topic(self) -> str:
        return self._topic

    def cut_taken_in(self, now: datetime, partitions: Iterable[int] | None = None) -> RequestCut:
        """Delete, in each partition (all by default), the records the ledger took in."""
        consumer = self._reader()
        if partitions is None:
            metadata = consumer.list_topics(self._topic, timeout=30).topics[self._topic]
            partitions = metadata.partitions
        ranges = {}
        for partition in sorted(partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=30
            )
            if high > low:
                ranges[partition] = (int(low), int(high))
        result = RequestCut()
        if not ranges:
            return result
        seen, ends = self._read(consumer, ranges)
        cuts: dict[int, int] = {}
        for partition, (low, _) in ranges.items():
            records = seen[partition]
            held = next((r.offset for r in records if not r.taken_in), None)
            if held is not None:
                result.held[partition] = held
            cut = cut_offset([(r.offset, r.taken_in) for r in records], ends[partition])
            if cut > low:
                cuts[partition] = cut
        if not cuts:
            return result
        result.refused = self._delete(cuts)
        result.cuts = {p: o for p, o in cuts.items() if p not in result.refused}
        removed = [r for p, o in result.cuts.items() for r in seen.get(p, []) if r.offset < o]
        self._record(removed, now)
        result.removed = len(removed)
        return result

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- internals -------------------------------------------------------------------------

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({
                **self._container.settings.kafka_client_config(),
                # assigned, never committed; librdkafka still finds its coordinator (ACL)
                "group.id": self._container.settings.scoped("contactflow-readback-request-cut"),
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            })  # fmt: skip
        return self._consumer

    def _read(
        self, consumer: Consumer, ranges: dict[int, tuple[int, int]]
    ) -> tuple[dict[int, list[_Seen]], dict[int, int]]:
        """Each partition's committed records from its low to its high offset, judged; and
        the reader's position in each (past aborted records and markers, never past an
        open transaction)."""
        consumer.assign([TopicPartition(self._topic, p, low) for p, (low, _) in ranges.items()])
        pending = {p: high for p, (_, high) in ranges.items()}
        messages: dict[int, list[Message]] = {p: [] for p in ranges}
        deadline = time.monotonic() + _READ_TIMEOUT_S
        quiet_since, last = time.monotonic(), [-1]
        try:
            while pending and time.monotonic() < deadline:
                for message in consumer.consume(500, 0.2):
                    if message.error() is not None:
                        raise KafkaException(message.error())
                    messages[message.partition() or 0].append(message)
                positions = consumer.position([TopicPartition(self._topic, p) for p in pending])
                now_at = [tp.offset for tp in positions]
                if now_at != last:
                    quiet_since, last = time.monotonic(), now_at
                elif time.monotonic() - quiet_since > _STALLED_S:
                    break  # an open transaction holds the rest: cut what was read
                for tp in positions:
                    if tp.offset >= pending[tp.partition]:
                        del pending[tp.partition]
            at = consumer.position([TopicPartition(self._topic, p) for p in ranges])
            ends = {tp.partition: max(tp.offset, ranges[tp.partition][0]) for tp in at}
        finally:
            consumer.unassign()
        with self._sessions() as session:
            seen = {p: [self._judge(session, m) for m in ms] for p, ms in messages.items()}
        return seen, ends

    def _judge(self, session: Session, message: Message) -> _Seen:
        partition, offset, value = message.partition() or 0, message.offset() or 0, message.value()
        if value is None:
            return _Seen(partition, offset, None, True)  # a tombstone holds nothing
        request_id: str | None = None
        try:
            _, record = self._serde.deserialize(value, "PrivacyRequest")
            request_id = str(record["request_id"]) or None  # an empty id names nothing
        except (SerdeError, KeyError, ValueError):
            pass  # no usable request: taken in only as a dead letter
        if request_id is not None and PrivacyRequests(session).get(request_id) is not None:
            return _Seen(partition, offset, request_id, True)
        return _Seen(partition, offset, request_id, self._dead_lettered(session, message))

    def _dead_lettered(self, session: Session, message: Message) -> bool:
        position = {"topic": self._topic, "partition": message.partition(),
                    "offset": message.offset()}  # fmt: skip
        entries = AuditLog(session).entries(
            request_id=key_request_id(message.key()), action=DEAD_LETTERED_ACTION
        )
        return any(all(e.details.get(k) == v for k, v in position.items()) for e in entries)

    def _delete(self, cuts: dict[int, int]) -> dict[int, str]:
        """DeleteRecords below each cut; the partitions refused, with Kafka's reason."""
        admin = self._container.admin()  # held until the answers: a collected client never answers
        futures = admin.delete_records(
            [TopicPartition(self._topic, p, o) for p, o in sorted(cuts.items())],
            request_timeout=30, operation_timeout=30,
        )  # fmt: skip
        refused: dict[int, str] = {}
        for tp, future in futures.items():
            try:
                future.result(timeout=60)
            except KafkaException as exc:
                refused[tp.partition] = exc.args[0].name()
            except TimeoutError:
                refused[tp.partition] = "TIMED_OUT"
        return refused

    def _record(self, removed: list[_Seen], now: datetime) -> None:
        """One audit entry per removed record (once, if two cutters raced on a partition)."""
        if not removed:
            return
        with self._sessions.begin() as session:
            audit = AuditLog(session)
            messages: list[OutboxMessage] = []
            for record in removed:
                details: dict[str, Any] = {"topic": self._topic, "partition": record.partition,
                                           "offset": record.offset}  # fmt: skip
                request_id = record.request_id
                if request_id is not None and len(request_id) > _REQUEST_ID_LIMIT:
                    request_id = None
                if request_id is not None and any(
                    e.details == details
                    for e in audit.entries(request_id=request_id, action=REMOVED_ACTION)
                ):
                    continue
                messages.append(self._outbox.audit(
                    session, self._actor, REMOVED_ACTION, now, request_id=request_id,
                    details=details, key=request_id or f"{self._topic}:{record.partition}",
                ))  # fmt: skip
            self._outbox.send(messages, "request cut")
