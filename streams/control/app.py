"""The control plane (`contactflow run privacy`): a faust-streaming app.

Low volume, many states. Agents register the recordings the router announces and place
the holds its signals ask for; a timer sweeps expired recordings. Privacy agents take
requests, ORES's instructions and consumers' acknowledgements; a timer re-sends
unanswered commands and escalates what is overdue, another cuts the request records the
ledger has taken in from the partitions this app holds. Every input goes through its step
in `streams.control.inputs` (the catch-ups use the same), whose ledger transaction is the
system of record, so an input replayed after a rebalance or a crash changes nothing twice
(at-least-once input, idempotent effects). The blocking work (ledger transactions, outbox
flushes, admin calls) runs in one `LedgerThread`, never on the event loop; an agent awaits
its record's work before it takes the next, so each partition keeps its order. The clock
is injected.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar

import faust
from confluent_kafka import KafkaException
from faust.exceptions import ConsumerNotStarted
from sqlalchemy.exc import SQLAlchemyError

from schemas.topic_names import RECORDINGS_STANDARD, RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.control.inputs import (
    InputStep,
    InternalError,
    LedgerThread,
    apply_in_thread,
    is_transient,
    privacy_steps,
    retention_steps,
)
from streams.control.instruments import ControlInstruments
from streams.control.privacy.service import PrivacyService
from streams.control.retention.service import RetentionService
from streams.errors import ContactflowError
from streams.kafka.faust_isolation import read_committed
from streams.settings import Settings

log = logging.getLogger(__name__)
APP_ID = "contactflow-control"
REQUEST_CUT_INTERVAL_S = 5.0
_HELD_ROUNDS_BEFORE_WARNING = 12
CUT_ERRORS = (KafkaException, SQLAlchemyError, ContactflowError, ConsumerNotStarted)
_AGENT_NAMES = {RECORDINGS_STANDARD: "register-recordings", RETENTION_SIGNALS: "place-signal-holds"}
_T = TypeVar("_T")


def create_control_app(
    container: Container,
    service: RetentionService,
    clock: Callable[[], datetime],
    *,
    sweep_interval_s: float,
    privacy: PrivacyService | None = None,
    deadline_interval_s: float = 60.0,
    request_cut_interval_s: float = REQUEST_CUT_INTERVAL_S,
    thread: LedgerThread | None = None,
) -> faust.App:
    """The control plane's faust app; `thread`: where its ledger work runs (one of its
    own by default; the worker passes one whose `check` its /healthz reads)."""
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
    read_committed(app)  # recordings and retention signals come in the router's transactions
    instruments = ControlInstruments(container.telemetry, settings.scoped(APP_ID))
    thread = thread or LedgerThread()
    steps = retention_steps(service) | (privacy_steps(privacy) if privacy is not None else {})
    for step in steps.values():
        _input_agent(app, container, step, clock, thread, instruments)

    @app.timer(interval=sweep_interval_s, name="expire-recordings")  # type: ignore[untyped-decorator]
    async def expire_recordings() -> None:
        result = await _this_round(thread, "expire-recordings", service.sweep, clock())
        if result is not None and result.expired:
            log.info("%s expired %d recording(s)", result.sweep_id, len(result.expired))

    if privacy is not None:
        _privacy_deadlines(app, privacy, clock, deadline_interval_s, thread)
        _request_cut(app, privacy, clock, request_cut_interval_s, thread)
    return app


def _input_agent(
    app: faust.App, container: Container, step: InputStep, clock: Callable[[], datetime],
    thread: LedgerThread, instruments: ControlInstruments,
) -> None:  # fmt: skip
    """One agent per input topic, named after it."""
    topic = app.topic(container.topics.name(step.logical), key_serializer="raw",
                      value_serializer="raw")  # fmt: skip

    async def agent(stream: Any) -> None:
        await consume_inputs(_each_value(stream), step, clock, thread, instruments)

    name = _AGENT_NAMES.get(step.logical, step.logical.replace(".", "-"))
    app.agent(topic, name=name)(agent)


async def _each_value(stream: Any) -> AsyncIterator[tuple[Any, bytes]]:
    async for event in stream.events():
        if event.value is not None:  # tombstones of compacted topics carry nothing
            yield event.message, event.value


async def consume_inputs(
    events: AsyncIterable[tuple[Any, bytes]], step: InputStep, clock: Callable[[], datetime],
    thread: LedgerThread, instruments: ControlInstruments, *, first_pause_s: float = 1.0,
) -> None:  # fmt: skip
    """An agent's body: each (faust message, value) through `step` in `thread`, the next
    taken only once the last is applied or dead-lettered (each partition keeps its order),
    while the event loop keeps turning; `first_pause_s`: before a transient failure's retry."""
    async for message, value in events:
        record = _Record(message, value)
        with instruments.consumed(message):
            outcome = await apply_in_thread(step, record, clock, thread,
                                            first_pause_s=first_pause_s)  # fmt: skip
        if outcome.dead_letter_code is not None:
            instruments.dead_lettered(record.topic(), outcome.dead_letter_code)


async def _this_round(
    thread: LedgerThread, name: str, action: Callable[..., _T], *args: Any
) -> _T | None:
    """A timer's action in `thread`; a failure skips this round and the next round tries
    again: a transient one in one line, a programming error in an ERROR line with its
    traceback (without the message). Left to faust, a timer that raised never ran again."""
    try:
        return await thread.run(action, *args)
    except Exception as exc:  # noqa: BLE001 - a timer's failure must not end the timer
        if is_transient(exc):
            log.warning("%s skipped this round: %s", name, type(exc).__name__)
            return None
        failure = InternalError(exc)
        log.error("%s skipped this round: %s. Traceback (message withheld):\n%s",
                  name, failure, failure.stack)  # fmt: skip
        return None


def _privacy_deadlines(
    app: faust.App, privacy: PrivacyService, clock: Callable[[], datetime], interval_s: float,
    thread: LedgerThread,
) -> None:  # fmt: skip
    """Re-send unanswered commands, escalate what is overdue: through PrivacyService,
    whose stable ids and refused transitions make a repeated round change nothing twice."""

    @app.timer(interval=interval_s, name="privacy-deadlines")  # type: ignore[untyped-decorator]
    async def privacy_deadlines() -> None:
        result = await _this_round(thread, "privacy-deadlines", privacy.tick, clock())
        if result is None:
            return
        if result.resent or result.escalated_commands or result.escalated_requests:
            log.warning(
                "deadlines: re-sent %d, escalated %d consumer(s), %d request(s)",
                result.resent, result.escalated_commands, result.escalated_requests,
            )  # fmt: skip


def _request_cut(
    app: faust.App, privacy: PrivacyService, clock: Callable[[], datetime], interval_s: float,
    thread: LedgerThread,
) -> None:  # fmt: skip
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
            result = await thread.run(privacy.cut_taken_in_requests, clock(), held)
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
