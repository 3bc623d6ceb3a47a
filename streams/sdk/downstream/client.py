"""The downstream SDK: a registered consumer receives its privacy commands and answers them.

Contract with the privacy app: commands arrive on `privacy.erasure.v1` (erase) and
`privacy.restriction.v1` (every other command), one per (consumer, subject, controller);
records for other consumers are skipped. A re-send keeps `command_id` and bumps `attempt`:
answer it again. Answers go to `privacy.acks.v1`, keyed by request id. At least once: an
answer is delivered before its command's offset is committed, so a crash in between repeats
both; the privacy app takes a repeated final answer as the same answer. Logs, spans and
exceptions carry ids, command names and outcomes only, never personal data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

from confluent_kafka import Consumer, Message, TopicPartition
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from schemas.topic_names import PRIVACY_ACKS, PRIVACY_ERASURE, PRIVACY_RESTRICTION
from streams.bootstrap import Container
from streams.runtime.health import Heartbeat
from streams.sdk.downstream.model import (
    Answer,
    DownstreamError,
    ErrorPolicy,
    Handler,
    ReceivedCommand,
    ServeStats,
    answer_failed,
    command_from_record,
    load_registry,
)
from streams.sdk.downstream.offsets import OffsetTracker, Partition
from streams.sdk.downstream.wire import AnswerSender, CommandReader, CommandSource, Guard, unguarded
from streams.telemetry import extract_context, kafka_span_attributes

__all__ = [
    "Answer",
    "DownstreamConsumer",
    "DownstreamError",
    "ReceivedCommand",
    "ServeStats",
    "answer_failed",
    "load_registry",
]

log = logging.getLogger(__name__)

COMMAND_TOPICS = (PRIVACY_ERASURE, PRIVACY_RESTRICTION)
_SERVE_POLL_S = 0.5
# /healthz fails when a serving loop has not turned for this long: three times its
# longest guarded Kafka call (a synchronous commit, 60 s), which the watchdog ends sooner.
HEALTH_STALE_S = 180.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class DownstreamConsumer:
    """Receives one registered consumer's commands and delivers its answers."""

    def __init__(
        self,
        container: Container,
        consumer: str,
        *,
        group_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        guard: Guard = unguarded,
    ) -> None:
        """`guard` wraps each blocking Kafka call (a `CallWatchdog.guard`, one watchdog per
        serving thread): a client call that never returns is then noticed and recovered."""
        registered = load_registry(container).consumers
        if consumer not in registered:
            raise DownstreamError(
                f"consumer {consumer!r} is not registered in infra/consumers.yaml "
                f"(registered: {', '.join(sorted(registered))})"
            )
        self.name = consumer
        self.group_id = group_id or container.settings.scoped(f"contactflow-downstream-{consumer}")
        self.ignored = 0  # running totals of skipped records, over every poll
        self.unreadable = 0
        self._clock = clock
        self._reader = CommandReader(container.schemas)
        topics = [container.topics.name(logical) for logical in COMMAND_TOPICS]
        self._tracer = container.telemetry.tracer("contactflow.downstream")
        meter = container.telemetry.meter("contactflow.downstream")
        self._answers = meter.create_counter(
            "contactflow.downstream.answers", unit="{answer}",
            description="Answers delivered to privacy.acks.v1, by consumer, command, outcome",
        )  # fmt: skip
        self._skips = meter.create_counter(
            "contactflow.downstream.skipped", unit="{record}",
            description="Command-topic records skipped: other consumers' or unreadable",
        )  # fmt: skip
        self._offsets = OffsetTracker()
        self._contexts: dict[tuple[str, int, int], Context] = {}
        self._stop = threading.Event()
        self._active_since: float | None = None  # last assignment or record
        self._closed = False
        self.heartbeat = Heartbeat(HEALTH_STALE_S)  # beaten by `serve`, for /healthz
        self._partitions: set[Partition] = set()  # assigned, for /readyz
        self._ack_topic = container.topics.name(PRIVACY_ACKS)
        client = container.settings.kafka_client_config()
        self._source = CommandSource(client, self.group_id, topics, consumer, guard)
        try:
            self._source.subscribe(container.settings.bootstrap, self._on_assign, self._on_revoke)
        except DownstreamError:
            self._source.close()
            raise
        self._sender = AnswerSender(
            client, container.schemas, container.topics.name(PRIVACY_ACKS), consumer, guard
        )

    # -- the application's side ----------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list[ReceivedCommand]:
        """This consumer's next commands (maybe none). Other consumers' commands and
        unreadable records are counted, logged by position only, and committed."""
        commands, skipped = [], Counter[str]()
        for message in self._source.consume(timeout):
            self._active_since = time.monotonic()
            command = self._read(message, skipped)
            if command is not None:
                commands.append(command)
        for reason, count in skipped.items():  # one metric update per poll, not per record
            self._skips.add(count, {"consumer": self.name, "reason": reason})
        self._commit()
        return commands

    def acknowledge(self, command: ReceivedCommand, answer: Answer) -> bool:
        """Deliver the answer, then commit the command's offset; raise if Kafka refuses.
        While the broker is away this waits for it; False if `stop()` ended the wait (the
        command is then not acknowledged and comes again)."""
        self._sender.queue(command, answer, self._clock())
        return self._deliver([(command, answer)])

    def serve(
        self,
        handler: Handler,
        *,
        max_idle_s: float | None = None,
        max_commands: int | None = None,
        on_error: ErrorPolicy | None = None,
        on_answered: Callable[[ReceivedCommand, Answer], None] | None = None,
    ) -> ServeStats:
        """Poll, handle and answer until `stop()`, `max_commands` received, or no record for
        `max_idle_s` once partitions are assigned. A handler exception goes to `on_error`
        (default `answer_failed`); an exception from `on_error` stops serving unanswered.
        Close soon after it returns: a member that stops polling holds up its group."""
        stats = ServeStats()
        policy = on_error or answer_failed
        ignored, unreadable = self.ignored, self.unreadable
        try:
            while not self._stop.is_set() and not _reached(stats, max_commands):
                self.heartbeat.beat()
                commands = self.poll(_SERVE_POLL_S)
                if not commands and self._idle_for(max_idle_s):
                    break
                if max_commands is not None:
                    commands = commands[: max_commands - stats.received]
                stats.received += len(commands)
                answers = [(c, self._handle(c, handler, policy, stats)) for c in commands]
                if not self._deliver(answers):
                    break  # stopped while the broker was away: read again next time
                for command, answer in answers:
                    stats.answered[answer.outcome] += 1
                    if on_answered is not None:
                        on_answered(command, answer)
        finally:
            self._stop.clear()
            self._rewind_unanswered()
            stats.ignored = self.ignored - ignored
            stats.unreadable = self.unreadable - unreadable
        return stats

    def assignment_problem(self) -> str | None:
        """For /readyz: None once partitions of the command topics are assigned."""
        return None if self._partitions else f"consumer {self.name}: no partition assigned yet"

    def stop(self) -> None:
        """Ask `serve` to return after the batch in hand (safe from another thread)."""
        self._stop.set()

    def close(self) -> None:
        """Deliver answers in flight and leave the group; unanswered commands are re-read."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sender.close()
        finally:
            self._source.close()

    def __enter__(self) -> DownstreamConsumer:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def _read(self, message: Message, skipped: Counter[str]) -> ReceivedCommand | None:
        topic, partition = message.topic() or "", message.partition() or 0
        offset = message.offset() or 0
        record, reason = self._reader.read(message.value())
        if record is not None and record["consumer"] == self.name:
            self._offsets.handed_out((topic, partition), offset)
            headers = cast(Sequence[tuple[str, bytes]] | None, message.headers())
            self._contexts[(topic, partition, offset)] = extract_context(headers)
            return command_from_record(record, topic, partition, offset)
        if record is None:
            self.unreadable += 1
            log.warning("unreadable record at %s/%d@%d: %s", topic, partition, offset, reason)
        else:
            self.ignored += 1
            reason = "other_consumer"
        skipped[reason] += 1
        self._offsets.skipped((topic, partition), offset)
        return None

    def _idle_for(self, max_idle_s: float | None) -> bool:
        if max_idle_s is None or self._active_since is None:
            return False
        return time.monotonic() - self._active_since > max_idle_s

    # -- answering -----------------------------------------------------------------------

    def _handle(
        self, command: ReceivedCommand, handler: Handler, policy: ErrorPolicy, stats: ServeStats
    ) -> Answer:
        """Run the handler inside the command's span and queue its answer. The span never
        records an exception's message (it could quote personal data), only its type."""
        parent = self._contexts.pop((command.topic, command.partition, command.offset), None)
        attributes: dict[str, str | int | bool] = {
            **kafka_span_attributes("process", destination=command.topic,
                                    partition=command.partition, group=self.group_id,
                                    offset=command.offset),
            "downstream.consumer": self.name, "downstream.command": command.command,
            "downstream.command_id": command.command_id, "downstream.attempt": command.attempt,
            "downstream.late": self._clock() > command.answer_by,
        }  # fmt: skip
        with self._tracer.start_as_current_span(
            "downstream.command", context=parent, attributes=attributes,
            kind=SpanKind.CONSUMER, record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                answer = self._answer(command, handler, policy, stats, span)
                span.set_attribute("downstream.outcome", answer.outcome)
                with self._tracer.start_as_current_span(
                    f"send {self._ack_topic}", kind=SpanKind.PRODUCER,
                    attributes=kafka_span_attributes("send", destination=self._ack_topic),
                ):  # fmt: skip
                    self._sender.queue(command, answer, self._clock())
            except BaseException as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
        return answer

    def _answer(
        self, command: ReceivedCommand, handler: Handler, policy: ErrorPolicy,
        stats: ServeStats, span: Span,
    ) -> Answer:  # fmt: skip
        try:
            answer = handler(command)
            if not isinstance(answer, Answer):
                raise TypeError("the handler must return an Answer")
        except Exception as error:  # noqa: BLE001 - the injected error policy decides
            stats.handler_errors += 1
            span.set_attribute("downstream.error", type(error).__name__)
            log.warning("consumer %s: handler raised %s on command %s", self.name,
                        type(error).__name__, command.command_id)  # fmt: skip
            return policy(error, command)
        return answer

    def _deliver(self, answers: list[tuple[ReceivedCommand, Answer]]) -> bool:
        """Wait until Kafka has every queued answer, then commit their commands; False
        when `stop()` ended the wait first (the commands stay unacknowledged)."""
        if not answers:
            return True
        if not self._sender.wait_delivered(len(answers), self._stop, self.heartbeat.beat):
            return False
        delivered = Counter[tuple[str, str]]()
        for command, answer in answers:
            self._offsets.acknowledged((command.topic, command.partition), command.offset)
            error = self._sender.dropped.pop(command.command_id, None)
            if error is not None:  # refused for what it is: skipped, not blocking the rest
                log.warning("consumer %s: Kafka refused the answer to command %s (%s) and "
                            "would refuse it again; the command is skipped, and the privacy "
                            "app will see this consumer as late on it", self.name,
                            command.command_id, error)  # fmt: skip
                self._skips.add(1, {"consumer": self.name, "reason": "answer_refused"})
                continue
            delivered[(command.command, answer.outcome)] += 1
        for (kind, outcome), count in delivered.items():
            self._answers.add(count, {"consumer": self.name, "command": kind, "outcome": outcome})
        self._commit()
        return True

    # -- offsets -------------------------------------------------------------------------

    def _commit(self) -> None:
        offsets = self._offsets.committable()
        if offsets and self._source.commit(offsets):
            self._offsets.mark_committed(offsets)

    def _rewind_unanswered(self) -> None:
        """Seek back to commands handed out but never answered, so a later poll returns them."""
        self._source.seek(self._offsets.release_pending())

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._active_since = time.monotonic()
        self._partitions |= {(tp.topic, tp.partition) for tp in partitions}

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost: set[Partition] = {(tp.topic, tp.partition) for tp in partitions}
        self._partitions -= lost
        self._offsets.forget(lost)
        for key in [k for k in self._contexts if (k[0], k[1]) in lost]:
            del self._contexts[key]


def _reached(stats: ServeStats, max_commands: int | None) -> bool:
    return max_commands is not None and stats.received >= max_commands
