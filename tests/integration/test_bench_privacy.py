"""`contactflow bench privacy` on a small population: every request completes, every figure
is measured, the summary line has the promised form and the bench's topics are gone."""

from __future__ import annotations

import math
import re

import pytest

from streams.bootstrap import Container
from streams.dev.bench.privacy_bench import run_privacy_bench

pytestmark = pytest.mark.integration

SUMMARY = re.compile(
    r"erasure_p50_s=\d+\.\d{3} erasure_p99_s=\d+\.\d{3} restriction_effective_p50_s=\d+\.\d{3}"
)


def test_bench_privacy_times_erasure_and_restriction(container: Container) -> None:
    progress: list[str] = []

    result = run_privacy_bench(container, progress.append, requests=3, heavy_events=300,
                               restrictions=2)  # fmt: skip

    assert len(result.answered_s) == len(result.emitted_s) == 3
    assert len(result.restriction_s) == 2
    for value in (*result.answered_s, *result.emitted_s, *result.restriction_s,
                  result.heavy_submit_s):  # fmt: skip
        assert value > 0
        assert not math.isnan(value)
    assert SUMMARY.fullmatch(result.report_lines()[-1])
    assert any("300 events" in line for line in result.report_lines())
    leftovers = [
        name for name in container.admin().list_topics(timeout=30).topics
        if name.startswith(f"{container.settings.topic_prefix}bench-privacy-")
    ]  # fmt: skip
    assert leftovers == []
