"""Kafka in and out of the downstream SDK: the command source, its records, the answers.

Reading never raises on bad input: it returns a reason code, and the caller skips the
record (the bytes are never quoted anywhere). Sending queues answers and then waits for
Kafka to take all of them, raising if any was refused. Errors name codes, never values.

A broker that is away is waited for, never an error: the clients retry, a commit that
fails for it is tried again later (the offsets stay uncommitted), answers wait in the
producer until the broker takes them, and the process says so in one warning line per
30 s (`OutageLog`), not one per retry. Only a fatal client error or a refusal (no
permission, a record the broker will never take) raises.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.catalog import SchemaCatalog
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.serde import AvroSerde
from streams.kafka.refusals import RECORD_ERROR_NAMES
from streams.sdk.downstream.model import Answer, DownstreamError, ReceivedCommand
from streams.sdk.downstream.offsets import Partition
from streams.telemetry import inject_context

log = logging.getLogger("streams.sdk.downstream.client")
COMMAND_CONTRACT = "DownstreamCommand"
_CONNECT_TIMEOUT_S = 5.0
_CLOSE_FLUSH_S = 5.0  # answers still queued at close are answered again later
_FLUSH_SLICE_S = 1.0  # answers are waited for in slices, so a stop is seen between them
_SLOW_DELIVERY_S = 5.0  # answers waiting longer than this are reported (once per interval)
_COMMIT_GUARD_S = 60.0  # a synchronous commit not back by then is a blocked client
_OUTAGE_REPORT_S = 30.0  # one line per this while the broker is away
_POLL_BATCH = 500
_LOST_GENERATION = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                              KafkaError.UNKNOWN_MEMBER_ID})  # fmt: skip
# Errors no retry mends: the consumer's credentials or permissions. Anything else that is
# not fatal (the broker away, a coordinator moving, a timed-out request) is waited out.
_REFUSED = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
     KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
     KafkaError._AUTHENTICATION, KafkaError._SSL}
)  # fmt: skip
Rebalance = Callable[[Consumer, list[TopicPartition]], None]
Guard = Callable[[str, float], AbstractContextManager[None]]


def unguarded(_call: str, _timeout_s: float) -> AbstractContextManager[None]:
    """The default `Guard`: no watchdog watches the call."""
    return contextlib.nullcontext()


class OutageLog:
    """What the clients say while the broker is away: one warning line per `every_s` for
    the whole process (every consumer's clients share it), and one when it is back.
    The errors of the reconnection itself, just after, stay quiet for `every_s`."""

    def __init__(self, every_s: float = _OUTAGE_REPORT_S) -> None:
        self._every_s = every_s
        self._lock = threading.Lock()
        self._since: float | None = None  # first problem since the broker last answered
        self._last_line = -every_s  # when any line was last written (monotonic)
        self._announced = False  # the current problem was reported

    def problem(self, who: str, what: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._since = self._since if self._since is not None else now
            if now - self._last_line < self._every_s:
                return
            self._last_line, self._announced = now, True
            log.warning("%s: %s; waiting for the broker (%.0f s so far), one line per %.0f s",
                        who, what, now - self._since, self._every_s)  # fmt: skip

    def client_error(self, who: str) -> Callable[[KafkaError], None]:
        """An `error_cb` for a client: its errors go to `problem`, never to stderr."""
        return lambda error: self.problem(who, f"Kafka client {error.name()}")

    def answered(self, who: str) -> None:
        """The broker took a call again: say so once, if a problem was reported."""
        with self._lock:
            if self._announced and self._since is not None:
                now = time.monotonic()
                log.warning("%s: the broker answers again after %.0f s; serving",
                            who, now - self._since)  # fmt: skip
                self._last_line = now
            self._since, self._announced = None, False


OUTAGE = OutageLog()


def _outage_client(client: Mapping[str, Any], who: str) -> dict[str, Any]:
    """Client settings that report errors through `OUTAGE` and retry a lost connection
    at least once a second (the default backoff grows to 10 s)."""
    return {**client, "error_cb": OUTAGE.client_error(who), "reconnect.backoff.max.ms": 1000}


class CommandSource:
    """The group consumer of both command topics: read_committed, offsets committed by hand."""

    def __init__(
        self, client: Mapping[str, Any], group_id: str, topics: list[str], consumer: str,
        guard: Guard = unguarded,
    ) -> None:  # fmt: skip
        self._topics = topics
        self._name = consumer
        self._who = f"consumer {consumer}"
        self._guard = guard
        self._consumer = Consumer(
            {**_outage_client(client, self._who), "group.id": group_id,
             "enable.auto.commit": False, "auto.offset.reset": "earliest",
             "isolation.level": "read_committed"}
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
        """The next records; a broker away is reported (once per interval) and waited
        for; raises only on a fatal error or a refusal a retry cannot mend."""
        messages = []
        with self._guard("consume", timeout):
            received = self._consumer.consume(_POLL_BATCH, timeout)
        for message in received:
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal() or error.code() in _REFUSED:
                raise DownstreamError(f"consumer {self._name}: Kafka error {error.name()}")
            else:
                OUTAGE.problem(self._who, f"Kafka error {error.name()}")
        return messages

    def commit(self, offsets: Mapping[Partition, int]) -> bool:
        """Commit synchronously; False when a rebalance refused it (the next owner re-reads)
        or the broker is away (the offsets stay uncommitted and are tried again later)."""
        wanted = [TopicPartition(topic, p, offset) for (topic, p), offset in offsets.items()]
        try:
            with self._guard("commit", _COMMIT_GUARD_S):
                result = self._consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            return self._commit_failed(exc.args[0])
        failed = [tp.error for tp in result or [] if tp.error is not None]
        if failed:
            return self._commit_failed(failed[0])
        OUTAGE.answered(self._who)
        return True

    def seek(self, offsets: Mapping[Partition, int]) -> None:
        """Move back to unanswered commands, so a later poll returns them again."""
        for (topic, partition), offset in offsets.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("consumer %s: cannot seek back (%s); a new instance re-reads",
                            self._name, exc.args[0].name())  # fmt: skip

    def close(self) -> None:
        """Leave the group; a broker away makes it one line, never an exception."""
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("consumer %s: could not leave the group (%s); its partitions move "
                        "after the session timeout", self._name, exc.args[0].name())  # fmt: skip

    def _commit_failed(self, error: KafkaError) -> bool:
        if error.code() in _LOST_GENERATION:
            log.warning("consumer %s: commit refused (%s); commands will be read again",
                        self._name, error.name())  # fmt: skip
            return False
        if error.fatal() or error.code() in _REFUSED:
            raise DownstreamError(f"consumer {self._name}: cannot commit offsets: {error.name()}")
        OUTAGE.problem(self._who, f"commit deferred ({error.name()})")
        return False


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
        self, client: Mapping[str, Any], schemas: SchemaCatalog, topic: str, consumer: str,
        guard: Guard = unguarded,
    ) -> None:  # fmt: skip
        self._serde = AvroSerde(schemas)
        self._contract = schemas.latest("Acknowledgement")
        self._topic = topic
        self._consumer = consumer
        self._who = f"consumer {consumer}"
        self._guard = guard
        self._refused: dict[str, str] = {}  # command id -> the error Kafka refused it with
        self.dropped: dict[str, str] = {}  # refused for what the answer is; see wait_delivered
        # No local delivery timeout: an answer waits in the producer until the broker
        # takes it (or refuses it); a person stopping the process is the only way out.
        self._producer = Producer(
            {**_outage_client(client, self._who), "enable.idempotence": True, "acks": "all",
             "linger.ms": 2, "message.timeout.ms": 0}
        )  # fmt: skip

    def queue(self, command: ReceivedCommand, answer: Answer, now: datetime) -> None:
        """Hand one answer to the producer, with the current trace context in its headers."""
        value = {"command_id": command.command_id, "request_id": command.request_id,
                 "consumer": self._consumer, "outcome": answer.outcome,
                 "reason": answer.reason, "acknowledged_at": now}  # fmt: skip
        try:
            self._producer.produce(
                self._topic, self._serde.serialize(value, self._contract),
                command.request_id.encode(),
                on_delivery=functools.partial(self._on_delivery, command.command_id),
                headers=inject_context([]),  # type: ignore[arg-type]
            )  # fmt: skip
        except (KafkaException, BufferError) as exc:
            why = exc.args[0].name() if isinstance(exc, KafkaException) else "queue full"
            raise DownstreamError(
                f"consumer {self._consumer}: cannot send the answer to {command.command_id}: {why}"
            ) from None
        self._producer.poll(0)

    def wait_delivered(
        self, count: int, stop: threading.Event | None = None,
        beat: Callable[[], None] | None = None,
    ) -> bool:  # fmt: skip
        """Block until Kafka has every queued answer (True), however long the broker is
        away, or until `stop` is set (False: the answers stay queued, their commands
        uncommitted, so they are read and answered again). An answer refused for what it
        is (its size, its form, a topic policy: `streams.kafka.refusals`) would be refused
        again on every try: it goes to `dropped` (command id -> error) and counts as
        delivered, so one command cannot block its partition. Raise if any was refused
        for another reason. `beat` is called for every slice waited (the heartbeat)."""
        started = time.monotonic()
        while True:
            if beat is not None:
                beat()
            with self._guard("flush", _FLUSH_SLICE_S):
                remaining = self._producer.flush(_FLUSH_SLICE_S)
            for command_id, error in list(self._refused.items()):
                if error in RECORD_ERROR_NAMES:
                    self.dropped[command_id] = self._refused.pop(command_id)
            if self._refused:
                refused = sorted(set(self._refused.values()))
                self._refused.clear()
                raise DownstreamError(
                    f"consumer {self._consumer}: Kafka refused answer(s) ({refused}) of "
                    f"{count}; their commands stay uncommitted and will be read again"
                )
            if not remaining:
                OUTAGE.answered(self._who)
                return True
            if stop is not None and stop.is_set():
                log.warning("consumer %s: stopping with %d answer(s) not yet taken by Kafka; "
                            "their commands will be read again", self._consumer,
                            remaining)  # fmt: skip
                return False
            if time.monotonic() - started >= _SLOW_DELIVERY_S:
                OUTAGE.problem(self._who, f"{remaining} answer(s) waiting for Kafka")

    def close(self) -> None:
        """Deliver what is still queued, for a while; the rest is answered again later."""
        remaining = self._producer.flush(_CLOSE_FLUSH_S)
        if remaining:
            log.warning("consumer %s: %d answer(s) not delivered at close; their commands "
                        "will be read again", self._consumer, remaining)  # fmt: skip

    def _on_delivery(
        self, command_id: str, error: KafkaError | None, _message: Message | None
    ) -> None:
        if error is not None:
            self._refused[command_id] = error.name()
