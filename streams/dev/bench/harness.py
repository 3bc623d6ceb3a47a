"""Running one system under test as a process and measuring it the same way every time.

`run_peer` starts a process, hands it a PeerSpec on stdin and watches its progress from
outside every `POLL_S`. Throughput is `expected / (done - first input consumed)`: "first
consumed" is the instant the process reports (`spec.FirstConsumed`), "done" the first poll
that sees `expected`. Start-up and shutdown are outside the window. Peak RSS is the
process's `VmHWM` (Linux) read just before it is stopped with SIGTERM (SIGKILL after
`STOP_GRACE_S`). CPU is the process tree's (the router's helper included) user and system
time over the same window, sampled at each poll: a figure the machine's noise moves less
than events/s, and one that shows how much work each system does per event.

Progress is counted by a `Progress`: `OutputCounter` sums the high watermarks of fresh,
non-transactional output topics (the peers); `GroupProgress` sums a consumer group's
committed input offsets, which for a transactional consume-transform-produce loop means
"inputs whose outputs are committed" (the router: transaction markers make its output
watermarks overcount). A process that reports no first instant may be measured from the
first poll that sees progress (`require_report=False`), slightly shortening its window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.dev.bench.spec import PeerSpec
from streams.errors import ContactflowError
from streams.settings import Settings
from streams.topics import TopicCatalog, apply_plan, delete_topics, plan

POLL_S: Final = 0.02
STOP_GRACE_S: Final = 20.0


class BenchError(ContactflowError):
    """A system under test failed, hung, or produced the wrong number of outputs."""


@dataclass(frozen=True)
class SystemRun:
    """One measured system: throughput over `events` inputs, its outputs, peak RSS, and
    the CPU seconds its processes spent in the measured window (0.0: not measured)."""

    name: str
    events: int
    events_per_s: float
    outputs: int
    peak_rss_bytes: int
    cpu_s: float = 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_s / self.events if self.events else 0.0

    @property
    def cores(self) -> float:
        """The cores its processes kept busy on average over the measured window."""
        return self.cpu_s * self.events_per_s / self.events if self.events else 0.0


def plain_client_config(settings: Settings) -> dict[str, str]:
    """The shared librdkafka settings as strings (no logger object): fit for a subprocess."""
    return {k: v for k, v in settings.kafka_client_config().items() if isinstance(v, str)}


@dataclass
class BenchTopics:
    """Topics created for one bench run; `delete_all` removes every one of them."""

    admin: AdminClient
    catalogs: list[TopicCatalog] = field(default_factory=list)

    def create(self, catalog: TopicCatalog) -> TopicCatalog:
        apply_plan(self.admin, plan(self.admin, catalog).changes)
        self.catalogs.append(catalog)
        return catalog

    def delete_all(self) -> None:
        for catalog in reversed(self.catalogs):
            delete_topics(self.admin, catalog)
        self.catalogs.clear()


class Progress(Protocol):
    """How far a system under test has got, as a count of events; polled by `run_peer`."""

    def count(self) -> int: ...


def _partitions(admin: AdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    metadata = admin.list_topics(timeout=30).topics
    missing = [t for t in topics if t not in metadata]
    if missing:
        raise BenchError(f"topics do not exist: {', '.join(missing)}")
    return [TopicPartition(t, p) for t in topics for p in metadata[t].partitions]


class OutputCounter:
    """Counts records on fresh non-transactional topics from their high watermarks."""

    def __init__(self, admin: AdminClient, topics: Sequence[str]) -> None:
        self._admin = admin
        self._requests = {
            tp: OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for tp in _partitions(admin, topics)
        }

    def count(self) -> int:
        futures = self._admin.list_offsets(self._requests, request_timeout=10)
        return sum(int(future.result().offset) for future in futures.values())


class GroupProgress:
    """Sums the offsets `group` has committed on fresh input topics (0 where none yet)."""

    def __init__(self, admin: AdminClient, group: str, topics: Sequence[str]) -> None:
        self._admin = admin
        self._request = [ConsumerGroupTopicPartitions(group, _partitions(admin, topics))]

    def count(self) -> int:
        futures = self._admin.list_consumer_group_offsets(self._request, request_timeout=10)
        result = next(iter(futures.values())).result()
        return sum(max(tp.offset, 0) for tp in result.topic_partitions)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc); OSError if it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (Linux), 0.0 if
    /proc cannot tell."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_s(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or no /proc: count what was read
    return total


def peak_rss_bytes(pid: int) -> int:
    """The process's resident-set high-water mark (VmHWM), 0 where /proc is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


@dataclass(frozen=True)
class PeerLaunch:
    """How to start one peer: its name, command line, environment and working directory."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] | None = None


def run_peer(
    launch: PeerLaunch,
    spec: PeerSpec,
    counter: Progress,
    expected: int,
    *,
    exact: bool = True,
    require_report: bool = True,
    timeout_s: float = 600.0,
) -> SystemRun:
    """Run the process until `counter` reaches `expected`; measure; stop it.

    With `exact`, any other final count raises BenchError (a lost or duplicated event);
    without it (a capped run that stops mid-stream) at least `expected` is required.
    """
    launch.workdir.mkdir(parents=True, exist_ok=True)
    log_path = launch.workdir / f"{launch.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(launch.argv),
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=launch.workdir,
            env=dict(launch.env) if launch.env is not None else None,
        )
        try:
            assert process.stdin is not None
            process.stdin.write(spec.to_json().encode())
            process.stdin.close()
            started_at, done_at, cpu_s = _await_progress(
                launch.name, process, counter, expected, timeout_s, log_path, spec.report_path
            )
            rss = peak_rss_bytes(process.pid)
        finally:
            _stop(process)
    first = _first_consumed(spec.report_path, launch.name, None if require_report else started_at)
    outputs = counter.count()
    if outputs < expected or (exact and outputs != expected):
        raise BenchError(f"{launch.name} wrote {outputs} outputs for {expected} input events")
    rate = expected / max(done_at - first, 1e-9)
    return SystemRun(launch.name, expected, rate, outputs, rss, cpu_s)


def _await_progress(
    name: str,
    process: subprocess.Popen[bytes],
    counter: Progress,
    expected: int,
    timeout_s: float,
    log_path: Path,
    report_path: str,
) -> tuple[float, float, float]:
    """(first poll seeing progress, first poll seeing `expected`, as epoch seconds; CPU
    seconds of the process tree from the first poll after its first-consumed report, or
    after progress, to the last)."""
    deadline = time.monotonic() + timeout_s
    started_at = 0.0
    cpu_start: float | None = None
    while time.monotonic() < deadline:
        cpu = tree_cpu_s(process.pid)
        done = counter.count()
        if cpu_start is None and (done or Path(report_path).exists()):
            cpu_start = cpu
        if done and not started_at:
            started_at = time.time()
        if done >= expected:
            return started_at, time.time(), tree_cpu_s(process.pid) - (cpu_start or cpu)
        if process.poll() is not None:
            raise BenchError(
                f"{name} exited with code {process.returncode} before reaching {expected} "
                f"events; last lines of its log:\n{_tail(log_path)}"
            )
        time.sleep(POLL_S)
    raise BenchError(
        f"{name} did not reach {expected} events within {timeout_s:.0f}s "
        f"({counter.count()} so far); last lines of its log:\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _first_consumed(report_path: str, name: str, fallback: float | None) -> float:
    try:
        report: dict[str, Any] = json.loads(Path(report_path).read_text())
    except (OSError, ValueError):
        if fallback is not None:
            return fallback
        raise BenchError(f"{name} never reported its first consumed event") from None
    return float(report["first_consumed_at"])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a peer, minus PYTHONPATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env
