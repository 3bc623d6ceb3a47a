"""`contactflow bench kpi` on a small workload, run as an operator runs it: it starts its
own broker, routes, runs the reporting app (one, or two sharing the partitions in their
consumer group), and its last line has the promised form."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SUMMARY = re.compile(
    r"kpi_events_per_s=(?P<rate>\d+) kpi_vs_router=(?P<ratio>\d+\.\d{2}) kpi_rss_mib=(?P<rss>\d+)"
)


@pytest.mark.parametrize("apps", [1, 2])
def test_bench_kpi_prints_its_figures_on_the_last_line(apps: int) -> None:
    command = [sys.executable, "-m", "streams.cli.__main__", "bench", "kpi", "--events", "3000",
               "--apps", str(apps)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    match = SUMMARY.fullmatch(lines[-1].strip())
    assert match, lines[-5:]
    assert int(match["rate"]) > 0
    assert float(match["ratio"]) > 0
    assert int(match["rss"]) > 0
    assert lines[-2].startswith(f"reporting apps run: {apps} "), lines[-3:]
    assert sum(re.match(r"\s+app \d+ \(pid \d+\): ", line) is not None for line in lines) == apps
    assert any("kpi verify:" in line and " agree with " in line for line in lines), lines[-6:]
    assert not any("logs kept in" in line for line in lines)
