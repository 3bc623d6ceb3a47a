"""`contactflow bench faults`: the router and the privacy app on a three-node cluster under
a steady stream, while faults are injected; every output read back and counted.

The bench builds a throwaway cluster of its own (`broker up --nodes 3` on free loopback
ports, the production topic profile: replication 3, `min.insync.replicas=2`), so it never
kills the nodes of a broker someone uses. Faults, in order:

- the router SIGKILLed and restarted (`--kills` times);
- a node SIGKILLed and restarted: the leader of a raw partition, then the leader of a
  tagged output partition;
- two nodes of three SIGKILLed: an acks=all producer must not be acknowledged (the
  producer keeps the event, which is sent again once the nodes are back);
- the whole cluster stopped and started;
- poison records: an event too large to route or dead-letter (a `too_large` reference),
  bytes that are not an event, and an unreadable key and value on the compacted subject
  state, read by a router restarted after them.

Recovery of one fault: from the moment the fault ends (process or node back) until the
router has committed every raw record that existed then. A privacy request is sent after
each fault; each must be taken in by the privacy app. Last line:
`faults=<n> lost=<n> duplicated=<n> stalled_partitions=<n> max_recovery_s=<x>`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas.serde import AvroSerde
from schemas.topic_names import PRIVACY_REQUESTS
from streams.bootstrap import Container, bootstrap
from streams.control.privacy.config import load_privacy_config
from streams.control.privacy.service import PrivacyService
from streams.dev.bench.flow import RawEvent, encode_events, fresh_event_stream, produce
from streams.dev.bench.routers import RouterFleet, RouterProcess
from streams.dev.bench.verdict import (
    GroupProbe,
    RoutedOutputs,
    exactly_once_problems,
    expected_routes,
    read_outputs,
)
from streams.errors import ContactflowError
from streams.keys import load_keys
from streams.ledger import UnknownRequestError, upgrade
from streams.ops.broker import Broker
from streams.ops.cluster import free_cluster_ports
from streams.sdk.producer import raw_topic
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, plan

NODES = 3
PREFIX = "faults."
SUBJECT_STATE = "privacy.subject-state.v1"
RECOVERY_LIMIT_S = 120.0  # a fault not recovered from by then leaves its partitions stalled
POISON_SIZE = 3_000_000  # fits the raw topic zstd-compressed; its dead letter cannot fit
Say = Callable[[str], None]
Headers = list[tuple[str, str | bytes | None]]


class FaultBenchError(ContactflowError):
    """The fault bench could not run (as opposed to a figure that is not zero)."""


@dataclass(frozen=True)
class Fault:
    name: str
    recovery_s: float | None  # None: not recovered within RECOVERY_LIMIT_S


@dataclass
class FaultBenchResult:
    faults: list[Fault]
    events: int
    requests: int
    lost: int
    duplicated: int
    stalled_partitions: int
    problems: list[str] = field(default_factory=list)
    detail: Counter[str] = field(default_factory=Counter)  # "lost events": n, ...

    @property
    def max_recovery_s(self) -> float:
        return max((f.recovery_s or RECOVERY_LIMIT_S for f in self.faults), default=0.0)

    @property
    def unrecovered(self) -> list[str]:
        """Faults the router did not recover from within `RECOVERY_LIMIT_S`."""
        return [f.name for f in self.faults if f.recovery_s is None]

    @property
    def ok(self) -> bool:
        clean = self.lost == self.duplicated == self.stalled_partitions == 0
        return clean and not self.problems and not self.unrecovered

    def report_lines(self) -> list[str]:
        lines = [
            f"  {f.name:<52} recovered in "
            + ("never" if f.recovery_s is None else f"{f.recovery_s:5.1f}s")
            for f in self.faults
        ]
        lines.append(f"{self.events} events acknowledged, {self.requests} privacy requests sent")
        if self.detail:
            lines.append(", ".join(f"{what} {n}" for what, n in sorted(self.detail.items())))
        lines.extend(f"problem: {p}" for p in self.problems)
        lines.extend(f"problem: not recovered within {RECOVERY_LIMIT_S:.0f} s: {name}"
                     for name in self.unrecovered)  # fmt: skip
        lines.append(
            f"faults={len(self.faults)} lost={self.lost} duplicated={self.duplicated} "
            f"stalled_partitions={self.stalled_partitions} "
            f"max_recovery_s={self.max_recovery_s:.1f}"
        )
        return lines


def run_fault_bench(
    say: Say, *, events: int, kills: int, rate: float = 40.0, down_s: float = 10.0
) -> FaultBenchResult:
    """Build the cluster, run the faults under a flow of at least `events` events, count."""
    work = Path(tempfile.mkdtemp(prefix="contactflow-bench-faults-"))
    result: FaultBenchResult | None = None
    try:
        with _cluster(work, say) as cluster:
            result = _Bench(cluster, work, say, rate=rate, down_s=down_s).run(events, kills)
    finally:
        if result is not None and result.ok:
            shutil.rmtree(work, ignore_errors=True)
        else:  # what the workers said stays for whoever looks into it
            for data in work.glob("cluster/**/data"):
                shutil.rmtree(data, ignore_errors=True)
            say(f"worker logs kept in {work}")
    return result


@contextmanager
def _cluster(work: Path, say: Say) -> Iterator[Broker]:
    port, controller = free_cluster_ports(NODES)
    cluster = Broker(
        Settings(data_dir=work / "cluster", broker_port=port, controller_port=controller,
                 broker_heap="384m", broker_nodes=NODES)
    )  # fmt: skip
    say(f"starting a {NODES}-node cluster on {cluster.bootstrap}")
    try:
        cluster.up()
        yield cluster
    finally:
        say("stopping the cluster")
        cluster.down()
        for pid in cluster.node_pids().values():
            if pid is not None:  # a node that would not stop: it is only ours
                os.kill(pid, signal.SIGKILL)


class _PrivacyApp:
    """`contactflow run privacy` as a subprocess, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log
        with log.open("wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.__main__", "run", "privacy"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def output(self) -> str:
        return self._log.read_text(errors="replace")

    def stop(self) -> int:
        self._process.terminate()
        try:
            return self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait(30)


class _Bench:
    def __init__(self, cluster: Broker, work: Path, say: Say, *, rate: float, down_s: float):
        self.cluster = cluster
        self.say = say
        self.rate = rate
        self.down_s = down_s
        settings = Settings(data_dir=work / "data", bootstrap_servers=cluster.bootstrap,
                            topic_prefix=PREFIX, topic_profile="production")  # fmt: skip
        self.container = bootstrap(settings, telemetry=Telemetry.in_memory("bench-faults"))
        admin = self.container.admin()
        apply_plan(admin, plan(admin, self.container.topics).changes)
        upgrade(settings.resolved_database_url())
        keys = logging.getLogger("streams.keys")
        level = keys.level
        keys.setLevel(logging.ERROR)  # throwaway development keys: no warning about them
        try:
            load_keys(settings)
        finally:
            keys.setLevel(level)
        self.work = work
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.held_back: list[RawEvent] = []  # refused with two nodes down, sent again later
        self.poison: Counter[tuple[str, int, int]] = Counter()  # positions to dead-letter
        self.problems_later: list[str] = []
        self.started = time.monotonic()

    # -- the run ---------------------------------------------------------------------------

    def run(self, events: int, kills: int) -> FaultBenchResult:
        with ExitStack() as stack:
            fleet = RouterFleet(self.container, self.work / "routers")
            stack.callback(fleet.close)
            self.probe = GroupProbe(self.container)
            stack.callback(lambda: self.probe.close())
            config = load_privacy_config(self.container)
            privacy = PrivacyService.from_container(self.container, config, actor="bench-faults")
            stack.callback(privacy.close)
            router = fleet.router("faults-1").start()
            router.wait_ready(120)
            app = _PrivacyApp(fleet.process_env(), self.work / "privacy-app.log")
            stack.callback(app.stop)
            self.router, self.privacy = router, privacy
            self._request()
            self.say(f"router and privacy app running; flow at {self.rate:.0f} events/s")
            flow = fleet.start_flow(fresh_event_stream(), self.rate)
            self._inject(kills)
            while flow.sent < events:
                self._check_alive(app)
                time.sleep(0.5)
            acknowledged = flow.finish()
            self.say(f"flow stopped: {len(acknowledged)} events acknowledged; catching up")
            if self.held_back:
                produce(self.container, encode_events(self.container, self.held_back))
            stalled = self._stalled_after_catch_up()
            missing = self._requests_not_taken_in(app)
            problems = self._worker_problems(router, app)
            router_code = router.stop(timeout=60)
            if router_code != 0:
                problems.append(f"the router stopped with exit code {router_code}")
            app.stop()
        self.say("reading every output back (read_committed)")
        routed = read_outputs(self.container)
        everything = [*acknowledged, *self.held_back]
        detail, more = _count(expected_routes(self.container, everything), routed, self.poison)
        detail["privacy requests lost"] = missing
        return FaultBenchResult(
            self.faults, len(everything), len(self.requests),
            _total(detail, "lost") + missing, _total(detail, "duplicated"), stalled,
            problems + more, +detail,
        )  # fmt: skip

    def _inject(self, kills: int) -> None:
        for number in range(1, kills + 1):
            self._router_kill(f"router SIGKILL {number}/{kills}")
        raw_leader = self._leader(raw_topic("phone"))
        self._node_kill(raw_leader, "leader of contact.raw.phone.v1[0]")
        tagged_leader = self._leader("contact.ores.v1")
        if tagged_leader == raw_leader:  # then any other node: the faults differ
            tagged_leader = next(n for n in self.cluster.node_ids() if n != raw_leader)
        self._node_kill(tagged_leader, "leader of contact.ores.v1[0]")
        self._two_nodes_down()
        self._whole_cluster()
        self._oversized_event()
        self._not_an_event()
        self._unreadable_subject_state()

    # -- faults ----------------------------------------------------------------------------

    def _router_kill(self, name: str) -> None:
        self._wait_for_progress()
        self.router.kill()
        self.say(f"{name}: the router SIGKILLed, restarted")
        self.router.start()
        self._recovered(name, time.monotonic())

    def _node_kill(self, node: int, role: str) -> None:
        self._wait_for_progress()
        self.cluster.kill_node(node, signal.SIGKILL)
        self.say(f"node {node} ({role}) SIGKILLed for {self.down_s:.0f}s")
        time.sleep(self.down_s)  # wall time on two nodes of three
        self.cluster.start_node(node)
        self._recovered(f"node {node} SIGKILLed ({role})", time.monotonic())

    def _two_nodes_down(self) -> None:
        self._wait_for_progress()
        victims = self.cluster.node_ids()[1:]
        for node in victims:
            self.cluster.kill_node(node, signal.SIGKILL)
        self.say(f"nodes {victims} SIGKILLed: producing must fail")
        probe_event = next(fresh_event_stream(quarantine_every=0))
        refusal = _produce_refused(self.container, probe_event, timeout_s=self.down_s)
        if refusal is None:
            self.problems_later.append("an event was acknowledged with two nodes of three down")
        else:
            self.held_back.append(probe_event)  # the producer keeps it: sent again below
            self.say(f"refused as it should be ({refusal}); the event is kept")
        for node in victims:
            self.cluster.start_node(node)
        self._recovered("two nodes of three SIGKILLed", time.monotonic())

    def _whole_cluster(self) -> None:
        self._wait_for_progress()
        self.say("the whole cluster stopped")
        self.cluster.down()
        time.sleep(self.down_s)
        self.cluster.up()
        self._recovered("the whole cluster stopped and started", time.monotonic())

    def _oversized_event(self) -> None:
        chat = _chat_with_text(POISON_SIZE)
        (record,) = encode_events(self.container, [chat])
        position = _produce_raw(self.container, record.topic, record.key, record.value,
                                [(k, v) for k, v in record.headers])  # fmt: skip
        self.poison[position] += 1
        self.say("poison: an event too large to route or dead-letter")
        self._recovered("poison: a 3 MB event (too_large reference)", time.monotonic())

    def _not_an_event(self) -> None:
        topic = self.container.topics.name(raw_topic("survey"))
        position = _produce_raw(self.container, topic, b"poison", b"\x00 not an event", [])
        self.poison[position] += 1
        self.say("poison: bytes that are not an event")
        self._recovered("poison: bytes that are not an event", time.monotonic())

    def _unreadable_subject_state(self) -> None:
        topic = self.container.topics.name(SUBJECT_STATE)
        _produce_raw(self.container, topic, b"\xff\xfe not utf-8", b"{}", [])
        _produce_raw(self.container, topic, b"bench-unreadable", b"\x00\xff not a state", [])
        self.say("poison: an unreadable key and value on the subject state; router restarted")
        self.router.kill()
        self.router.start()
        self._recovered("poison: unreadable subject state at router start", time.monotonic())

    # -- measuring -------------------------------------------------------------------------

    def _recovered(self, name: str, since: float) -> None:
        """Wait until the router committed every raw record there was at `since`."""
        self._request()
        target = self._offsets(GroupProbe.ends, since + RECOVERY_LIMIT_S)
        recovery: float | None = None
        while time.monotonic() < since + RECOVERY_LIMIT_S:
            committed = self._offsets(GroupProbe.committed, since + RECOVERY_LIMIT_S)
            if (
                committed is not None
                and target is not None
                and all(committed[tp] >= end for tp, end in target.items())
            ):
                recovery = time.monotonic() - since
                break
            time.sleep(0.25)
        self.faults.append(Fault(name, recovery))
        told = "not within the limit" if recovery is None else f"in {recovery:.1f}s"
        self.say(f"{name}: recovered {told}")

    def _offsets(
        self, read: Callable[[GroupProbe], dict[tuple[str, int], int]], deadline: float
    ) -> dict[tuple[str, int], int] | None:
        """`read(probe)`, retried while the cluster cannot answer, with a new probe after
        each failure (one that lost its coordinator may never find it again); None past
        `deadline`."""
        while True:
            try:
                return read(self.probe)
            except KafkaException:
                if time.monotonic() > deadline:
                    return None
                self.probe.close()
                self.probe = GroupProbe(self.container)
                time.sleep(0.5)

    def _wait_for_progress(self) -> None:
        """Let the router commit something new first, so each fault hits a working router."""
        before = self._offsets(GroupProbe.committed, time.monotonic() + 60) or {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = self._offsets(GroupProbe.committed, deadline) or {}
            if sum(now.values()) > sum(before.values()):
                return
            time.sleep(0.25)

    def _stalled_after_catch_up(self) -> int:
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while True:
            ends = self._offsets(GroupProbe.ends, deadline) or {}
            committed = self._offsets(GroupProbe.committed, deadline) or {}
            behind = [tp for tp, end in ends.items() if committed.get(tp, 0) < end]
            if not behind or time.monotonic() > deadline:
                return len(behind) if ends else len(self.probe.partitions)
            time.sleep(0.5)

    def _request(self) -> None:
        """One access request on privacy.requests.v1, as a platform system sends it."""
        request_id = f"dsr-bench-{uuid.uuid4().hex[:12]}"
        value = {
            "request_id": request_id, "request_type": "access",
            "identifiers": [{"kind": "email", "value": f"{request_id}@bench.invalid"}],
            "purpose": None, "received_at": datetime.now(UTC), "verified_by": "bench",
            "submitted_by": "bench-faults", "reason": None,
        }  # fmt: skip
        schemas = self.container.schemas
        encoded = AvroSerde(schemas).serialize(value, schemas.latest("PrivacyRequest"))
        topic = self.container.topics.name(PRIVACY_REQUESTS)
        _produce_raw(self.container, topic, request_id.encode(), encoded, [])
        self.requests.append(request_id)

    def _requests_not_taken_in(self, app: _PrivacyApp) -> int:
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        waiting = list(self.requests)
        while waiting and time.monotonic() < deadline and app.alive:
            waiting = [r for r in waiting if not self._taken_in(r)]
            time.sleep(0.5)
        return len(waiting)

    def _taken_in(self, request_id: str) -> bool:
        try:
            self.privacy.get(request_id)
        except UnknownRequestError:
            return False
        return True

    def _check_alive(self, app: _PrivacyApp) -> None:
        if not app.alive:
            raise FaultBenchError(f"the privacy app exited:\n{app.output()[-3000:]}")
        if not self.router.alive:
            raise FaultBenchError(f"the router exited:\n{self.router.tail()}")

    def _worker_problems(self, router: RouterProcess, app: _PrivacyApp) -> list[str]:
        problems = list(self.problems_later)
        for name, alive, said in (
            ("router", router.alive, router.stdout() + router.stderr()),
            ("privacy app", app.alive, app.output()),
        ):
            if not alive:
                problems.append(f"the {name} is not running at the end")
            if "Traceback" in said:
                problems.append(f"the {name} printed a traceback")
        return problems

    def _leader(self, logical: str) -> int:
        topic = self.container.topics.name(logical)
        metadata = self.container.admin().list_topics(topic, timeout=15)
        return int(metadata.topics[topic].partitions[0].leader)


def _count(
    expected: Any, routed: RoutedOutputs, poison: Counter[tuple[str, int, int]]
) -> tuple[Counter[str], list[str]]:
    """Lost and duplicated outputs by kind ("lost events", "duplicated hold signals", ...:
    events, retention records, hold signals, the poison records' dead letters), and every
    other broken promise in words."""
    detail: Counter[str] = Counter()
    seen = routed.topics_of_event
    detail["lost events"] = len(expected.topic_of_event.keys() - seen.keys())
    detail["duplicated events"] = sum(len(t) - 1 for t in seen.values() if len(t) > 1)
    detail["lost retention records"] = len(expected.recordings - routed.recordings.keys())
    detail["duplicated retention records"] = sum(n - 1 for n in routed.recordings.values() if n > 1)
    signals = Counter(expected.signals)
    detail["lost hold signals"] = sum((signals - routed.signals).values())
    detail["duplicated hold signals"] = sum((routed.signals - signals).values())
    letters = Counter(
        (d["source_topic"], d["source_partition"], d["source_offset"]) for d in routed.dead_letters
    )
    detail["lost dead letters"] = sum((poison - letters).values())
    detail["duplicated dead letters"] = sum(max(letters[at] - 1, 0) for at in poison)
    clean = RoutedOutputs(routed.topics_of_event, routed.recordings, routed.signals, [])
    others = [
        p for p in exactly_once_problems(expected, clean)
        if "misrouted" in p or "unknown event" in p
    ]  # fmt: skip
    unexpected = Counter(d["reason_code"] for d in routed.dead_letters
                         if (d["source_topic"], d["source_partition"], d["source_offset"])
                         not in poison)  # fmt: skip
    if unexpected:
        others.append(f"dead letters for valid input: {dict(unexpected)}")
    return +detail, others


def _total(detail: Counter[str], kind: str) -> int:
    return sum(n for what, n in detail.items() if what.startswith(kind))


def _produce_raw(
    container: Container, topic: str, key: bytes, value: bytes, headers: Headers
) -> tuple[str, int, int]:
    """One record, acks=all and zstd (a large poison record fits compressed); its position."""
    producer = Producer({
        **container.settings.kafka_client_config(), "compression.type": "zstd",
        "message.max.bytes": 16 * 1024 * 1024, "enable.idempotence": True,
    })  # fmt: skip
    landed: list[Message] = []
    failed: list[KafkaError] = []

    def report(error: KafkaError | None, message: Message) -> None:
        (failed.append(error) if error is not None else landed.append(message))

    producer.produce(topic, value, key, headers=headers, on_delivery=report)
    if producer.flush(60) or failed or not landed:
        why = failed[0].name() if failed else "no acknowledgement"
        raise FaultBenchError(f"could not write a record to {topic}: {why}")
    message = landed[0]
    return message.topic() or topic, message.partition() or 0, message.offset() or 0


def _produce_refused(container: Container, event: RawEvent, timeout_s: float) -> str | None:
    """Send one event acks=all; the broker's refusal (its error name), or None if it was
    acknowledged."""
    (record,) = encode_events(container, [event])
    producer = Producer({
        **container.settings.kafka_client_config(), "acks": "all",
        "enable.idempotence": True, "message.timeout.ms": int(timeout_s * 1000),
    })  # fmt: skip
    outcome: list[KafkaError | None] = []
    producer.produce(record.topic, record.value, record.key, headers=list(record.headers),
                     on_delivery=lambda error, _message: outcome.append(error))  # fmt: skip
    producer.flush(timeout_s + 15)
    if outcome and outcome[0] is None:
        return None
    return outcome[0].name() if outcome and outcome[0] is not None else "no acknowledgement"


def _chat_with_text(size: int) -> RawEvent:
    """A valid chat whose transcript is `size` characters of a four-word vocabulary: it
    compresses under the raw topic's limit, and no output of it can fit anywhere."""
    chat = next(e for e in fresh_event_stream(quarantine_every=0) if e.channel == "chat"
                and e.event["kind"] == "transcript_available")  # fmt: skip
    payload = dict(chat.event["payload"])
    messages = [dict(m) for m in payload["messages"]]  # the example's own list stays as it is
    messages[0]["text"] = " ".join(f"mot{i % 4}" for i in range(size // 5 + 1))[:size]
    payload["messages"] = messages
    return RawEvent("chat", {**chat.event, "payload": payload})
