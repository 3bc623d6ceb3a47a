"""`contactflow bench kpi`: can the reporting app keep up with the router?

`run_kpi_bench(say, events=..., apps=...)` starts a throwaway single-node broker of its own
(free loopback ports, as `bench faults` does, so nobody's broker or topics are touched),
creates every declared topic on it, loads `events` events of the bench workload
(`workload`) and:

1. starts `apps` processes of `contactflow run reporting` in the app's one consumer group,
   each with a data directory of its own (its RocksDB store admits one app per directory,
   and the app keeps nothing else there: no ledger, no keys) and a log of its own. Once the
   group is stable with every app in it and every input partition assigned, and has stayed
   so for `READY_HOLD_S` (their empty tables recovered), the apps are held (SIGSTOP). The
   tagged topics are still empty then, so launch, group joins, the rebalance each further
   app's join causes and table recovery are all over before there is a tagged event: with
   the broker's group.initial.rebalance.delay.ms=0 the first app to join would otherwise
   take every partition and be stopped for a rebalance a few seconds into its work;
2. routes the events with one real router, measured exactly as `bench router` measures it
   (`router_runner.run_real_router`: events / (first consumed -> last input committed)),
   while the held apps use no CPU;
3. with the tagged topics full and the router stopped, lets the apps go (SIGCONT) and
   measures them from outside:
   - *processing* runs from the first fact on reporting.facts.v1 (the first tagged event
     extracted) to the last write of the table's changelog (the last fact applied);
   - it is *done* once the group has committed, on every partition of the tagged topics,
     the offset after the last read_committed record (found by reading them, so a
     partition ending on a commit or an abort marker is exact either way), and on every
     partition of reporting.facts.v1 its end offset (not transactional). faust commits on a
     timer (2.8 s), so the last commit comes later than the last write: it is printed, not
     used for the rate;
   - kpi_events_per_s = tagged events / processing time; kpi_vs_router divides it by the
     router's events/s (the router's count is raw events, the app's tagged ones);
   - CPU is the sum of the apps' over the processing window; peak RSS each app's VmHWM,
     read before it is stopped (kpi_rss_mib: the largest);
   - the group's state is polled: time it spent rebalancing after the apps were let go
     is printed (a hold longer than faust's 60 s session timeout would cost one);
4. once the figures stop changing, runs `contactflow kpi verify` over the workload's days
   and prints what it says (it does not fail the bench).

Every app is stopped on the way out, on an error or Ctrl-C too (SIGTERM to the bench is
turned into the same interrupt while it runs). faust reads BROKER_CLIENT_ID from the
environment: each app gets its own, so the group's description says which app holds which
partitions.

The workload's contacts happened in March 2025: under the default 6 h grace period every
event would be late and count in no window. The apps (and verify) get a
CONTACTFLOW_KPI_GRACE_S that covers the oldest event, so every event counts as it would in
production, where events arrive within minutes. `say` gets counts and rates only.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Final

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
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
Where = tuple[str, int]  # topic, partition
SEED: Final = 20251126
PREFIX: Final = "bench-kpi."
APP_TIMEOUT_S: Final = 600.0
READY_TIMEOUT_S: Final = 180.0  # launch -> every app in the group with its partitions
READY_HOLD_S: Final = 2.0  # the group that long unchanged before the apps are held
GROUP_POLL_S: Final = 0.25  # how often the group's state is read while the apps work
SESSION_TIMEOUT_S: Final = 60.0  # faust's broker_session_timeout: a longer hold costs one
PROGRESS_EVERY_S: Final = 2.0
SETTLE_S: Final = 3.0  # no new figure for this long: the publish timer (1 s) has caught up
GRACE_MARGIN: Final = timedelta(days=1)


@dataclass(frozen=True)
class AppProcessRun:
    """One reporting app process over the processing window."""

    number: int  # 1..apps
    pid: int
    partitions: int  # tagged partitions it held when let go
    tagged: int  # tagged events on those partitions
    cpu_s: float  # its CPU over the processing window
    peak_rss_bytes: int


@dataclass(frozen=True)
class AppRun:
    """What the reporting apps did, timed from outside (seconds)."""

    tagged: int  # tagged events they had to read
    facts: int  # facts they wrote on reporting.facts.v1 (and applied)
    startup_s: float  # launch -> every app in the group, every partition assigned
    held_s: float  # held (SIGSTOP) while the router ran
    first_fact_s: float  # let go -> first fact
    processing_s: float  # first fact -> last changelog write
    committed_s: float  # first fact -> everything committed
    rebalancing_s: float  # the group seen rebalancing between let go and done
    rebalancing_in_window_s: float  # ... of which within the processing window
    processes: tuple[AppProcessRun, ...]
    broker_cpu_s: float  # the broker's CPU over the processing window
    machine_busy: float  # share of the machine's CPUs busy (anything) over the window

    @property
    def events_per_s(self) -> float:
        return self.tagged / max(self.processing_s, 1e-9)

    @property
    def cpu_s(self) -> float:
        """The apps' CPU summed over the processing window."""
        return sum(p.cpu_s for p in self.processes)

    @property
    def peak_rss_bytes(self) -> int:
        """The largest app's peak RSS."""
        return max((p.peak_rss_bytes for p in self.processes), default=0)


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
        """One line per system (and per app), the verification, how many apps ran, then
        the summary line (always last)."""
        router, app = self.router, self.app
        count = len(app.processes)
        router_cpu = (
            f", CPU {1e6 * router.cpu_s / self.events:,.0f} µs/event" if router.cpu_s else ""
        )
        app_cpu = f", CPU {1e6 * app.cpu_s / app.tagged:,.0f} µs/event" if app.tagged else ""
        apps = "reporting app" if count == 1 else f"reporting apps ({count}, one group)"
        rss = "peak RSS" if count == 1 else "largest peak RSS"
        cpu_sum = "" if count == 1 else " (sum)"
        return [
            f"router (one instance, transactions on): {router.events_per_s:,.0f} events/s over "
            f"{self.events:,} raw events, peak RSS {router.peak_rss_bytes / 2**20:,.0f} MiB"
            f"{router_cpu}",
            f"{apps}: {app.events_per_s:,.0f} tagged events/s over {app.tagged:,} tagged "
            f"events ({app.facts:,} facts) in {app.processing_s:.2f} s (first fact -> last "
            f"table write; all committed after {app.committed_s:.2f} s), {rss} "
            f"{app.peak_rss_bytes / 2**20:,.0f} MiB{app_cpu}{cpu_sum}",
            *(_process_line(p) for p in app.processes),
            f"start-up {app.startup_s:.1f} s (launch -> every app in the group with its "
            f"partitions), held {app.held_s:.1f} s while the router ran, first fact "
            f"{app.first_fact_s:.2f} s after release; {_rebalancing(app)}",
            _machine_line(app),
            f"grace period set to {self.grace_s:,} s (the workload is of March 2025)",
            self.verify,
            f"reporting apps run: {count} (one consumer group, a data directory each)",
            self.summary_line(),
        ]


def _process_line(process: AppProcessRun) -> str:
    per_event = (
        f" ({1e6 * process.cpu_s / process.tagged:,.0f} µs per tagged event of its partitions)"
        if process.tagged
        else ""
    )
    return (
        f"  app {process.number} (pid {process.pid}): {process.partitions} tagged partitions "
        f"holding {process.tagged:,} tagged events, CPU {process.cpu_s:.2f} s{per_event}, "
        f"peak RSS {process.peak_rss_bytes / 2**20:,.0f} MiB"
    )


def _machine_line(app: AppRun) -> str:
    window = max(app.processing_s, 1e-9)
    return (
        f"machine over the processing window: {os.cpu_count()} CPUs, {app.machine_busy:.0%} "
        f"busy; the apps used {app.cpu_s / window:.2f} CPUs, the broker "
        f"{app.broker_cpu_s / window:.2f}"
    )


def _rebalancing(app: AppRun) -> str:
    if not app.rebalancing_s:
        return "the group was not seen rebalancing after the release"
    return (
        f"the group was seen rebalancing for {app.rebalancing_s:.2f} s after the release, "
        f"{app.rebalancing_in_window_s:.2f} s of it within the processing window"
    )


def run_kpi_bench(
    say: Say, *, events: int, seed: int = SEED, verify: bool = True, apps: int = 1
) -> KpiBenchResult:
    """Throwaway broker, workload, held apps, router, then the apps; see the module doc."""
    if events < 1:
        raise ValueError("the bench needs at least one event")
    if apps < 1:
        raise ValueError("the bench needs at least one reporting app")
    work = Path(tempfile.mkdtemp(prefix="contactflow-bench-kpi-"))
    finished = False
    try:
        with _sigterm_as_interrupt(), _broker(work, say) as broker:
            result = _Bench(broker, work, say).run(events, seed, apps=apps, verify=verify)
        finished = True
        return result
    finally:
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:  # the apps' logs stay for whoever looks into them; the data does not
            shutil.rmtree(work / "broker", ignore_errors=True)
            shutil.rmtree(work / "apps", ignore_errors=True)
            say(f"logs kept in {work}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the bench runs, so the same clean-up as for
    Ctrl-C stops the apps, the router and the broker (a no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        self.broker_pid = broker.pid()
        self.settings = Settings(data_dir=work / "data", bootstrap_servers=broker.bootstrap,
                                 topic_prefix=PREFIX)  # fmt: skip
        self.root = bootstrap(self.settings, telemetry=Telemetry.in_memory("bench-kpi"))

    def run(self, events: int, seed: int, *, apps: int, verify: bool) -> KpiBenchResult:
        workload = self._load(events, seed)
        grace_s = _grace_covering(workload, datetime.now(UTC))
        root = self.root
        inputs = [root.topics.name(raw_topic(channel)) for channel in CHANNEL_CONTRACTS]
        env = self._app_env(grace_s)
        reporting = _ReportingRun(root, self.broker_pid, self.say)
        with _AppFleet(self.work, env, apps, self.say) as fleet:
            reporting.start_and_hold(fleet)
            self.say(f"routing {events:,} events with one router")
            router = run_real_router(root, inputs, events)
            self.say(f"router done: {router.events_per_s:,.0f} events/s")
            app = reporting.measure(fleet)
        self.say(f"reporting apps done: {app.events_per_s:,.0f} tagged events/s")
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
        """The apps' and kpi verify's environment (each app gets its own data directory
        on top of it)."""
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


# -- the reporting apps: processes, held and let go -----------------------------------------


@dataclass
class _App:
    number: int
    process: subprocess.Popen[bytes]
    log: Path
    client_id: str


class _AppFleet:
    """`apps` processes of `contactflow run reporting`, each with its own data directory
    (work/apps/app-<n>) and log (work/reporting-<n>.log); all stopped on exit, however
    the block ends."""

    def __init__(self, work: Path, env: Mapping[str, str], apps: int, say: Say) -> None:
        self._work, self._env, self._count, self._say = work, env, apps, say
        self.apps: list[_App] = []
        self.launched_at = 0.0

    def __enter__(self) -> _AppFleet:
        with ExitStack() as on_error:
            on_error.callback(self.stop)
            self.launched_at = time.monotonic()
            for number in range(1, self._count + 1):
                self.apps.append(self._launch(number))
            on_error.pop_all()
        self._say(f"{self._count} reporting app(s) started (pids "
                  f"{', '.join(str(a.process.pid) for a in self.apps)})")  # fmt: skip
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _launch(self, number: int) -> _App:
        data_dir = self._work / "apps" / f"app-{number}"
        data_dir.mkdir(parents=True)
        client_id = f"{PREFIX}reporting-app-{number}"
        env = {**self._env, "CONTACTFLOW_DATA_DIR": str(data_dir),
               "BROKER_CLIENT_ID": client_id}  # fmt: skip
        log = self._work / f"reporting-{number}.log"
        command = [sys.executable, "-m", "streams.cli.__main__", "run", "reporting"]
        with log.open("wb") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        return _App(number, process, log, client_id)

    def hold(self) -> None:
        """SIGSTOP every app (and any child): no CPU, no heartbeat, until `release`."""
        for app in self.apps:
            _signal_tree(app.process.pid, signal.SIGSTOP)

    def release(self) -> None:
        for app in self.apps:
            _signal_tree(app.process.pid, signal.SIGCONT)

    def cpu_s(self) -> list[float]:
        return [tree_cpu_s(app.process.pid) for app in self.apps]

    def check_alive(self) -> None:
        for app in self.apps:
            if app.process.poll() is not None:
                raise BenchError(
                    f"reporting app {app.number} exited with code {app.process.returncode}; "
                    f"last lines of its log:\n{_tail(app.log)}"
                )

    def logs(self) -> str:
        return "\n".join(f"-- reporting app {a.number}:\n{_tail(a.log)}" for a in self.apps)

    def stop(self) -> None:
        """SIGCONT (a held app acts on nothing else) and SIGTERM to every app at once, then
        SIGKILL whichever is still there after STOP_GRACE_S."""
        running = [app.process for app in self.apps if app.process.poll() is None]
        for process in running:
            _signal_tree(process.pid, signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _signal_tree(pid: int, signum: int) -> None:
    """Send `signum` to a process and its live descendants (Linux /proc)."""
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            os.kill(current, signum)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # gone meanwhile


# -- the reporting apps, timed from outside -------------------------------------------------


@dataclass(frozen=True)
class _Offsets:
    """One poll: the group's committed offsets and the ends of the apps' output topics."""

    committed: dict[Where, int]
    ends: dict[Where, int]

    def written(self, topics: Sequence[str]) -> int:
        return sum(end for (topic, _), end in self.ends.items() if topic in topics)


@dataclass(frozen=True)
class _Group:
    """One description of the group: stable or not, and who holds which partitions."""

    stable: bool
    assignments: dict[str, frozenset[Where]]  # client id -> partitions

    def ready(self, members: int, partitions: set[Where]) -> bool:
        """Stable, with `members` members that between them hold `partitions`."""
        held = set().union(*self.assignments.values()) if self.assignments else set()
        return self.stable and len(self.assignments) == members and partitions <= held


class _Watch:
    """Reads, in one admin round trip each, what the apps have committed and written, and
    how their group stands."""

    def __init__(self, admin: AdminClient, group: str, inputs: list[TopicPartition],
                 outputs: list[TopicPartition]) -> None:  # fmt: skip
        self._admin, self._group = admin, group
        self._request = [ConsumerGroupTopicPartitions(group, inputs)]
        self._ends = {tp: OffsetSpec.latest() for tp in outputs}  # type: ignore[no-untyped-call]

    def poll(self) -> _Offsets:
        groups = self._admin.list_consumer_group_offsets(self._request, request_timeout=10)
        result = next(iter(groups.values())).result()
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in result.topic_partitions}
        futures = self._admin.list_offsets(self._ends, request_timeout=10)
        ends = {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}
        return _Offsets(committed, ends)

    def group(self) -> _Group:
        futures = self._admin.describe_consumer_groups([self._group], request_timeout=10)
        description = futures[self._group].result()
        assignments = {
            member.client_id: frozenset(
                (tp.topic, tp.partition) for tp in member.assignment.topic_partitions
            )
            for member in description.members
        }
        return _Group(description.state == ConsumerGroupState.STABLE, assignments)


@dataclass(frozen=True)
class _Cpu:
    """One sample of CPU seconds: each app's, the broker's, and the whole machine's."""

    apps: tuple[float, ...]
    broker: float
    busy: float  # the machine's CPUs, busy with anything
    total: float  # the machine's CPUs, busy or idle


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, busy + idle) CPU seconds of the whole machine since boot (Linux /proc/stat),
    (0.0, 0.0) where it cannot tell."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = ticks[3] + ticks[4]  # idle, iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


@dataclass
class _Rebalances:
    """Time the group was seen not stable, from the polls (each poll's state is taken to
    hold until the next)."""

    seen_at: float = 0.0
    stable: bool = True
    spans: list[tuple[float, float]] = field(default_factory=list)

    def observe(self, now: float, group: _Group) -> None:
        if self.seen_at and not self.stable:
            self.spans.append((self.seen_at, now))
        self.seen_at, self.stable = now, group.stable

    @property
    def total_s(self) -> float:
        return sum(end - start for start, end in self.spans)

    def within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.spans)


class _ReportingRun:
    """The reporting apps: started and held before the router runs, then let go on the
    full tagged topics and followed until their group has read them all."""

    def __init__(self, root: Container, broker_pid: int | None, say: Say) -> None:
        self.root, self.broker_pid, self.say = root, broker_pid, say
        names = root.topics.name
        self.tagged_topics = [names(CONTACT_ORES), names(CONTACT_COMNEXIO)]
        self.facts_topic = names(REPORTING_FACTS)
        self.written_topics = [self.facts_topic, names(REPORTING_CELLS_CHANGELOG)]
        self.kpi_topic = names(REPORTING_KPI)
        admin = root.admin()
        metadata = admin.list_topics(timeout=30).topics
        facts = [TopicPartition(self.facts_topic, p) for p in metadata[self.facts_topic].partitions]
        inputs = [TopicPartition(t, p) for t in self.tagged_topics for p in metadata[t].partitions]
        outputs = [TopicPartition(t, p) for t in (*self.written_topics, self.kpi_topic)
                   for p in metadata[t].partitions]  # fmt: skip
        self.inputs = {(tp.topic, tp.partition) for tp in (*inputs, *facts)}
        self.watch = _Watch(admin, root.settings.scoped(APP_ID), [*inputs, *facts], outputs)
        self.startup_s = 0.0
        self.held_at = 0.0
        self.assignments: dict[str, frozenset[Where]] = {}  # client id -> partitions
        self.per_partition: dict[Where, int] = {}  # tagged events per tagged partition

    def start_and_hold(self, fleet: _AppFleet) -> None:
        """Wait until every app is in the group and every input partition assigned, and
        the group has stayed so for READY_HOLD_S; then hold the apps."""
        deadline = fleet.launched_at + READY_TIMEOUT_S
        ready_since, next_say = 0.0, time.monotonic() + PROGRESS_EVERY_S
        count = len(fleet.apps)
        while time.monotonic() < deadline:
            fleet.check_alive()
            group, now = self.watch.group(), time.monotonic()
            if not group.ready(count, self.inputs) or group.assignments != self.assignments:
                ready_since, self.assignments = 0.0, group.assignments
            if group.ready(count, self.inputs) and not ready_since:
                ready_since = now
                self.startup_s = now - fleet.launched_at
            if ready_since and now - ready_since >= READY_HOLD_S:
                fleet.hold()
                self.held_at = time.monotonic()
                self.say(f"reporting apps ready {self.startup_s:.1f}s after launch "
                         f"({count} in the group); held while the router runs")  # fmt: skip
                return
            if now >= next_say:
                next_say = now + PROGRESS_EVERY_S
                self.say(f"reporting apps: {len(group.assignments)} of {count} in the group "
                         f"({'stable' if group.stable else 'rebalancing'})")  # fmt: skip
            time.sleep(GROUP_POLL_S)
        raise BenchError(
            f"the reporting apps were not all in their group with every partition assigned "
            f"within {READY_TIMEOUT_S:.0f}s; last lines of their logs:\n{fleet.logs()}"
        )

    def measure(self, fleet: _AppFleet) -> AppRun:
        targets, tagged = self._targets()
        self.say(f"{tagged:,} tagged events on {' and '.join(self.tagged_topics)}")
        held_s = time.monotonic() - self.held_at
        if held_s > SESSION_TIMEOUT_S:
            self.say(f"the apps were held {held_s:.0f}s, longer than their session timeout: "
                     "their group will rebalance")  # fmt: skip
        fleet.release()
        run = self._follow(fleet, targets, tagged, held_s)
        self.say(f"reporting apps: {run.events_per_s:,.0f} tagged events/s")
        return run

    def _targets(self) -> tuple[dict[Where, int], int]:
        """Per tagged partition, the offset after its last read_committed record (what a
        caught-up consumer commits), and how many such records there are."""
        targets: dict[Where, int] = {}
        config = self.root.settings.kafka_client_config()
        for topic in self.tagged_topics:
            for message in read_all(config, topic, timeout=120.0):
                where = (topic, int(message.partition() or 0))
                targets[where] = max(targets.get(where, 0), int(message.offset() or 0) + 1)
                self.per_partition[where] = self.per_partition.get(where, 0) + 1
        count = sum(self.per_partition.values())
        if not count:
            raise BenchError("the router wrote no tagged event: nothing for the apps to read")
        return targets, count

    def _follow(self, fleet: _AppFleet, targets: Mapping[Where, int], tagged: int,
                held_s: float) -> AppRun:  # fmt: skip
        released = time.monotonic()
        deadline = released + APP_TIMEOUT_S
        first = last_change = 0.0
        cpu_first = cpu_last = _Cpu((), 0.0, 0.0, 0.0)
        written, next_say, next_group = 0, released + PROGRESS_EVERY_S, released
        rebalances = _Rebalances()
        while time.monotonic() < deadline:
            cpu, offsets, now = self._cpu(fleet), self.watch.poll(), time.monotonic()
            if now >= next_group:
                next_group = now + GROUP_POLL_S
                rebalances.observe(now, self.watch.group())
            changed = offsets.written(self.written_topics) != written
            if changed:
                written, last_change, cpu_last = offsets.written(self.written_topics), now, cpu
                if not first:
                    first, cpu_first = now, cpu
                    self.say(f"reporting apps processing: first fact {now - released:.2f}s "
                             "after release")  # fmt: skip
            if first and not changed and self._done(offsets, targets):
                rebalances.observe(now, self.watch.group())
                processes = self._processes(fleet, cpu_first, cpu_last)
                facts = offsets.written([self.facts_topic])
                self._settle()
                busy, elapsed = cpu_last.busy - cpu_first.busy, cpu_last.total - cpu_first.total
                return AppRun(
                    tagged, facts, self.startup_s, held_s, first - released,
                    last_change - first, now - first, rebalances.total_s,
                    rebalances.within(first, last_change), processes,
                    cpu_last.broker - cpu_first.broker, busy / max(elapsed, 1e-9),
                )  # fmt: skip
            fleet.check_alive()
            if now >= next_say:
                next_say = now + PROGRESS_EVERY_S
                read = sum(min(offsets.committed.get(w, 0), end) for w, end in targets.items())
                self.say(f"reporting apps: tagged offsets committed {read:,} of "
                         f"{sum(targets.values()):,}, facts written {written:,}")  # fmt: skip
            time.sleep(POLL_S)
        raise BenchError(
            f"the reporting apps did not read every tagged event within {APP_TIMEOUT_S:.0f}s; "
            f"last lines of their logs:\n{fleet.logs()}"
        )

    def _cpu(self, fleet: _AppFleet) -> _Cpu:
        busy, total = _machine_cpu_s()
        broker = tree_cpu_s(self.broker_pid) if self.broker_pid is not None else 0.0
        return _Cpu(tuple(fleet.cpu_s()), broker, busy, total)

    def _processes(self, fleet: _AppFleet, cpu_first: _Cpu,
                   cpu_last: _Cpu) -> tuple[AppProcessRun, ...]:  # fmt: skip
        """Each app's CPU over the window, peak RSS (read now, before it is stopped), and
        the tagged partitions it held when let go."""
        runs = []
        for app, start, end in zip(fleet.apps, cpu_first.apps, cpu_last.apps, strict=True):
            held = [
                w for w in self.assignments.get(app.client_id, ()) if w[0] in self.tagged_topics
            ]
            events = sum(self.per_partition.get(w, 0) for w in held)
            runs.append(AppProcessRun(app.number, app.process.pid, len(held), events,
                                      end - start, peak_rss_bytes(app.process.pid)))  # fmt: skip
        return tuple(runs)

    def _done(self, offsets: _Offsets, targets: Mapping[Where, int]) -> bool:
        """Every tagged record read and every fact applied, as the group's commits say."""
        if any(offsets.committed.get(where, 0) < end for where, end in targets.items()):
            return False
        facts = [(w, end) for w, end in offsets.ends.items() if w[0] == self.facts_topic]
        return all(offsets.committed.get(where, 0) >= end for where, end in facts)

    def _settle(self) -> None:
        """Wait until the publish timers have put out the last figures (for kpi verify)."""
        self.say("waiting for the apps' last figures")
        published, still_since = -1, time.monotonic()
        deadline = still_since + 60.0
        while time.monotonic() < deadline:
            now_published = self.watch.poll().written([self.kpi_topic])
            if now_published != published:
                published, still_since = now_published, time.monotonic()
            elif time.monotonic() - still_since >= SETTLE_S:
                return
            time.sleep(0.25)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
