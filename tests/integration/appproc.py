"""Running `contactflow run privacy` (the faust control-plane app) as a subprocess on a
test's own topics and data directory, and waiting for what it should do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streams.bootstrap import Container


def app_env(container: Container, **extra: str) -> dict[str, str]:
    """The environment that points a CLI or app process at the test's broker and topics."""
    settings = container.settings
    return {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
        "CONTACTFLOW_RETENTION_SWEEP_INTERVAL_S": "3600",
        **extra,
    }


def wait_for(condition: Callable[[], Any], what: str, log: Path, timeout: float = 90.0) -> Any:
    """Poll `condition` until it returns something truthy; fail with the app's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; app log:\n{log.read_text()[-3000:]}")


@contextmanager
def privacy_app(container: Container, log: Path, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`contactflow run privacy` on the test's broker and topics until the block ends."""
    with running_privacy_app(app_env(container, **extra), log) as process:
        yield process


@contextmanager
def running_privacy_app(
    env: Mapping[str, str], log: Path, program: Sequence[str] = ("-m", "streams.cli.__main__")
) -> Iterator[subprocess.Popen[bytes]]:
    """`contactflow run privacy` with `env` over this process's environment, its output
    in `log`, until the block ends; `program`: what Python runs in place of the CLI."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *program, "run", "privacy"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
        try:
            yield process
        finally:
            process.terminate()
            process.wait(30)
