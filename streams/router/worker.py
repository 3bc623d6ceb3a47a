"""`contactflow run router`: the data plane's consume-transform-produce loop.

Exactly once: each batch's outputs and its input offsets are committed in one Kafka
transaction (confluent-kafka / librdkafka). A crash before the commit aborts the batch
and the next owner of the partitions reads it again; the stable `transactional.id` per
instance fences a zombie and aborts its open transaction at restart. Scales out with more
instances in the `contactflow-router` consumer group, each with its own instance id.

On a machine with two cores or more, a helper process decodes the next batches
(`streams.router.helper`, up to `_DECODE_AHEAD` of them) while this process routes and
commits batch N, so one router instance uses two cores. And while batch N's transaction
commits, a commit thread writes its ledger rows (new subjects, identifiers, keys and
footprints, in a ledger transaction of their own), then adds its input offsets and
commits it (broker round trips), while this thread routes batch N+1, reading the ledger
and keeping N+1's rows for its own turn; N+1's Kafka transaction begins once N's has
ended (`router_overlap_commits`, on by default). So each batch's ledger commit still comes
before its Kafka commit, and both kinds of commit come one at a time, in order. When
batch N aborts, the batches routed or decoded after it are dropped and read again from the
committed offsets (ledger rows written stand: routing an event again resolves it to the
same subject; rows not written are forgotten, with every cache, and made again).

This module is the loop; the producer and its transactions are `streams.router.transaction`'s,
the retried broker calls `streams.router.kafka_calls`', the dedup window's seeding at
assignment `streams.router.seeding`'s.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry.trace import SpanKind

from processors.policy import Policy, parse_policy
from processors.pseudonym import Pseudonymiser
from processors.routing import SubjectStatus
from schemas.serde import AvroSerde
from schemas.topic_names import PRIVACY_SUBJECT_STATE
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.infra_files import load_infra_file
from streams.keys import load_keys
from streams.ledger import current_revision, head_revision, session_factory
from streams.router.decode import Outcome
from streams.router.dedup import DedupWindow
from streams.router.directory import MIB, LedgerWrite, LedgerWriteFailed, SubjectDirectory
from streams.router.helper import DecodeHelper, HelperFailed, Pending
from streams.router.kafka_calls import OUTAGE_ERRORS, OUTAGE_REPORT_S, GaveUp, KafkaCalls
from streams.router.limits import OutputLimits, read_output_limits
from streams.router.pipeline import OUTPUT_TOPICS, BatchOutcome, RouterPipeline, decode_request
from streams.router.seeding import seed_dedup_window
from streams.router.state import SubjectStateTable
from streams.router.telemetry import RouterMetrics, batch_links
from streams.router.transaction import PRODUCER_MAX_BYTES, RouterTransactions
from streams.runtime.health import Heartbeat
from streams.runtime.heap import freeze_startup_heap
from streams.runtime.watchdog import CallWatchdog
from streams.telemetry import kafka_span_attributes

log = logging.getLogger(__name__)
GROUP_ID = "contactflow-router"
# Batches handed to the decode helper before the oldest is routed: with two, the helper
# always has the next one queued and never waits for this process between batches.
_DECODE_AHEAD = 2
_ISOLATION_RETRIES = 3  # errors not about a record while isolating one, before re-reading
_LEDGER_WRITE_TRIES = 5  # batches in a row whose ledger rows fail to write, before stopping
Clock = Callable[[], datetime]
# /healthz fails when the loop has not turned for this long: twice the longest guarded
# call (seeding the dedup window, 120 s) plus the watchdog's grace, which restarts a
# blocked call long before. Retries while the broker is away beat too.
HEALTH_STALE_S = 2 * (120 + 5)
_LAG_SAMPLE_S = 5.0  # how often the lag gauge's sample is renewed


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_policy(container: Container) -> Policy:
    """The versioned policy file, validated: a bad file stops the router at start-up."""
    return load_infra_file(container, "policy.yaml", parse_policy, "policy file")


@dataclass
class RouterStats:
    batches: int = 0
    events_in: int = 0
    outputs: int = 0
    aborted: int = 0


@dataclass(frozen=True)
class _Refused:
    """Why a transaction did not commit: the error, and whether it is about one record."""

    error: str
    record_error: bool


@dataclass
class _Batch:
    """A consumed batch whose decoding has started (in the helper) or is done (`decoded`)."""

    messages: list[Message]
    now: datetime
    pending: Pending | None = None
    decoded: list[Outcome] | None = None

    def outcomes(self) -> list[Outcome]:
        if self.decoded is None:
            assert self.pending is not None
            try:
                self.decoded = self.pending.result()
            except HelperFailed as exc:
                raise ContactflowError(f"the router's decode helper failed: {exc}") from None
        return self.decoded


@dataclass(frozen=True)
class _Committing:
    """A routed batch whose transaction is committing in the commit thread."""

    batch: _Batch
    outcome: BatchOutcome
    started: float
    began: float
    future: Future[KafkaException | LedgerWriteFailed | GaveUp | None]


class RouterWorker:
    def __init__(
        self,
        container: Container,
        *,
        clock: Clock = utc_now,
        helper: bool | None = None,
        watchdog: CallWatchdog | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """`helper`: decode in a second process; by default when there are two cores.
        `watchdog`: watches the Kafka calls that may block past their timeout (the CLI
        gives one that restarts the router in place). `heartbeat`: beaten by the loop
        (and while it waits for the broker), for /healthz."""
        settings = container.settings
        self._container = container
        self._clock = clock
        self._stop = threading.Event()
        self._assigned = False
        self._idle_since = time.monotonic()
        self.stats = RouterStats()
        self._watchdog = watchdog
        self._last_client_error = -OUTAGE_REPORT_S
        self.heartbeat = heartbeat or Heartbeat(HEALTH_STALE_S)
        self._partitions: set[tuple[str, int]] = set()  # assigned, for /readyz
        # assigned partitions read to their end since their last record: `run(max_idle_s)`
        # stops only when all are, not when a slow first fetch has not answered yet
        self._at_end: set[tuple[str, int]] = set()
        engine = container.ledger_engine
        if current_revision(engine) != head_revision():
            raise ContactflowError("the ledger is not migrated: run `contactflow ledger upgrade`")
        keys = load_keys(settings)
        serde = AvroSerde(container.schemas)
        self._dedup = DedupWindow(settings.router_dedup_window)
        self.directory = SubjectDirectory(
            session_factory(engine),
            Pseudonymiser(keys.pseudonym_key),
            keys.master_key,
            cache_bytes=settings.router_cache_mb * MIB,
            key_ttl=timedelta(seconds=settings.router_key_ttl_s),
            defer_writes=True,  # written by `_end`, before the Kafka commit
        )
        self._ledger_failures = 0  # batches in a row whose ledger rows failed to write
        self.calls = KafkaCalls(self._stop, self.heartbeat, watchdog)
        self._state = SubjectStateTable(  # an erasure drops the key in every router at once
            settings.kafka_client_config(),
            container.topics.name(PRIVACY_SUBJECT_STATE),
            serde,
            on_erased=self.directory.forget_key,
        )
        self.pipeline = router_pipeline(
            container,
            directory=self.directory,
            subject_status=self._state.status,
            dedup=self._dedup,
        )
        # back within a second of the broker's return, not librdkafka's 10 s backoff
        # and the client's connection errors reported once per interval (`_client_error`)
        client = {
            **settings.kafka_client_config(),
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._client_error,
        }
        self._consumer = Consumer(
            {
                **client,
                "group.id": settings.scoped(GROUP_ID),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "max.poll.interval.ms": 300_000,
                "session.timeout.ms": int(settings.router_session_timeout_s * 1000),
                "fetch.max.bytes": 64 * 1024 * 1024,
                "enable.partition.eof": True,
            }
        )
        self.transactions = RouterTransactions(
            client,
            settings.scoped(f"contactflow-router-{settings.router_instance}"),
            self.calls,
            settings.router_instance,
        )
        self._batch_size = settings.router_batch_size
        self._batch_timeout = settings.router_batch_timeout_s
        self._use_helper = (os.cpu_count() or 1) >= 2 if helper is None else helper
        self._pseudonym_key = keys.pseudonym_key
        self._helper: DecodeHelper | None = None
        self._in_flight: deque[_Batch] = deque()  # consumed, not committed yet, in order
        # Batch N's transaction commits in this thread while batch N+1 is routed (its
        # ledger transaction included); N+1's own transaction begins once N's has ended.
        self._overlap = settings.router_overlap_commits
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="router-commit")
        self._committing: _Committing | None = None
        self._rewind_needed = False
        self._tracer = container.telemetry.tracer("contactflow.router")
        self._metrics = RouterMetrics(container, self._consumer, self.directory)

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def run(
        self, *, max_idle_s: float | None = None, ready: Callable[[], None] | None = None
    ) -> RouterStats:
        """Route until stopped (or idle for `max_idle_s`); commit the last batch first."""
        self.transactions.init()
        if self._use_helper and self._helper is None:
            self._helper = DecodeHelper(self.pipeline.decoder_config(self._pseudonym_key))
        self._state.catch_up()
        self._consumer.subscribe(
            self.pipeline.input_topics, on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        if ready is not None:
            ready()
        log.debug("start-up heap frozen (%d objects)", freeze_startup_heap())
        self._idle_since = time.monotonic()
        try:
            lag_due = 0.0
            while not self._stop.is_set():
                self.heartbeat.beat()
                if time.monotonic() >= lag_due:  # a few local calls, every few seconds
                    self._metrics.sample_lag()
                    lag_due = time.monotonic() + _LAG_SAMPLE_S
                self._state.poll(0)
                self.directory.expire_keys(self._clock())  # also when no batch comes
                messages = self._consume()
                if self._rewind_needed:  # partitions were revoked while a batch was in flight
                    self._rewind_needed = False
                    self._rewind()
                    continue
                if not messages:
                    self._finish_in_flight()
                    idle = time.monotonic() - self._idle_since
                    if max_idle_s is not None and idle > max_idle_s and self._drained():
                        break
                    continue
                self._idle_since = time.monotonic()
                self._run_batch(messages)
            self._finish_in_flight()
        finally:
            self.close()
        return self.stats

    def _consume(self) -> list[Message]:
        """The next records; client errors (the broker away) are reported, never routed."""
        messages = []
        at_end = self._at_end
        for message in self._consumer.consume(self._batch_size, self._batch_timeout):
            error = message.error()
            if error is None:
                messages.append(message)
                if at_end:  # read again after its end: not at its end any more
                    at_end.discard((message.topic(), message.partition()))
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add((str(message.topic()), int(message.partition() or 0)))
            else:
                self._client_error(error)
                if error.fatal():
                    raise ContactflowError(f"the router's consumer failed: {error.name()}")
        return messages

    def _drained(self) -> bool:
        """Partitions assigned, and every one read to its (committed) end."""
        return self._assigned and bool(self._partitions) and self._partitions <= self._at_end

    def _client_error(self, error: KafkaError) -> None:
        """A client error (the broker away, mostly): one line per `_OUTAGE_REPORT_S`."""
        if error.code() in OUTAGE_ERRORS:
            self.transactions.renew_before_next = True
        now = time.monotonic()
        if now - self._last_client_error >= OUTAGE_REPORT_S:
            self._last_client_error = now
            log.warning("Kafka client: %s; waiting for the broker", error.name())

    def assignment_problem(self) -> str | None:
        """For /readyz: None once partitions of the raw topics are assigned."""
        return None if self._partitions else "no partition assigned yet"

    def close(self) -> None:
        """Leave the group and stop the clients; a failing step is one line, not a crash
        that hides why the router stopped."""
        self._metrics.detach()
        self._partitions = set()
        self._stop.set()  # a commit still retrying for an absent broker gives up
        self._committer.shutdown(wait=True)  # a commit still running ends first
        for step, call in (
            ("leave the group", self._consumer.close),
            ("close the subject-state reader", self._state.close),
            ("flush the producer", lambda: self.transactions.producer.flush(10)),
        ):
            try:
                with self.calls.guard(step, 30):
                    call()
            except KafkaException as exc:
                log.warning("router closing: could not %s (%s)", step, exc.args[0].name())
        if self._helper is not None:
            self._helper.close()
            self._helper = None

    # -- one batch -----------------------------------------------------------------------

    def _run_batch(self, messages: list[Message]) -> None:
        """Hand a consumed batch to the pipeline: start decoding it, then route and commit
        the oldest batches while more than `_DECODE_AHEAD` full batches are in flight (all
        of them after a short batch: the input is caught up, latency matters more)."""
        now = self._clock()
        batch = _Batch(messages, now)
        request = decode_request(messages)  # type: ignore[arg-type]
        if self._helper is not None:
            batch.pending = self._helper.submit(request, now)
        else:
            batch.decoded = self.pipeline.decoder.decode_batch(request, now)
        self._in_flight.append(batch)
        # A short batch means the input is caught up: finish now rather than wait for more.
        busy = self._helper is not None and len(messages) >= self._batch_size
        ahead = _DECODE_AHEAD if busy else 0
        while len(self._in_flight) > ahead:
            self._complete(self._in_flight.popleft())

    def _finish_in_flight(self) -> None:
        while self._in_flight:
            self._complete(self._in_flight.popleft())
        self._settle()

    def _complete(self, batch: _Batch) -> None:
        """Route one batch and send its transaction; with `overlap_commits`, the commit
        ends in the background while the next batch is routed. An abort drops the batches
        in flight after it too, and they are read again."""
        started = time.perf_counter()
        messages = batch.messages
        offsets = _next_offsets(messages)
        single = offsets[0] if len(offsets) == 1 else None
        attributes = kafka_span_attributes(
            "process", group=self._container.settings.scoped(GROUP_ID), batch=len(messages),
            destination=single.topic if single else None,
            partition=single.partition if single else None,
        )  # fmt: skip
        with self._tracer.start_as_current_span(
            "router batch",
            kind=SpanKind.CONSUMER,
            links=batch_links(messages),
            attributes={**attributes, "contactflow.batch.size": len(messages)},
        ) as span:
            try:
                with self._tracer.start_as_current_span("route events"):
                    outcome = self.pipeline.route(
                        messages,  # type: ignore[arg-type]
                        batch.outcomes(),
                        batch.now,
                    )
            except LedgerWriteFailed:  # the batch before it, committing: it aborts
                if self._settle():  # cannot be: it failed. Never drop a batch unread
                    raise
                return  # this one is read again after it
            span.set_attribute("contactflow.batch.outputs", len(outcome.outputs))
            # The ledger holds this batch now; Kafka's transactions go one at a time, in order.
            if not self._settle():
                return  # the previous batch aborted: this one is read again after it
            with self._tracer.start_as_current_span(
                "commit transaction", kind=SpanKind.PRODUCER,
                attributes=kafka_span_attributes("send", batch=len(outcome.outputs)),
            ):  # fmt: skip
                if self._overlap:
                    began = time.perf_counter()
                    refused = self._send(outcome, began)
                    if refused is None:
                        group = self._consumer.consumer_group_metadata()
                        ending = self._committer.submit(
                            self._end, offsets, group, outcome.ledger_write
                        )
                        self._committing = _Committing(batch, outcome, started, began, ending)
                        return
                else:
                    refused = self._commit(messages, outcome, offsets)
            span.set_attribute("contactflow.batch.committed", refused is None)
        if refused is None:
            self._committed(messages, outcome, started)
            return
        self._failed(batch, refused)

    def _settle(self, *, isolate: bool = True) -> bool:
        """Wait for the transaction committing in the background, if any: True when it
        committed (or none was pending). An abort is handled as in `_failed`; the batches
        routed after it are read again (`isolate=False`: only marked to be)."""
        committing, self._committing = self._committing, None
        if committing is None:
            return True
        refused = self._ended(committing.future.result(), committing.began)
        if refused is None:
            self._committed(committing.batch.messages, committing.outcome, committing.started)
            return True
        if isolate:
            self._failed(committing.batch, refused, later_routed=True)
        else:
            self._aborted(refused)
            self._rewind_needed = True
        return False

    def _failed(self, batch: _Batch, refused: _Refused, *, later_routed: bool = False) -> None:
        """A batch's transaction aborted: isolate the refused record if one is to blame,
        else read the batch again, with the batches in flight after it. `later_routed`:
        a later batch was routed meanwhile, so it is read again even after an isolation."""
        self._aborted(refused)
        if refused.record_error and self._isolate(batch, refused) and not later_routed:
            return
        self._rewind()
        self._in_flight.clear()  # read again from the committed offsets, after this one

    def _aborted(self, refused: _Refused) -> None:
        """A transaction aborted: what it staged is forgotten, and the abort counted. So
        are the caches when ledger rows went unwritten (its own or a later batch's): they
        named subjects and keys the ledger does not hold."""
        self._dedup.discard()
        if self.directory.unwritten:
            self.directory.drop_caches()
        self.stats.aborted += 1
        self._metrics.aborted(refused.error)

    def _committed(self, messages: list[Message], outcome: BatchOutcome, started: float) -> None:
        self._dedup.commit()
        self._ledger_failures = 0
        self.stats.batches += 1
        self.stats.events_in += len(messages)
        self.stats.outputs += len(outcome.outputs)
        self._metrics.record(outcome, time.perf_counter() - started)

    def _isolate(self, batch: _Batch, first: _Refused) -> bool:
        """Find the record whose outputs the broker refuses, dead-letter it, commit the rest.

        The batch is committed in prefixes: a refused prefix is halved until the refused
        record is alone, then that record becomes a dead-letter reference carrying the
        broker's error code, and the rest of the batch goes on the same way. Prefixes keep
        each partition's offsets contiguous. False when an error that is not about one
        record comes up (the broker went away): the batch is then re-read as usual.
        """
        messages, decoded, now = batch.messages, batch.outcomes(), batch.now
        log.warning(
            "batch of %d refused by the broker (%s); isolating the record",
            len(messages),
            first.error,
        )
        self.transactions.renew()
        start, size, transient = 0, (len(messages) + 1) // 2, 0
        while start < len(messages):
            started = time.perf_counter()
            part = messages[start : start + size]
            outcome = self.pipeline.route(part, decoded[start : start + size], now)  # type: ignore[arg-type]
            refused = self._commit(part, outcome)
            if refused is None:
                self._committed(part, outcome, started)
                start += size
                size = len(messages) - start
                continue
            self._aborted(refused)
            self.transactions.renew()
            if not refused.record_error:
                transient += 1
                if transient > _ISOLATION_RETRIES:
                    return False
                continue
            if size > 1:
                size = (size + 1) // 2
                continue
            self._dead_letter_refused(part[0], refused, now, started)
            start += 1
            size = len(messages) - start
        return True

    def _dead_letter_refused(
        self, message: Message, refused: _Refused, now: datetime, started: float
    ) -> None:
        outcome = self.pipeline.refused(message, refused.error, now)  # type: ignore[arg-type]
        again = self._commit([message], outcome)
        if again is not None:
            raise ContactflowError(
                f"the broker refused even the dead-letter reference of {message.topic()} "
                f"partition {message.partition()} offset {message.offset()} ({again.error}); "
                "check the dead-letter topic's configuration"
            )
        self._committed([message], outcome, started)
        log.warning(
            "%s partition %s offset %s dead-lettered: the broker refused its outputs (%s)",
            message.topic(),
            message.partition(),
            message.offset(),
            refused.error,
        )

    def _commit(
        self,
        messages: list[Message],
        outcome: BatchOutcome,
        offsets: list[TopicPartition] | None = None,
    ) -> _Refused | None:
        """Produce the outputs and commit them with the input offsets (`offsets`: the
        batch's next offsets, when known already): None when committed, else why not (the
        transaction is then aborted)."""
        began = time.perf_counter()
        refused = self._send(outcome, began)
        if refused is not None:
            return refused
        offsets = offsets if offsets is not None else _next_offsets(messages)
        group = self._consumer.consumer_group_metadata()
        return self._ended(self._end(offsets, group, outcome.ledger_write), began)

    def _send(self, outcome: BatchOutcome, began: float) -> _Refused | None:
        """Begin a transaction and produce the outputs: None when `_end` may add the input
        offsets and commit, else why not (the transaction is then aborted)."""
        failure = self.transactions.send(outcome.outputs)
        return None if failure is None else self._ended(failure, began)

    def _end(
        self, offsets: list[TopicPartition], group: Any, ledger_write: LedgerWrite | None
    ) -> KafkaException | LedgerWriteFailed | GaveUp | None:
        """Write the batch's ledger rows, then add the input offsets to the open
        transaction and commit it (in the commit thread with `overlap_commits`): the error
        that stopped it, if any, for `_ended` in the routing thread. `group`: the
        consumer's group metadata, read there."""
        if ledger_write is not None:
            try:
                self.directory.write(ledger_write)
            except LedgerWriteFailed as exc:
                return exc
        return self.transactions.commit(offsets, group)

    def _ended(
        self, failure: KafkaException | LedgerWriteFailed | GaveUp | None, began: float
    ) -> _Refused | None:
        """A transaction's end: None when it committed; else it is aborted, and why."""
        if failure is None:
            self._metrics.transaction(time.perf_counter() - began, committed=True)
            return None
        if isinstance(failure, LedgerWriteFailed):
            return self._ledger_write_failed(failure, began)
        if isinstance(failure, GaveUp):  # the producer may be stuck: a new one, not an abort
            log.warning("batch aborted: %s; new transactional producer, re-reading it", failure)
            self.transactions.renew()
            self._metrics.transaction(time.perf_counter() - began, committed=False)
            return _Refused("transaction_given_up", record_error=False)
        named, record_error = self.transactions.refusal(failure.args[0])
        self._metrics.transaction(time.perf_counter() - began, committed=False)
        return _Refused(named.name(), record_error)

    def _ledger_write_failed(self, failure: LedgerWriteFailed, began: float) -> _Refused:
        """The batch's ledger rows were not written (another router wrote the same ones
        first, most likely): its transaction aborts and it is read again, resolved
        against what the ledger holds now. Stops after `_LEDGER_WRITE_TRIES` in a row."""
        self._ledger_failures += 1
        if self._ledger_failures >= _LEDGER_WRITE_TRIES:
            raise ContactflowError(
                f"{failure}; {self._ledger_failures} batches in a row: the router stops"
            ) from None
        log.warning("batch aborted: %s; re-reading it", failure)
        self.transactions.abort(None)
        self._metrics.transaction(time.perf_counter() - began, committed=False)
        return _Refused("ledger_write_failed", record_error=False)

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset."""
        assignment = self._consumer.assignment()
        committed: list[TopicPartition] = []

        def read_committed() -> None:
            committed[:] = self._consumer.committed(assignment, timeout=30)

        self.calls.until_done("committed offsets", 30, read_committed)
        self._at_end.clear()  # read again from the committed offsets
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else 0
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # -- rebalance -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %d partition(s)", len(partitions))
        self._partitions |= {(tp.topic, tp.partition) for tp in partitions}
        if self._assigned:  # a rebalance after an outage: start the next commit afresh
            self.transactions.renew_before_next = True
        self.calls.until_done("seed the dedup window", 120, lambda: self._seed_dedup(partitions))
        self._assigned = True
        self._idle_since = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(isolate=False)  # its offsets commit while the partitions are ours
        if self._in_flight:  # not committed: their partitions' next owner reads them
            self._in_flight.clear()
            self._rewind_needed = True
        for tp in partitions:
            self._dedup.drop_partition((tp.topic, tp.partition))
        self._partitions -= {(tp.topic, tp.partition) for tp in partitions}
        self._at_end -= {(tp.topic, tp.partition) for tp in partitions}

    def _seed_dedup(self, partitions: list[TopicPartition]) -> None:
        seed_dedup_window(self._container, self._consumer, GROUP_ID, self._dedup,
                          self.pipeline.decoder, self._clock, partitions)  # fmt: skip


def router_pipeline(
    container: Container,
    *,
    directory: SubjectDirectory,
    subject_status: Callable[[str], SubjectStatus],
    dedup: DedupWindow,
) -> RouterPipeline:
    """The pipeline of a router run from `container`: its catalogs, the policy file, the
    output topics' limits as the broker reports them, and the router's tracer."""
    return RouterPipeline(
        topics=container.topics,
        schemas=container.schemas,
        policy=load_policy(container),
        directory=directory,
        subject_status=subject_status,
        dedup=dedup,
        limits=_output_limits(container),
        max_event_bytes=container.settings.router_max_event_bytes,
        tracer=container.telemetry.tracer("contactflow.router"),
    )


def _output_limits(container: Container) -> OutputLimits:
    """The record size each output topic takes, from the broker (see `limits`)."""
    topics = container.topics
    outputs = [topics.name(t) for t in OUTPUT_TOPICS]
    declared = {
        topics.name(t): int(topics.spec(t).configs["max.message.bytes"])
        for t in OUTPUT_TOPICS
        if "max.message.bytes" in topics.spec(t).configs
    }
    return read_output_limits(
        container.admin(),
        outputs,
        producer_max_bytes=PRODUCER_MAX_BYTES,
        declared=declared,
        timeout_s=30,
    )


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        highest[key] = max(highest.get(key, -1), message.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]
