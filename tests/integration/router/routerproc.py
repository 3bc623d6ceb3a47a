"""Routers as real subprocesses, a paced event flow, and read-back of what they routed.

The crash and scale-out tests need `contactflow run router` exactly as an operator runs it:
a process that can be SIGKILLed mid-transaction and restarted with the same instance id
(its `transactional.id` fences the zombie). Each incarnation writes stdout and stderr to
files; `RouterFleet.report()` quotes their tails so a failed assertion shows what the
routers said. Events are the `schemas.examples` shapes with fresh event ids, contact ids
and recording ids, a few of them for a service the policy does not know (quarantine).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from processors.policy import ContactFacts, attribute_controller, hold_signal_of
from processors.routing import (
    CONTROLLER_TOPICS,
    DEADLETTER_TOPIC,
    QUARANTINE_TOPIC,
    RECORDING_KINDS,
    RECORDINGS_TOPIC,
    RESTRICTED_TOPIC,
    SIGNALS_TOPIC,
)
from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.validation import from_json
from streams.bootstrap import Container
from streams.producer import CHANNELS, SCHEMA_HEADER, raw_topic
from streams.readback import read_all
from streams.router.worker import GROUP_ID, load_policy
from streams.settings import PROJECT_ROOT

TAGGED_TOPICS = (*CONTROLLER_TOPICS.values(), RESTRICTED_TOPIC, QUARANTINE_TOPIC)
READY_LINE = "router ready"
STOPPED_LINE = re.compile(
    r"router stopped: (?P<events>\d+) event\(s\) in (?P<batches>\d+) batch\(es\), "
    r"(?P<outputs>\d+) output\(s\), (?P<aborted>\d+) aborted batch\(es\)"
)
UNKNOWN_SERVICE = "unlisted_service"  # no policy rule names it: quarantined
_RECORDING_ID_FIELD = {kind: spec[1] for kind, spec in RECORDING_KINDS.items()}


class RouterFailure(AssertionError):
    """A router did not do what the test waited for; the message quotes its output."""


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    report: Callable[[], str],
    interval: float = 0.2,
) -> None:
    """Poll `condition` until true; past `timeout` fail with `what` and the routers' output."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RouterFailure(f"timed out after {timeout:.0f}s waiting for {what}\n{report()}")
        time.sleep(interval)


# -- router subprocesses -------------------------------------------------------------------


@dataclass
class RouterProcess:
    """One `contactflow run router` instance; each `start` is a new incarnation (new files)."""

    instance: str
    env: dict[str, str] = field(repr=False)
    log_dir: Path
    incarnations: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _stdout: Path | None = None
    _stderr: Path | None = None

    def start(self, *, max_idle: float | None = None) -> RouterProcess:
        if self.alive:
            raise RuntimeError(f"router {self.instance} is already running")
        self.incarnations += 1
        stem = f"{self.instance}-{self.incarnations}"
        self._stdout = self.log_dir / f"{stem}.out"
        self._stderr = self.log_dir / f"{stem}.err"
        command = [_contactflow(), "run", "router"]
        if max_idle is not None:
            command += ["--max-idle", str(max_idle)]
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self._process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=err
            )
        return self

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stdout(self) -> str:
        return self._stdout.read_text(errors="replace") if self._stdout else ""

    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace") if self._stderr else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this incarnation printed "router ready"; fail at once if it exited."""
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.stdout():
            if not self.alive:
                raise RouterFailure(f"router {self.instance} exited before ready\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RouterFailure(f"router {self.instance} not ready in {timeout:.0f}s\n"
                                    f"{self.tail()}")  # fmt: skip
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no commit, no LeaveGroup, an open transaction left for the fence."""
        if self._process is not None and self.alive:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (commit the batch in flight, leave the group) and wait for the exit code."""
        if self._process is None:
            raise RuntimeError(f"router {self.instance} was never started")
        if self.alive:
            self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RouterFailure(f"router {self.instance} ignored SIGTERM for {timeout:.0f}s\n"
                                f"{self.tail()}") from None  # fmt: skip

    def stats(self) -> dict[str, int]:
        """The counts of this incarnation's closing line (it must have stopped cleanly)."""
        match = STOPPED_LINE.search(" ".join(self.stdout().split()))
        if match is None:
            raise RouterFailure(f"router {self.instance} printed no closing line\n{self.tail()}")
        return {name: int(value) for name, value in match.groupdict().items()}

    def tail(self, lines: int = 25) -> str:
        state = "running" if self.alive else f"exit {self._process and self._process.returncode}"
        parts = [f"--- router {self.instance} #{self.incarnations} ({state})"]
        for name, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            body = "\n".join(text.splitlines()[-lines:])
            parts.append(f"[{name}]\n{body}" if body else f"[{name}] (empty)")
        return "\n".join(parts)


def _contactflow() -> str:
    script = Path(sys.executable).parent / "contactflow"
    return str(script) if script.exists() else "contactflow"


class RouterFleet:
    """Every router and event flow a test started; `close` stops whatever still runs."""

    def __init__(self, container: Container, log_dir: Path) -> None:
        settings = container.settings
        self._container = container
        self._log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._base_env = {
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")},
            "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
            "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
            "CONTACTFLOW_LOG_LEVEL": "INFO",
            # a SIGKILLed router's partitions move after this (45 s by default)
            "CONTACTFLOW_ROUTER_SESSION_TIMEOUT_S": "10",
            "PYTHONUNBUFFERED": "1",
        }
        if settings.database_url is not None:
            self._base_env["CONTACTFLOW_DATABASE_URL"] = settings.database_url.get_secret_value()
        self.routers: dict[str, RouterProcess] = {}
        self._flows: list[BackgroundFlow] = []

    def router(self, instance: str) -> RouterProcess:
        """The router of `instance` (same object, hence same transactional.id, on restart)."""
        if instance not in self.routers:
            env = {**self._base_env, "CONTACTFLOW_ROUTER_INSTANCE": instance}
            self.routers[instance] = RouterProcess(instance, env, self._log_dir)
        return self.routers[instance]

    def start_flow(self, events: list[RawEvent], per_second: float) -> BackgroundFlow:
        """A steady flow of `events` to the raw topics, stopped at teardown at the latest."""
        flow = BackgroundFlow(self._container, events, per_second)
        self._flows.append(flow)
        return flow.start()

    def report(self) -> str:
        return "\n".join(r.tail() for r in self.routers.values()) or "(no router started)"

    def close(self) -> None:
        for flow in self._flows:
            flow.stop()
        for router in self.routers.values():
            if router.alive:  # a failure here must not mask the test's own result
                with contextlib.suppress(RouterFailure):
                    router.stop(timeout=20)  # SIGKILLs it itself past the timeout


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawEvent:
    channel: str
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["envelope"]["event_id"])

    @property
    def recording_id(self) -> str | None:
        id_field = _RECORDING_ID_FIELD.get(self.event["kind"])
        return None if id_field is None else str(self.event["payload"][id_field])


def fresh_events(count: int, *, quarantine_every: int = 40) -> list[RawEvent]:
    """`count` valid events cycling over every example, each with new ids.

    Contact ids are spread (so keys cover the partitions); recording ids are unique, so
    recordings.standard.v1 can be checked one record per event.
    """
    templates = [(c, e) for c in CHANNELS for e in example_events(c)]
    events = []
    for index, (channel, template) in zip(range(count), itertools.cycle(templates), strict=False):
        event = {**template, "envelope": dict(template["envelope"])}
        event["payload"] = dict(template["payload"])
        envelope = event["envelope"]
        envelope["event_id"] = str(uuid.uuid4())
        envelope["contact_id"] = f"{envelope['contact_id']}-{index % 97:02d}"
        if quarantine_every and index % quarantine_every == quarantine_every - 1:
            envelope["service"] = UNKNOWN_SERVICE
        id_field = _RECORDING_ID_FIELD.get(event["kind"])
        if id_field is not None:
            unique = uuid.uuid4().hex
            event["payload"][id_field] = (
                f"<{unique}@mail.example.org>" if id_field == "message_id" else f"rec-{unique}"
            )
        events.append(RawEvent(channel, event))
    return events


@dataclass(frozen=True)
class EncodedEvent:
    event: RawEvent
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode_events(container: Container, events: Iterable[RawEvent]) -> list[EncodedEvent]:
    """Validate and Avro-encode each event for its channel's raw topic (as the SDK does)."""
    serde = AvroSerde(container.schemas)
    encoded = []
    for item in events:
        logical = raw_topic(item.channel)
        contract = container.schemas.latest(container.topics.spec(logical).value_schema)
        record = from_json(contract, item.event)
        encoded.append(
            EncodedEvent(
                item,
                container.topics.name(logical),
                record["envelope"]["contact_id"].encode(),
                serde.serialize(record, contract),
                ((SCHEMA_HEADER, f"{contract.name}.v{contract.version}".encode()),),
            )
        )
    return encoded


@dataclass
class Delivered:
    """Where the broker put each acknowledged record (by send order); refusals by name."""

    positions: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)


class _Sender:
    """An idempotent, acks=all producer that records where each record landed."""

    def __init__(self, container: Container) -> None:
        self.delivered = Delivered()
        self.sent = 0
        self._producer = Producer(
            {
                **container.settings.kafka_client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )

    def send(self, record: EncodedEvent) -> None:
        index = self.sent
        delivered = self.delivered

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                delivered.failures[error.name()] += 1
            else:
                delivered.positions[index] = (
                    message.topic() or "",
                    message.partition() or 0,
                    message.offset() or 0,
                )

        while True:
            try:
                self._producer.produce(
                    record.topic, record.value, record.key,
                    headers=list(record.headers), on_delivery=report,
                )  # fmt: skip
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        self._producer.poll(0)

    def flush(self) -> Delivered:
        remaining = self._producer.flush(60)
        if remaining or self.delivered.failures:
            raise AssertionError(f"producing failed: {remaining} unacknowledged, "
                                 f"refused {dict(self.delivered.failures)}")  # fmt: skip
        return self.delivered


def produce(container: Container, records: Iterable[EncodedEvent]) -> Delivered:
    """Send `records` and wait for every acknowledgement; raise if any is refused."""
    sender = _Sender(container)
    for record in records:
        sender.send(record)
    return sender.flush()


class BackgroundFlow:
    """A steady flow of `events` from a thread until `finish` (or until they run out).

    Each event is encoded just before it is sent; `finish` returns the events the broker
    acknowledged, in send order, and re-raises a failure of the flow.
    """

    def __init__(self, container: Container, events: list[RawEvent], per_second: float):
        self._container = container
        self._events = events
        self._per_second = per_second
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._sender = _Sender(container)
        self._thread = threading.Thread(target=self._run, name="event-flow", daemon=True)

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for index, event in enumerate(self._events):
                if self._stop.is_set():
                    break
                (record,) = encode_events(self._container, [event])
                self._sender.send(record)
                self._stop.wait(max(started + (index + 1) / self._per_second - time.monotonic(), 0))
            self._sender.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by finish()
            self._error = exc

    def start(self) -> BackgroundFlow:
        self._thread.start()
        return self

    @property
    def sent(self) -> int:
        return self._sender.sent

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop sending (teardown): no result, no error."""
        self._stop.set()
        self._thread.join(30)

    def finish(self, timeout: float = 90.0) -> list[RawEvent]:
        """Stop sending; the events the broker acknowledged, or the flow's failure."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the event flow did not stop within {timeout:.0f}s")
        if self._error is not None:
            raise self._error
        return self._events[: self._sender.sent]


# -- the consumer group --------------------------------------------------------------------


class GroupProbe:
    """Committed offsets, end offsets and members of `contactflow-router`, for this test."""

    def __init__(self, container: Container) -> None:
        client = container.settings.kafka_client_config()
        self._prefix = container.settings.topic_prefix
        # Never subscribes, so never joins the group: it only reads the group's offsets.
        # read_uncommitted: offsets of a dead router's pending transaction do not block it.
        self._consumer = Consumer(
            {
                **client,
                "group.id": GROUP_ID,
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self._admin = AdminClient(client)
        ores = container.topics.name(CONTROLLER_TOPICS["ORES"])
        self._output_partitions = [
            TopicPartition(ores, p)
            for p in range(container.topics.spec(CONTROLLER_TOPICS["ORES"]).partitions)
        ]
        self.partitions = [
            TopicPartition(container.topics.name(raw_topic(channel)), partition)
            for channel in CHANNELS
            for partition in range(container.topics.spec(raw_topic(channel)).partitions)
        ]

    def committed(self) -> dict[tuple[str, int], int]:
        """The router group's committed offset per raw partition (0 when none yet)."""
        return {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in self._consumer.committed(self.partitions, timeout=15)
        }

    def ends(self) -> dict[tuple[str, int], int]:
        ends = {}
        for tp in self.partitions:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=15)
            ends[tp.topic, tp.partition] = high
        return ends

    def backlog(self) -> int:
        """Raw records not yet committed by the group: 0 means every one was routed."""
        ends, committed = self.ends(), self.committed()
        return sum(max(end - committed[tp], 0) for tp, end in ends.items())

    def transaction_open(self) -> bool:
        """True while a router transaction holds records on contact.ores.v1 uncommitted.

        The last stable offset (what read_committed readers may see), read after the end
        offset, still lags it.
        """
        ends = self._end_offsets()
        stable = self._end_offsets(IsolationLevel.READ_COMMITTED)
        return any(end > stable[tp] for tp, end in ends.items())

    def _end_offsets(
        self, isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED
    ) -> dict[tuple[str, int], int]:
        futures = self._admin.list_offsets(
            dict.fromkeys(self._output_partitions, OffsetSpec.latest()),
            isolation_level=isolation,
            request_timeout=15,
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def members(self) -> dict[str, frozenset[tuple[str, int]]]:
        """member id -> the raw partitions of this test it owns (members owning none omitted)."""
        future = self._admin.describe_consumer_groups([GROUP_ID], request_timeout=15)[GROUP_ID]
        description = future.result()
        owned = {}
        for member in description.members:
            mine = frozenset(
                (tp.topic, tp.partition)
                for tp in member.assignment.topic_partitions
                if tp.topic.startswith(self._prefix)
            )
            if mine:
                owned[member.member_id] = mine
        return owned

    def close(self) -> None:
        self._consumer.close()


# -- what the routers wrote ----------------------------------------------------------------


@dataclass
class RoutedOutputs:
    """Every committed output record of the router, by what the assertions need."""

    topics_of_event: dict[str, list[str]]  # event id -> logical topic of each copy
    recordings: Counter[str]  # recording id -> records on recordings.standard.v1
    signals: Counter[str]  # event id -> hold signals on retention.signals.v1
    dead_letters: list[dict[str, Any]]

    def duplicated(self) -> dict[str, int]:
        return {e: len(t) for e, t in self.topics_of_event.items() if len(t) > 1}


def read_outputs(container: Container) -> RoutedOutputs:
    client = container.settings.kafka_client_config()
    serde = AvroSerde(container.schemas)
    topics_of_event: dict[str, list[str]] = {}
    for logical in TAGGED_TOPICS:
        for message in read_all(client, container.topics.name(logical), timeout=60):
            event_id = serde.deserialize(message.value())[1]["event_id"]
            topics_of_event.setdefault(event_id, []).append(logical)
    recordings = Counter(
        (m.key() or b"").decode()
        for m in read_all(client, container.topics.name(RECORDINGS_TOPIC), timeout=60)
    )
    signals = Counter(
        serde.deserialize(m.value())[1]["signal_id"]
        for m in read_all(client, container.topics.name(SIGNALS_TOPIC), timeout=60)
    )
    dead = [
        serde.deserialize(m.value())[1]
        for m in read_all(client, container.topics.name(DEADLETTER_TOPIC), timeout=60)
    ]
    return RoutedOutputs(topics_of_event, recordings, signals, dead)


@dataclass(frozen=True)
class Expected:
    topic_of_event: dict[str, str]  # event id -> the logical topic policy sends it to
    recordings: frozenset[str]  # recording ids that must each have one retention record
    signals: frozenset[str]  # event ids that must each signal one legal hold


def expected_routes(container: Container, events: Iterable[RawEvent]) -> Expected:
    """Where each event must land (no subject here is restricted or has objected)."""
    policy = load_policy(container)
    topic_of_event: dict[str, str] = {}
    recordings: set[str] = set()
    signals: set[str] = set()
    for item in events:
        envelope = item.event["envelope"]
        facts = ContactFacts(
            envelope["client"], envelope["service"], envelope.get("purpose", "contact_handling"),
            item.channel, item.event["kind"],
        )  # fmt: skip
        attribution = attribute_controller(policy, facts)
        if attribution is None:
            topic_of_event[item.event_id] = QUARANTINE_TOPIC
            continue
        topic_of_event[item.event_id] = CONTROLLER_TOPICS[attribution.controller]
        period = policy.retention_classes[attribution.retention_class].recording_period_days
        if item.recording_id is not None and period is not None:
            recordings.add(item.recording_id)
        if hold_signal_of(policy, facts) is not None:
            signals.add(item.event_id)
    return Expected(topic_of_event, frozenset(recordings), frozenset(signals))


def exactly_once_problems(expected: Expected, routed: RoutedOutputs) -> list[str]:
    """Each broken promise in words (lost, duplicated, foreign, misrouted); [] when kept."""
    problems = []
    seen = routed.topics_of_event
    lost = sorted(expected.topic_of_event.keys() - seen.keys())
    foreign = sorted(seen.keys() - expected.topic_of_event.keys())
    duplicated = routed.duplicated()
    misrouted = {
        e: (expected.topic_of_event[e], t)
        for e, t in seen.items()
        if e in expected.topic_of_event and set(t) != {expected.topic_of_event[e]}
    }
    if lost:
        problems.append(f"{len(lost)} event(s) lost, e.g. {lost[:3]}")
    if duplicated:
        problems.append(
            f"{len(duplicated)} event(s) duplicated, e.g. {list(duplicated.items())[:3]}"
        )
    if foreign:
        problems.append(f"{len(foreign)} unknown event id(s) on the outputs, e.g. {foreign[:3]}")
    if misrouted:
        problems.append(f"{len(misrouted)} misrouted (expected, got), e.g. "
                        f"{list(misrouted.items())[:3]}")  # fmt: skip
    recordings = routed.recordings
    missing = sorted(expected.recordings - recordings.keys())
    extra = {r: n for r, n in recordings.items() if r not in expected.recordings or n != 1}
    if missing:
        problems.append(
            f"{len(missing)} recording(s) without a retention record, e.g. {missing[:3]}"
        )
    if extra:
        problems.append(f"{len(extra)} recording id(s) not exactly once, e.g. "
                        f"{list(extra.items())[:3]}")  # fmt: skip
    if routed.signals != Counter(expected.signals):
        wrong = (routed.signals - Counter(expected.signals)) + (
            Counter(expected.signals) - routed.signals
        )
        problems.append(f"{len(wrong)} event(s) without exactly one hold signal, e.g. "
                        f"{list(wrong)[:3]}")  # fmt: skip
    if routed.dead_letters:
        codes = Counter(d["reason_code"] for d in routed.dead_letters)
        problems.append(f"dead letters for valid input: {dict(codes)}")
    return problems
