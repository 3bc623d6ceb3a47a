"""`contactflow bench kpi`: can the reporting app keep up with the router?

`run_kpi_bench(say, events=...)` starts a throwaway single-node broker of its own (free
loopback ports, as `bench faults` does, so nobody's broker or topics are touched), creates
every declared topic on it, loads `events` events of the bench workload (`workload`) and:

1. routes them with one real router, measured exactly as `bench router` measures it
   (`router_runner.run_real_router`: events / (first consumed -> last input committed));
2. with the tagged topics full and the router stopped, starts `contactflow run reporting`
   and measures it from outside:
   - *processing* runs from the first fact on reporting.facts.v1 (the first tagged event
     extracted) to the last write of its table's changelog (the last fact applied). Its
     start-up (launch, group join, table recovery) is before that and printed apart;
   - it is *done* once its group has committed, on every partition of the tagged topics,
     the offset after the last read_committed record (found by reading them, so a
     partition ending on a commit or an abort marker is exact either way), and on every
     partition of reporting.facts.v1 its end offset (not transactional). faust commits on a
     timer (2.8 s), so the last commit comes later than the last write: it is printed, not
     used for the rate;
   - kpi_events_per_s = tagged events / processing time; kpi_vs_router divides it by the
     router's events/s (the router's count is raw events, the app's tagged ones);
   - peak RSS is the app's VmHWM, read before it is stopped;
3. once the app's figures stop changing, runs `contactflow kpi verify` over the workload's
   days and prints what it says (it does not fail the bench).

The workload's contacts happened in March 2025: under the default 6 h grace period every
event would be late and count in no window. The app (and verify) get a
CONTACTFLOW_KPI_GRACE_S that covers the oldest event, so every event counts as it would in
production, where events arrive within minutes. `say` gets counts and rates only.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processors.kpi import BRUSSELS
from schemas.catalog import CHANNEL_CONTRACTS
from schemas.topic_names import (
    CONTACT_COMNEXIO,
    CONTACT_ORES,
    REPORTING_CELLS_CHANGELOG,
    REPORTING_FACTS,
    REPORTING_KPI,
)
from streams.bootstrap import Container, bootstrap
from streams.dev.bench.harness import (
    POLL_S,
    STOP_GRACE_S,
    BenchError,
    BenchTopics,
    child_env,
    peak_rss_bytes,
    tree_cpu_s,
)
from streams.dev.bench.router_bench import RouterRun
from streams.dev.bench.router_runner import run_real_router
from streams.dev.bench.workload import (
    RawEvent,
    encode_workload,
    generate_workload,
    produce_workload,
)
from streams.kafka.readback import read_all
from streams.ops.broker import Broker
from streams.ops.cluster import free_cluster_ports
from streams.reporting.app import APP_ID
from streams.router.worker import GROUP_ID as ROUTER_GROUP
from streams.sdk.producer import raw_topic
from streams.settings import Settings
from streams.telemetry import Telemetry

Say = Callable[[str], None]
SEED: Final = 20251126
PREFIX: Final = "bench-kpi."
APP_TIMEOUT_S: Final = 600.0
PROGRESS_EVERY_S: Final = 2.0
SETTLE_S: Final = 3.0  # no new figure for this long: the publish timer (1 s) has caught up
GRACE_MARGIN: Final = timedelta(days=1)


@dataclass(frozen=True)
class AppRun:
    """What the reporting app did, timed from outside (seconds)."""

    tagged: int  # tagged events it had to read
    facts: int  # facts it wrote on reporting.facts.v1 (and applied)
    startup_s: float  # launch -> first fact
    processing_s: float  # first fact -> last changelog write
    committed_s: float  # first fact -> everything committed
    cpu_s: float  # the app's CPU over the processing window
    peak_rss_bytes: int

    @property
    def events_per_s(self) -> float:
        return self.tagged / max(self.processing_s, 1e-9)


@dataclass(frozen=True)
class KpiBenchResult:
    events: int
    router: RouterRun
    app: AppRun
    grace_s: int
    verify: str  # what `kpi verify` said, or why it did not run

    @property
    def kpi_vs_router(self) -> float:
        return self.app.events_per_s / self.router.events_per_s

    def summary_line(self) -> str:
        """`kpi_events_per_s=<int> kpi_vs_router=<2 decimals> kpi_rss_mib=<int>`."""
        return (
            f"kpi_events_per_s={self.app.events_per_s:.0f} "
            f"kpi_vs_router={self.kpi_vs_router:.2f} "
            f"kpi_rss_mib={self.app.peak_rss_bytes / 2**20:.0f}"
        )

    def report_lines(self) -> list[str]:
        """One line per system, the verification, then the summary line (always last)."""
        router, app = self.router, self.app
        router_cpu = (
            f", CPU {1e6 * router.cpu_s / self.events:,.0f} µs/event" if router.cpu_s else ""
        )
        app_cpu = f", CPU {1e6 * app.cpu_s / app.tagged:,.0f} µs/event" if app.tagged else ""
        return [
            f"router (one instance, transactions on): {router.events_per_s:,.0f} events/s over "
            f"{self.events:,} raw events, peak RSS {router.peak_rss_bytes / 2**20:,.0f} MiB"
            f"{router_cpu}",
            f"reporting app: {app.events_per_s:,.0f} tagged events/s over {app.tagged:,} "
            f"tagged events ({app.facts:,} facts) in {app.processing_s:.2f} s (first fact -> "
            f"last table write; all committed after {app.committed_s:.2f} s), start-up "
            f"{app.startup_s:.1f} s, peak RSS {app.peak_rss_bytes / 2**20:,.0f} MiB{app_cpu}",
            f"grace period set to {self.grace_s:,} s (the workload is of March 2025)",
            self.verify,
            self.summary_line(),
        ]


def run_kpi_bench(
    say: Say, *, events: int, seed: int = SEED, verify: bool = True
) -> KpiBenchResult:
    """Throwaway broker, workload, router, then the reporting app; see the module doc."""
    if events < 1:
        raise ValueError("the bench needs at least one event")
    work = Path(tempfile.mkdtemp(prefix="contactflow-bench-kpi-"))
    finished = False
    try:
        with _broker(work, say) as broker:
            result = _Bench(broker, work, say).run(events, seed, verify=verify)
        finished = True
        return result
    finally:
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:  # the app's log stays for whoever looks into it; the broker's data does not
            shutil.rmtree(work / "broker", ignore_errors=True)
            say(f"logs kept in {work}")


@contextmanager
def _broker(work: Path, say: Say) -> Iterator[Broker]:
    port, controller = free_cluster_ports(1)
    broker = Broker(Settings(data_dir=work / "broker", broker_port=port,
                             controller_port=controller, broker_nodes=1))  # fmt: skip
    say(f"starting a throwaway broker on {broker.bootstrap}")
    try:
        broker.up()
        yield broker
    finally:
        say("stopping the throwaway broker")
        broker.down()


class _Bench:
    def __init__(self, broker: Broker, work: Path, say: Say) -> None:
        self.work, self.say = work, say
        self.settings = Settings(data_dir=work / "data", bootstrap_servers=broker.bootstrap,
                                 topic_prefix=PREFIX)  # fmt: skip
        self.root = bootstrap(self.settings, telemetry=Telemetry.in_memory("bench-kpi"))

    def run(self, events: int, seed: int, *, verify: bool) -> KpiBenchResult:
        workload = self._load(events, seed)
        grace_s = _grace_covering(workload, datetime.now(UTC))
        root = self.root
        inputs = [root.topics.name(raw_topic(channel)) for channel in CHANNEL_CONTRACTS]
        self.say(f"routing {events:,} events with one router")
        router = run_real_router(root, inputs, events)
        self.say(f"router done: {router.events_per_s:,.0f} events/s")
        env = self._app_env(grace_s)
        app = _ReportingRun(root, self.work, env, self.say).measure()
        self.say(f"reporting app done: {app.events_per_s:,.0f} tagged events/s")
        verdict = self._verify(workload, env) if verify else "kpi verify: not run (--no-verify)"
        return KpiBenchResult(events, router, app, grace_s, verdict)

    def _load(self, events: int, seed: int) -> list[RawEvent]:
        self.say(f"generating {events:,} events (seed {seed})")
        workload = generate_workload(events, seed)
        encoded = encode_workload(workload, self.root.schemas)
        BenchTopics(self.root.admin()).create(self.root.topics)
        names = {c: self.root.topics.name(raw_topic(c)) for c in CHANNEL_CONTRACTS}
        self._await_group_coordinators(names["phone"])
        self.say(f"loading {events:,} events into {len(names)} raw topics")
        started = time.monotonic()
        produce_workload(self.settings.kafka_client_config(), names, encoded)
        self.say(f"loaded in {time.monotonic() - started:.1f}s")
        return workload

    def _await_group_coordinators(self, topic: str) -> None:
        """A fresh broker answers "coordinator load in progress" or "not coordinator" until
        it has loaded its offsets topic, and librdkafka's admin ListConsumerGroupOffsets
        can crash the process (SIGSEGV) on "not coordinator" (librdkafka issue 5040). So,
        before any progress poll, fetch the offsets of the router's and the app's groups
        with a consumer (no join, no commit), retried until the broker answers for both."""
        config = self.settings.kafka_client_config()
        deadline = time.monotonic() + 120.0
        for group in (self.settings.scoped(ROUTER_GROUP), self.settings.scoped(APP_ID)):
            consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
            try:
                while True:
                    try:
                        consumer.committed([TopicPartition(topic, 0)], timeout=30)
                        break
                    except KafkaException as error:
                        if time.monotonic() > deadline:
                            raise BenchError(f"the throwaway broker's group coordinator "
                                             f"never answered: {error}") from None  # fmt: skip
                        time.sleep(0.5)
            finally:
                consumer.close()

    def _app_env(self, grace_s: int) -> dict[str, str]:
        env = child_env(
            CONTACTFLOW_BOOTSTRAP_SERVERS=self.settings.bootstrap,
            CONTACTFLOW_TOPIC_PREFIX=PREFIX,
            CONTACTFLOW_DATA_DIR=str(self.settings.data_dir),
            CONTACTFLOW_KPI_GRACE_S=str(grace_s),  # why: see the module docstring
            PYTHONUNBUFFERED="1",
        )
        return {k: v for k, v in env.items() if not k.startswith("CONTACTFLOW_DATABASE")}

    def _verify(self, workload: Sequence[RawEvent], env: Mapping[str, str]) -> str:
        first, last = _local_days(workload)
        self.say(f"running kpi verify from {first} to {last}")
        command = [sys.executable, "-m", "streams.cli.__main__", "kpi", "verify",
                   "--from", str(first), "--to", str(last)]  # fmt: skip
        done = subprocess.run(command, env=dict(env), capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
        said = (done.stdout + done.stderr).strip().splitlines()
        verdict = next((line for line in reversed(said) if "kpi verify:" in line), None)
        if verdict is None:
            return f"kpi verify: exit {done.returncode}, no verdict ({' | '.join(said[-3:])})"
        return f"{verdict.strip()} (exit {done.returncode})"


def _grace_covering(workload: Sequence[RawEvent], now: datetime) -> int:
    """A grace period under which no event of `workload` is late when routed from `now`."""
    oldest = min(datetime.fromisoformat(e.event["envelope"]["occurred_at"]) for e in workload)
    return math.ceil((max(now - oldest, timedelta(0)) + GRACE_MARGIN).total_seconds())


def _local_days(workload: Sequence[RawEvent]) -> tuple[str, str]:
    """The Brussels days to verify: every window of the workload starts in them (its ISO
    week may start up to six days before the first event)."""
    times = [datetime.fromisoformat(e.event["envelope"]["occurred_at"]) for e in workload]
    first = min(times).astimezone(BRUSSELS).date() - timedelta(days=6)
    return str(first), str(max(times).astimezone(BRUSSELS).date())


# -- the reporting app, timed from outside --------------------------------------------------


@dataclass(frozen=True)
class _Offsets:
    """One poll: the group's committed offsets and the ends of the app's output topics."""

    committed: dict[tuple[str, int], int]
    ends: dict[tuple[str, int], int]

    def written(self, topics: Sequence[str]) -> int:
        return sum(end for (topic, _), end in self.ends.items() if topic in topics)


class _Watch:
    """Reads, in one admin round trip each, what the app has committed and written."""

    def __init__(self, admin: AdminClient, group: str, inputs: list[TopicPartition],
                 outputs: list[TopicPartition]) -> None:  # fmt: skip
        self._admin = admin
        self._request = [ConsumerGroupTopicPartitions(group, inputs)]
        self._ends = {tp: OffsetSpec.latest() for tp in outputs}  # type: ignore[no-untyped-call]

    def poll(self) -> _Offsets:
        groups = self._admin.list_consumer_group_offsets(self._request, request_timeout=10)
        result = next(iter(groups.values())).result()
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in result.topic_partitions}
        futures = self._admin.list_offsets(self._ends, request_timeout=10)
        ends = {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}
        return _Offsets(committed, ends)


class _ReportingRun:
    """`contactflow run reporting` on the full tagged topics, until it has read them all."""

    def __init__(self, root: Container, work: Path, env: Mapping[str, str], say: Say) -> None:
        self.root, self.env, self.say = root, env, say
        self.log = work / "reporting.log"
        names = root.topics.name
        self.tagged_topics = [names(CONTACT_ORES), names(CONTACT_COMNEXIO)]
        self.facts_topic = names(REPORTING_FACTS)
        self.written_topics = [self.facts_topic, names(REPORTING_CELLS_CHANGELOG)]
        self.kpi_topic = names(REPORTING_KPI)

    def measure(self) -> AppRun:
        targets, tagged = self._targets()
        self.say(f"{tagged:,} tagged events on {' and '.join(self.tagged_topics)}")
        admin = self.root.admin()
        metadata = admin.list_topics(timeout=30).topics
        facts = [TopicPartition(self.facts_topic, p) for p in metadata[self.facts_topic].partitions]
        inputs = [TopicPartition(t, p) for t in self.tagged_topics for p in metadata[t].partitions]
        outputs = [TopicPartition(t, p) for t in (*self.written_topics, self.kpi_topic)
                   for p in metadata[t].partitions]  # fmt: skip
        watch = _Watch(admin, self.root.settings.scoped(APP_ID), [*inputs, *facts], outputs)
        with self.log.open("wb") as log:
            command = [sys.executable, "-m", "streams.cli.__main__", "run", "reporting"]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(self.env))  # fmt: skip
            try:
                self.say(f"reporting app started (pid {process.pid})")
                run = self._follow(process, watch, targets, tagged)
            finally:
                _stop(process)
        return run

    def _targets(self) -> tuple[dict[tuple[str, int], int], int]:
        """Per tagged partition, the offset after its last read_committed record (what a
        caught-up consumer commits), and how many such records there are."""
        targets: dict[tuple[str, int], int] = {}
        count = 0
        config = self.root.settings.kafka_client_config()
        for topic in self.tagged_topics:
            for message in read_all(config, topic, timeout=120.0):
                where = (topic, int(message.partition() or 0))
                targets[where] = max(targets.get(where, 0), int(message.offset() or 0) + 1)
                count += 1
        if not count:
            raise BenchError("the router wrote no tagged event: nothing for the app to read")
        return targets, count

    def _follow(self, process: subprocess.Popen[bytes], watch: _Watch,
                targets: Mapping[tuple[str, int], int], tagged: int) -> AppRun:  # fmt: skip
        launched = time.monotonic()
        deadline = launched + APP_TIMEOUT_S
        first = last_change = cpu_first = cpu_last = 0.0
        written, next_say = 0, launched + PROGRESS_EVERY_S
        while time.monotonic() < deadline:
            cpu, offsets, now = tree_cpu_s(process.pid), watch.poll(), time.monotonic()
            changed = offsets.written(self.written_topics) != written
            if changed:
                written, last_change, cpu_last = offsets.written(self.written_topics), now, cpu
                if not first:
                    first, cpu_first = now, cpu
                    self.say(f"reporting app processing: first fact {now - launched:.1f}s "
                             "after launch")  # fmt: skip
            if first and not changed and self._done(offsets, targets):
                rss = peak_rss_bytes(process.pid)
                facts = offsets.written([self.facts_topic])
                self._settle(watch)
                return AppRun(tagged, facts, first - launched, last_change - first,
                              now - first, cpu_last - cpu_first, rss)  # fmt: skip
            if process.poll() is not None:
                raise BenchError(f"the reporting app exited with code {process.returncode}; "
                                 f"last lines of its log:\n{_tail(self.log)}")  # fmt: skip
            if now >= next_say:
                next_say = now + PROGRESS_EVERY_S
                read = sum(min(offsets.committed.get(w, 0), end) for w, end in targets.items())
                self.say(f"reporting app: tagged offsets committed {read:,} of "
                         f"{sum(targets.values()):,}, facts written {written:,}")  # fmt: skip
            time.sleep(POLL_S)
        raise BenchError(
            f"the reporting app did not read every tagged event within {APP_TIMEOUT_S:.0f}s; "
            f"last lines of its log:\n{_tail(self.log)}"
        )

    def _done(self, offsets: _Offsets, targets: Mapping[tuple[str, int], int]) -> bool:
        """Every tagged record read and every fact applied, as the group's commits say."""
        if any(offsets.committed.get(where, 0) < end for where, end in targets.items()):
            return False
        facts = [(w, end) for w, end in offsets.ends.items() if w[0] == self.facts_topic]
        return all(offsets.committed.get(where, 0) >= end for where, end in facts)

    def _settle(self, watch: _Watch) -> None:
        """Wait until the publish timer has put out the last figures (for kpi verify)."""
        self.say("waiting for the app's last figures")
        published, still_since = -1, time.monotonic()
        deadline = still_since + 60.0
        while time.monotonic() < deadline:
            now_published = watch.poll().written([self.kpi_topic])
            if now_published != published:
                published, still_since = now_published, time.monotonic()
            elif time.monotonic() - still_since >= SETTLE_S:
                return
            time.sleep(0.25)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
