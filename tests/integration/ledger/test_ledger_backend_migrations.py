"""Migrations on every backend: empty database to head, schema equal to the ORM models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from streams.ledger import create_ledger_engine, current_revision, downgrade, head_revision, upgrade
from streams.ledger.models import Base

pytestmark = pytest.mark.integration

LEDGER_TABLES = {"subjects", "subject_identifiers", "subject_aliases", "subject_keys", "audit_log"}


def test_upgrade_from_empty_to_head_matches_the_models(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        assert inspect(engine).get_table_names() == []
        upgrade(ledger_url)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_reverses_it(ledger_url: str) -> None:
    upgrade(ledger_url)
    upgrade(ledger_url)
    downgrade(ledger_url, "base")
    engine = create_ledger_engine(ledger_url)
    try:
        assert LEDGER_TABLES.isdisjoint(inspect(engine).get_table_names())
        upgrade(ledger_url)
        assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES
    finally:
        engine.dispose()
