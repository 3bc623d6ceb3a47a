"""The control plane (`contactflow run privacy`): a faust-streaming app.

Low volume, many states. Agents register the recordings the router announces and place
the holds its signals ask for; a timer sweeps expired recordings. Privacy agents take
requests, ORES's instructions and consumers' acknowledgements; a timer re-sends
unanswered commands and escalates what is overdue, another cuts the request records the
ledger has taken in from the partitions this app holds. Every action goes
through `RetentionService`, whose ledger transaction is the system of record, so an input
replayed after a rebalance or a crash changes nothing twice (at-least-once input,
idempotent effects). The clock is injected.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import faust
from confluent_kafka import KafkaException
from faust.exceptions import ConsumerNotStarted
from sqlalchemy.exc import SQLAlchemyError

from schemas.topic_names import RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.control.instruments import ControlInstruments
from streams.control.privacy.catchup import INPUT_ERRORS, handlers
from streams.control.privacy.service import PrivacyService
from streams.control.retention.service import STANDARD, RetentionService
from streams.errors import ContactflowError
from streams.kafka.outbox import OutboxRefused
from streams.settings import Settings

log = logging.getLogger(__name__)
APP_ID = "contactflow-control"
REQUEST_CUT_INTERVAL_S = 5.0
_HELD_ROUNDS_BEFORE_WARNING = 12
_RETRY_REPORT_S = 30.0  # one line per input per this long while Kafka does not take it
_RETRY_PAUSE_MAX_S = 30.0
CUT_ERRORS = (KafkaException, SQLAlchemyError, ContactflowError, ConsumerNotStarted)


def create_control_app(
    container: Container,
    service: RetentionService,
    clock: Callable[[], datetime],
    *,
    sweep_interval_s: float,
    privacy: PrivacyService | None = None,
    deadline_interval_s: float = 60.0,
    request_cut_interval_s: float = REQUEST_CUT_INTERVAL_S,
) -> faust.App:
    settings = container.settings
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level itself
    app = faust.App(
        settings.scoped(APP_ID),  # the app's consumer group
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
    )

    instruments = ControlInstruments(container.telemetry, settings.scoped(APP_ID))

    def raw_topic(logical: str) -> Any:
        return app.topic(
            container.topics.name(logical), key_serializer="raw", value_serializer="raw"
        )

    async def each_value(stream: Any) -> AsyncIterator[tuple[Any, bytes]]:
        async for event in stream.events():
            if event.value is not None:  # tombstones of compacted topics carry nothing
                yield event.message, event.value

    @app.agent(raw_topic(STANDARD), name="register-recordings")
    async def register_recordings(stream: Any) -> None:
        async for message, value in each_value(stream):
            with instruments.consumed(message):
                await _guarded(service, message, "register", clock,
                               service.ingest_recording, value, instruments)  # fmt: skip

    @app.agent(raw_topic(RETENTION_SIGNALS), name="place-signal-holds")
    async def place_signal_holds(stream: Any) -> None:
        async for message, value in each_value(stream):
            with instruments.consumed(message):
                await _guarded(service, message, "hold", clock, service.apply_signal,
                               value, instruments)  # fmt: skip

    @app.timer(interval=sweep_interval_s, name="expire-recordings")  # type: ignore[untyped-decorator]
    async def expire_recordings() -> None:
        result = service.sweep(clock())
        if result.expired:
            log.info("%s expired %d recording(s)", result.sweep_id, len(result.expired))

    if privacy is not None:
        _privacy_agents(app, raw_topic, each_value, privacy, clock, deadline_interval_s,
                        instruments)  # fmt: skip
        _request_cut(app, privacy, clock, request_cut_interval_s)
    return app


def _privacy_agents(
    app: faust.App, raw_topic: Callable[[str], Any], each_value: Any, privacy: PrivacyService,
    clock: Callable[[], datetime], deadline_interval_s: float, instruments: ControlInstruments,
) -> None:  # fmt: skip
    """One agent per privacy input topic and a deadline timer, all through PrivacyService:
    requests replayed after a rebalance change nothing twice (stable ids, refused
    transitions, repeated answers)."""
    for logical, apply in handlers(privacy).items():
        _privacy_agent(app, raw_topic(logical), logical, apply, each_value, privacy, clock,
                       instruments)  # fmt: skip

    @app.timer(interval=deadline_interval_s, name="privacy-deadlines")  # type: ignore[untyped-decorator]
    async def privacy_deadlines() -> None:
        result = privacy.tick(clock())
        if result.resent or result.escalated_commands or result.escalated_requests:
            log.warning(
                "deadlines: re-sent %d, escalated %d consumer(s), %d request(s)",
                result.resent, result.escalated_commands, result.escalated_requests,
            )  # fmt: skip


def _request_cut(
    app: faust.App, privacy: PrivacyService, clock: Callable[[], datetime], interval_s: float
) -> None:
    """Cut privacy.requests.v1 below what the ledger took in, in the partitions this app
    holds (two apps in a group each cut their own). A cut that fails waits for the next
    round: nothing is cut that the ledger does not hold."""
    topic = privacy.requests_topic
    waiting: dict[int, tuple[int, int]] = {}  # partition -> (offset held at, rounds)

    @app.timer(interval=interval_s, name="cut-taken-in-requests")  # type: ignore[untyped-decorator]
    async def cut_taken_in_requests() -> None:
        try:
            held = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
            if not held:
                return
            result = privacy.cut_taken_in_requests(clock(), held)
        except CUT_ERRORS as exc:
            log.warning("request cut skipped this round: %s", type(exc).__name__)
            return
        if result.removed:
            log.info("removed %d request record(s) taken in", result.removed)
        for partition, error in result.refused.items():
            log.warning("request cut refused on %s[%d]: %s", topic, partition, error)
        for partition, offset in result.held.items():
            at, rounds = waiting.get(partition, (offset, 0))
            rounds = rounds + 1 if at == offset else 1
            waiting[partition] = (offset, rounds)
            if rounds == _HELD_ROUNDS_BEFORE_WARNING:
                log.warning("%s[%d]@%d is not in the ledger after %d rounds; `contactflow dsr "
                            "process` takes it in", topic, partition, offset, rounds)  # fmt: skip
        for partition in set(waiting) - set(result.held):
            del waiting[partition]


def _privacy_agent(
    app: faust.App, topic: Any, logical: str, apply: Callable[[bytes, datetime], Any],
    each_value: Any, privacy: PrivacyService, clock: Callable[[], datetime],
    instruments: ControlInstruments,
) -> None:  # fmt: skip
    async def agent(stream: Any) -> None:
        async for message, value in each_value(stream):
            with instruments.consumed(message):
                record = _Record(message, value)

                def dead_letter(exc: Exception, code: str, record: _Record = record) -> None:
                    privacy.dead_letter(record, "privacy", exc, clock(), code=code)
                    instruments.dead_lettered(record.topic(), code)

                await _apply_input(record, lambda v: apply(v, clock()), dead_letter)

    app.agent(topic, name=logical.replace(".", "-"))(agent)


class _Record:
    """A faust message seen through confluent-kafka's Message accessors."""

    def __init__(self, message: Any, value: bytes) -> None:
        self._message, self._value = message, value

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def key(self) -> bytes | None:
        return self._message.key  # type: ignore[no-any-return]

    def value(self) -> bytes:
        return self._value


def faust_credentials(settings: Settings) -> Any:
    """The same SCRAM user (and CA) as every confluent-kafka client of this process."""
    if not settings.kafka_username:
        if settings.kafka_ssl_ca_location:
            return ssl.create_default_context(cafile=str(settings.kafka_ssl_ca_location))
        return None
    context = None
    if settings.kafka_ssl_ca_location:
        context = ssl.create_default_context(cafile=str(settings.kafka_ssl_ca_location))
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.resolved_kafka_password().get_secret_value(),
        mechanism="SCRAM-SHA-512",
        ssl_context=context,
    )


async def _guarded(
    service: RetentionService,
    message: Any,
    stage: str,
    clock: Callable[[], datetime],
    action: Callable[[bytes, datetime], Any],
    value: bytes,
    instruments: ControlInstruments | None = None,
) -> None:
    """Run one retention input's action (see `_apply_input`); its dead letters go through
    the retention service."""
    record = _Record(message, value)

    def dead_letter(exc: Exception, code: str) -> None:
        log.error("%s failed at %s[%s]@%s: %s", stage, record.topic(), record.partition(),
                  record.offset(), code)  # fmt: skip
        service.dead_letter(record.topic(), record.partition(), record.offset(),
                            record.key(), value, stage, code, str(exc), clock())  # fmt: skip
        if instruments is not None:
            instruments.dead_lettered(record.topic(), code)

    await _apply_input(record, lambda v: action(v, clock()), dead_letter)


async def _apply_input(
    record: _Record, action: Callable[[bytes], Any],
    dead_letter: Callable[[Exception, str], None],
) -> None:  # fmt: skip
    """Run one input's action until Kafka takes what it sends.

    An input the action cannot use (`INPUT_ERRORS`) goes to `dead_letter` with its error's
    type, and so does one whose messages Kafka refuses for what they are (size, form,
    policy), with the broker's error name: sending them again cannot succeed. Any other
    refusal (the broker away, a timeout) leaves the ledger as it was, so the same input is
    tried again after a pause: never skipped (its offset is not passed), never a crash of
    the agent, one line per `_RETRY_REPORT_S`."""
    pause, said, tries = 1.0, 0.0, 0
    while True:
        try:
            try:
                action(record.value())
            except INPUT_ERRORS as exc:
                dead_letter(exc, type(exc).__name__)
            except OutboxRefused as exc:
                if not exc.about_the_records:
                    raise
                dead_letter(exc, exc.reason_code)
        except OutboxRefused as exc:  # from the action or from the dead letter itself
            tries += 1
            if time.monotonic() - said >= _RETRY_REPORT_S:
                said = time.monotonic()
                log.warning("%s[%d]@%d: Kafka did not take its messages (%s, try %d); "
                            "trying again", record.topic(), record.partition(),
                            record.offset(), exc.reason_code, tries)  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
            continue
        if tries:
            log.warning("%s[%d]@%d: taken after %d tries", record.topic(), record.partition(),
                        record.offset(), tries + 1)  # fmt: skip
        return
