"""Commands that need Kafka fail fast, in one line, when it cannot be reached.

Each command runs as an operator runs it, pointed at a port where nothing listens: it must
exit 2 within 10 s, print at most 3 lines, name the address and say what to do, and show
none of librdkafka's retry lines.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
COMMANDS = {
    "topics check": ["topics", "check"],
    "produce": ["produce", "--channel", "phone", str(EXAMPLES / "phone.jsonl")],
    "dsr submit": ["dsr", "submit", "erasure", "--phone", "+32 471 55 66 77",
                   "--verified-by", "letter"],
    "hold place": ["hold", "place", "--recording", "rec-1", "--reason", "complaint",
                   "--ref", "CASE-1"],
    "deadletters summary": ["deadletters", "summary"],
}  # fmt: skip


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens


def _contactflow() -> str:
    script = Path(sys.executable).parent / "contactflow"
    return str(script) if script.exists() else "contactflow"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_command_fails_in_one_line_when_kafka_is_unreachable(name: str, tmp_path: Path) -> None:
    address = _dead_address()
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")},
        "CONTACTFLOW_BOOTSTRAP_SERVERS": address,
        "CONTACTFLOW_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    started = time.monotonic()
    result = subprocess.run(
        [_contactflow(), *COMMANDS[name]], env=env, capture_output=True, text=True,
        timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    said = (result.stdout + result.stderr).strip()
    lines = said.splitlines()
    assert result.returncode == 2, said
    assert elapsed < 10, f"{name} took {elapsed:.1f} s\n{said}"
    assert len(lines) <= 3, said
    assert address in said
    assert "contactflow broker up" in said
    assert "rdkafka" not in said
    assert "Traceback" not in said
