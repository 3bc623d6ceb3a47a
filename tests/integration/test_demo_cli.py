"""The README's main job, as a user runs it: again on the same broker, and with --reset.

A second run used to die on the first run's tombstones. `--reset` starts from empty data,
so its figures are those of a first run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
FIGURES = re.compile(r"retention report at \S+: held \d+, expired \d+|sent \d+, landed \d+")


def _demo(env: dict[str, str], *args: str) -> str:
    script = Path(sys.executable).parent / "contactflow"
    result = subprocess.run(
        [str(script) if script.exists() else "contactflow", "demo", *args], env=env,
        capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-4000:]
    assert "Traceback" not in said
    return " ".join(said.split())


def test_demo_runs_again_and_from_empty_data(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")},
        "CONTACTFLOW_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": f"demo{uuid.uuid4().hex[:8]}.",
        "CONTACTFLOW_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    first = _demo(env)
    again = _demo(env)
    reset = _demo(env, "--reset")

    assert "Erasure of the demo caller: verified" in first
    assert "Erasure of the demo caller: verified" in again
    assert "reset: declared topics deleted" in reset
    for said in (first, again, reset):
        assert "Today's KPIs (anonymous)" in said
        assert re.search(r"phone \S+ offered \d+ SL \d+%", said), "a phone row with figures"
    assert (tmp_path / "data" / "kpi-report.html").stat().st_size > 100_000
    assert FIGURES.findall(reset) == FIGURES.findall(first), "reset: a first run's figures"
    assert FIGURES.findall(again) != FIGURES.findall(first), "the second run adds to the first"
