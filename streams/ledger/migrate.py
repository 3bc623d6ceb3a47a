"""Run the ledger's Alembic migrations from code; no alembic.ini is needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from streams.ledger.engine import create_ledger_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic Config for the packaged migrations, bound to `engine` when given.

    The engine travels in `config.attributes`, not in the ini options, so URLs with
    `%` escapes or secrets are never written to, or parsed as, configuration text.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(url: str, revision: str = "head", *, connect_timeout_s: float | None = None) -> None:
    """Migrate the ledger at `url` up to `revision` (creating the SQLite file if needed);
    a server not answering within `connect_timeout_s` raises `LedgerUnreachable`."""
    engine = create_ledger_engine(url, connect_timeout_s=connect_timeout_s)
    try:
        command.upgrade(alembic_config(engine), revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Migrate the ledger at `url` down to `revision` ("base" drops every ledger table)."""
    engine = create_ledger_engine(url)
    try:
        command.downgrade(alembic_config(engine), revision)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database behind `engine` is at, or None if never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
