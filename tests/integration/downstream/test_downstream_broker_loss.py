"""A broker that goes away under `contactflow downstream serve`, and comes back.

`downstream serve --all` (a real subprocess) answers commands on a broker of the test's
own; the broker is stopped (SIGTERM) or SIGKILLed and started again while commands keep
coming (some queued by an idempotent producer during the outage). Serve must stay up,
answer every command within 60 s of the broker's return (at least once: a repeated answer
is fine, a missing one is not), say what happened in a few lines (never a traceback, never
librdkafka's own retry lines), and still stop cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from downstream_commands import command, publish, read_acks, topic_of

from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.ops.broker import Broker
from streams.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

OUTAGE_S = 20.0
FLOW_PER_SECOND = 10.0
RESUME_WITHIN_S = 60.0
KINDS = [("crm", "erase"), ("recording_store", "erase"), ("survey_tool", "suppress"),
         ("coaching_tool", "restrict"), ("reporting_warehouse", "rectify"),
         ("ores_systems", "stop_purpose")]  # fmt: skip


class Serve:
    """`contactflow downstream serve --all` as an operator runs it, output to files."""

    def __init__(self, container: Container, log_dir: Path) -> None:
        settings = container.settings
        log_dir.mkdir(parents=True, exist_ok=True)
        self._out, self._err = log_dir / "serve.out", log_dir / "serve.err"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")}
        env |= {
            "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
            "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
            "CONTACTFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        script = Path(sys.executable).parent / "contactflow"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = subprocess.Popen(
                [str(script), "downstream", "serve", "--all"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"serve ignored SIGTERM for {timeout:.0f}s\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 30) -> str:
        state = "running" if self.alive else f"exit {self.process.returncode}"
        parts = [f"--- downstream serve ({state})"]
        for name, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            body = "\n".join(text.splitlines()[-lines:])
            parts.append(f"[{name}]\n{body}" if body else f"[{name}] (empty)")
        return "\n".join(parts)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             report: Callable[[], str]) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{report()}")
        time.sleep(0.5)


def some_commands(count: int) -> list[dict[str, Any]]:
    return [command(*KINDS[i % len(KINDS)]) for i in range(count)]


def unanswered(container: Container, sent: list[dict[str, Any]]) -> set[str]:
    try:
        answered = {a["command_id"] for _, a in read_acks(container)}
    except Exception:  # noqa: BLE001 - the broker just came back: ask again
        return {c["command_id"] for c in sent}
    return {c["command_id"] for c in sent} - answered


class CommandFlow:
    """Commands at a steady rate from an idempotent producer that keeps what the broker
    cannot take yet queued, and sends it when the broker is back."""

    def __init__(self, container: Container, per_second: float) -> None:
        self._topics = container.topics
        self._serde = AvroSerde(container.schemas)
        self._contract = container.schemas.latest("DownstreamCommand")
        self._producer = Producer(
            {**container.settings.kafka_client_config(), "acks": "all",
             "enable.idempotence": True, "message.timeout.ms": 300_000}
        )  # fmt: skip
        self._interval = 1.0 / per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.records: list[dict[str, Any]] = []

    @property
    def sent(self) -> int:
        return len(self.records)

    def start(self) -> CommandFlow:
        self._thread.start()
        return self

    def finish(self) -> list[dict[str, Any]]:
        """Stop the flow, wait until the broker has taken every command; returns them."""
        self._stop.set()
        self._thread.join(timeout=30)
        assert self._producer.flush(120) == 0, "the flow's producer kept commands"
        return list(self.records)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            record = command(*KINDS[len(self.records) % len(KINDS)])
            self._producer.produce(self._topics.name(topic_of(record)),
                                   self._serde.serialize(record, self._contract),
                                   record["subject_pseudonym"].encode())  # fmt: skip
            self.records.append(record)
            self._producer.poll(0)


@pytest.fixture
def serve_registry() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.alive:
            serve.process.kill()
            serve.process.wait(timeout=30)


@pytest.mark.parametrize("fault", ["stop", "sigkill"])
def test_serve_rides_out_a_broker_outage(
    fault: str,
    own_broker: Broker,
    own_broker_container: Container,
    tmp_path: Path,
    serve_registry: list[Serve],
) -> None:
    container = own_broker_container
    timeline: list[str] = []
    started = time.monotonic()

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    serve = Serve(container, tmp_path / "serve")
    serve_registry.append(serve)

    def report() -> str:
        return "\n".join([*timeline, serve.tail()])

    before = some_commands(12)
    publish(container, before)
    wait_for(lambda: not unanswered(container, before), 60, "the first answers", report)
    note(f"{len(before)} commands answered")

    flow = CommandFlow(container, FLOW_PER_SECOND).start()
    wait_for(lambda: flow.sent >= 20, 30, "the flow to start", report)
    if fault == "stop":
        own_broker.down()
    else:
        own_broker.kill_node(1, signal.SIGKILL)
    note(f"broker {fault}: {flow.sent} commands sent so far")
    time.sleep(OUTAGE_S)  # the outage itself: wall time serve must ride out
    assert serve.alive, f"serve died while the broker was away\n{report()}"
    own_broker.up()
    back = time.monotonic()
    note("broker back")
    time.sleep(3)  # the flow goes on a little after the return
    flowed = flow.finish()
    after = some_commands(12)
    publish(container, after)
    note(f"{len(flowed)} flowed (some queued during the outage) and {len(after)} new delivered")
    sent = [*before, *flowed, *after]
    remaining = RESUME_WITHIN_S - (time.monotonic() - back)
    wait_for(lambda: not unanswered(container, sent), remaining,
             "every command answered within 60 s of the broker's return", report)  # fmt: skip
    note(f"all answered {time.monotonic() - back:.1f}s after the broker's return")
    assert serve.stop(timeout=60) == 0, report()

    said = serve.stdout() + serve.stderr()
    assert "Traceback" not in said, report()
    assert "rdkafka" not in said, "librdkafka's own lines show only at DEBUG"
    warnings = [line for line in serve.stderr().splitlines() if " WARNING " in line]
    assert len(warnings) <= 5, report()  # about one per 30 s, and one when it is back
    for record in sent:
        assert record["subject_pseudonym"] not in said
    print(report())


def test_serve_started_before_the_broker_waits_for_it(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path,
    serve_registry: list[Serve],
) -> None:  # fmt: skip
    """One line saying it waits (and where, and what to do), then it serves by itself."""
    own_broker.down()
    serve = Serve(own_broker_container, tmp_path / "serve")
    serve_registry.append(serve)
    wait_for(lambda: "waiting for the broker" in serve.stderr(), 30,
             "serve to say it waits for the broker", serve.tail)  # fmt: skip
    time.sleep(3)  # wall time of the wait itself: no retry flood meanwhile
    waiting = serve.stderr().strip().splitlines()
    assert len(waiting) == 1, serve.tail()
    assert own_broker.bootstrap in waiting[0]
    assert "contactflow broker up" in waiting[0]
    assert serve.alive
    own_broker.up()
    sent = some_commands(6)
    publish(own_broker_container, sent)
    wait_for(lambda: not unanswered(own_broker_container, sent), 60,
             "the commands sent once the broker is up to be answered", serve.tail)  # fmt: skip
    assert serve.stop(timeout=60) == 0, serve.tail()
    assert "Traceback" not in serve.stdout() + serve.stderr()
