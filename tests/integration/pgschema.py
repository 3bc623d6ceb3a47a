"""A private PostgreSQL schema for one test, from CONTACTFLOW_TEST_POSTGRES_URL.

Start a server with `infra/postgres/pg-up.sh DIR PORT`. Unset, a test that needs it skips
locally and fails under CI (CI must test the ledger on PostgreSQL). The schema is reached
through the URL's search_path and dropped afterwards; sessions use a non-UTC time zone on
purpose.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text

POSTGRES_URL_ENV = "CONTACTFLOW_TEST_POSTGRES_URL"
SESSION_TIME_ZONE = "Europe/Brussels"


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def private_postgres_schema() -> Iterator[str]:
    """Yield the URL of an empty schema private to the caller; drop it afterwards."""
    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        reason = (
            f"{POSTGRES_URL_ENV} is not set: run `infra/postgres/pg-up.sh DIR PORT` and "
            f"export its last line as {POSTGRES_URL_ENV}"
        )
        if _running_in_ci():
            pytest.fail(f"CI must test the ledger on PostgreSQL, but {reason}", pytrace=False)
        pytest.skip(reason)
    yield from _private_schema(base_url)


def _private_schema(base_url: str) -> Iterator[str]:
    schema = f"ledger_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        options = f"-c search_path={schema} -c timezone={SESSION_TIME_ZONE}"
        url = make_url(base_url).update_query_dict({"options": options})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
