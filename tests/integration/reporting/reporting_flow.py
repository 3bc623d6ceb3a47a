"""Helpers of the reporting app's integration tests: contact events of many people made
from the catalog's examples at chosen times, the router run in process, the reporting app
as a `contactflow run reporting` subprocess, and its figures read back."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appproc import wait_for
from confluent_kafka import Consumer, TopicPartition

from schemas.examples import example_events
from streams.bootstrap import Container
from streams.reporting.app import APP_ID
from streams.router.worker import RouterWorker

_CONTACTFLOW = [sys.executable, "-m", "streams.cli.__main__"]


def example(channel: str, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for e in example_events(channel) if e["kind"] == kind))


def at(event: dict[str, Any], when: datetime, **subject: Any) -> dict[str, Any]:
    """`event` with fresh ids, happening at `when`: every time in it moves by as much."""
    event = copy.deepcopy(event)
    envelope = event["envelope"]
    shift = when - datetime.fromisoformat(envelope["occurred_at"])
    envelope["event_id"] = str(uuid.uuid4())
    envelope["contact_id"] = f"c-{uuid.uuid4().hex[:10]}"
    envelope["occurred_at"] = when.isoformat()
    if subject:
        envelope["subject"] = subject
    event["payload"] = _shifted(event["payload"], shift)
    return event


def _shifted(value: Any, shift: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, shift) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return (datetime.fromisoformat(value) + shift).isoformat()
        except ValueError:
            return value
    return value


def phone(n: int) -> str:
    return f"+32 471 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}"


def send_and_route(container: Container, events: list[tuple[str, dict[str, Any]]]) -> None:
    producer = container.producer()
    for channel, event in events:
        producer.send(channel, event)
    producer.flush()
    RouterWorker(container).run(max_idle_s=1.5)


def app_env(container: Container, **extra: str) -> dict[str, str]:
    settings = container.settings
    return {**os.environ, "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
            "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "CONTACTFLOW_DATA_DIR": str(settings.data_dir), **extra}  # fmt: skip


@contextmanager
def reporting_app(
    container: Container, log: Path, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`contactflow run reporting` on the test's topics until the block ends."""
    env = app_env(container, **extra)
    with log.open("ab") as out:
        command = [*_CONTACTFLOW, "run", "reporting"]
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def run_cli(container: Container, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_CONTACTFLOW, *args], capture_output=True, text=True, timeout=300,
                          env=app_env(container, **extra), check=False)  # fmt: skip


class AppProgress:
    """How far the reporting app's consumer group has committed on its inputs."""

    def __init__(self, container: Container, logicals: tuple[str, ...]) -> None:
        settings = container.settings
        self._topics = [container.topics.name(t) for t in logicals]
        self._consumer = Consumer({**settings.kafka_client_config(),
                                   "group.id": settings.scoped(APP_ID),
                                   "enable.auto.commit": False})  # fmt: skip

    @property
    def partitions(self) -> int:
        return len(self._partitions())

    def _partitions(self) -> list[TopicPartition]:
        out = []
        for topic in self._topics:
            metadata = self._consumer.list_topics(topic, timeout=10)
            out += [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        return out

    def committed(self) -> int:
        return sum(max(tp.offset, 0) for tp in self._consumer.committed(self._partitions(), 10))

    def backlog(self) -> int:
        """Offsets not yet committed by the app: records, and transaction markers (each
        partition of a transactional topic ends on one)."""
        ends = sum(self._consumer.get_watermark_offsets(tp, 10)[1] for tp in self._partitions())
        return ends - self.committed()

    def close(self) -> None:
        self._consumer.close()


def wait_until(condition: Any, what: str, log: Path, timeout: float = 120.0) -> Any:
    """Poll `condition` until it is truthy; fail with the app's log tail."""
    return wait_for(condition, what, log, timeout)
