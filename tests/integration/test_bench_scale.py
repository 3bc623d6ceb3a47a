"""`contactflow bench scale` on a small ledger, SQLite and PostgreSQL: every pass measured,
the loaded people found by the router and by resolution, erasures completed, the last
line in its promised form, and nothing left behind (topics, PostgreSQL databases)."""

from __future__ import annotations

import math
import os
import re

import pytest
from pgschema import POSTGRES_URL_ENV, _running_in_ci
from sqlalchemy import create_engine, text

from streams.bootstrap import Container
from streams.dev.bench.scale import run_scale_bench

pytestmark = pytest.mark.integration

LAST_LINE = re.compile(
    r"scale_subjects=3000 router_vs_empty=\d+\.\d\d router_rss_mib=\d+ "
    r"erasure_p50_s=\d+\.\d{3} resolve_p50_ms=\d+\.\d\d"
)


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        if _running_in_ci():
            pytest.fail(f"CI must run bench scale on PostgreSQL: {POSTGRES_URL_ENV} is unset")
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return url


def _scale_databases(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            query = "SELECT datname FROM pg_database WHERE datname LIKE 'contactflow_scale_%'"
            return [row[0] for row in connection.execute(text(query))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_bench_scale_measures_the_router_and_erasure_at_n(
    container: Container, database: str
) -> None:
    postgres_url = _postgres_url() if database == "postgresql" else None
    progress: list[str] = []

    result = run_scale_bench(container, progress.append, subjects=3000, database=database,
                             postgres_url=postgres_url, events=600, spread=500, lookups=20,
                             requests=2)  # fmt: skip

    assert set(result.empty) == {"cold", "warm"}
    assert set(result.full) == {"cold", "warm", "spread"}
    assert [p.events for p in result.full.values()] == [600, 600, 500]
    for run in (*result.empty.values(), *result.full.values()):
        assert run.events_per_s > 0
        assert run.cpu_s > 0
    assert result.new_subjects_in_spread == 0  # the router found every loaded person
    assert result.load_s > 0
    assert result.ledger_bytes > 0
    assert result.rss_bytes > 0
    assert len(result.resolve_ms) == 20
    assert len(result.erasure_s) == 2
    assert not any(math.isnan(v) for v in (*result.resolve_ms, *result.erasure_s))
    assert any(line.startswith("scale: loaded 3,000/3,000 people") for line in progress)
    assert LAST_LINE.fullmatch(result.report_lines()[-1]), result.report_lines()[-1]
    leftovers = [
        name for name in container.admin().list_topics(timeout=30).topics
        if name.startswith(f"{container.settings.topic_prefix}bench-scale-")
    ]  # fmt: skip
    assert leftovers == []
    if postgres_url is not None:
        assert _scale_databases(postgres_url) == []
