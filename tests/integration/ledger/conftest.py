"""Ledger fixtures over every backend: SQLite always, PostgreSQL from the environment.

`ledger_url` is parametrised over ["sqlite", "postgresql"]. The PostgreSQL case reads
CONTACTFLOW_TEST_POSTGRES_URL (start a server with `infra/postgres/pg-up.sh DIR PORT`);
unset, it skips locally and fails under CI. Each test gets its own database: an SQLite
file in its tmp dir, or a fresh PostgreSQL schema (dropped afterwards) reached through
the URL's search_path. PostgreSQL sessions use a non-UTC time zone on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgschema import private_postgres_schema
from sqlalchemy import make_url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, unmigrated ledger database private to this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    yield from private_postgres_schema()


@pytest.fixture
def backend(ledger_url: str) -> str:
    return make_url(ledger_url).get_backend_name()
