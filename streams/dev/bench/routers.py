"""Routers as real subprocesses, for the crash, scale-out and fault tests and `bench faults`.

They need `contactflow run router` exactly as an operator runs it: a process that can be
SIGKILLed mid-transaction and restarted with the same instance id (its `transactional.id`
fences the zombie). Each incarnation writes stdout and stderr to files;
`RouterFleet.report()` quotes their tails so a failed assertion shows what the routers
said. The events they route come from `streams.dev.bench.flow`, the checks from
`streams.dev.bench.verdict`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from streams.bootstrap import Container
from streams.dev.bench.flow import BackgroundFlow, RawEvent
from streams.errors import ContactflowError
from streams.settings import PROJECT_ROOT

READY_LINE = "router ready"
STOPPED_LINE = re.compile(
    r"router stopped: (?P<events>\d+) event\(s\) in (?P<batches>\d+) batch\(es\), "
    r"(?P<outputs>\d+) output\(s\), (?P<aborted>\d+) aborted batch\(es\)"
)


class RouterFailure(ContactflowError):
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

    def process_env(self, **extra: str) -> dict[str, str]:
        """The environment of a contactflow process on this fleet's broker, topics and data."""
        return {**self._base_env, **extra}

    def start_flow(self, events: Iterable[RawEvent], per_second: float) -> BackgroundFlow:
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
