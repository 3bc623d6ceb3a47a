"""Engine composition, UTC column type and migrations on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from streams.ledger import (
    NaiveDatetimeError,
    create_ledger_engine,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from streams.ledger.models import Base, Subject

T0 = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
BRUSSELS_WINTER = timezone(timedelta(hours=1))
LEDGER_TABLES = {"subjects", "subject_identifiers", "subject_aliases", "subject_keys", "audit_log"}


def test_engine_creates_the_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "ledger.db"
    engine = create_ledger_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "secure_delete")
            }
    finally:
        engine.dispose()
    assert path.parent.is_dir()
    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "secure_delete": 1}


def test_savepoints_roll_back_only_their_part(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Subject(subject_pseudonym="a" * 32, created_at=T0, erased_at=None))
        with session.begin_nested() as nested:
            session.add(Subject(subject_pseudonym="b" * 32, created_at=T0, erased_at=None))
            session.flush()
            nested.rollback()
        session.commit()
    with Session(engine) as session:
        assert session.scalars(select(Subject.subject_pseudonym)).all() == ["a" * 32]


def test_datetimes_are_stored_in_utc_and_come_back_aware(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Subject(
                subject_pseudonym="c" * 32,
                created_at=T0.astimezone(BRUSSELS_WINTER),
                erased_at=None,
            )
        )
        session.commit()
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT created_at FROM subjects")).scalar_one()
    assert stored == "2026-01-05 09:30:00.123456"
    with Session(engine) as session:
        created_at = session.scalars(select(Subject.created_at)).one()
    assert created_at == T0
    assert created_at.tzinfo is UTC


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Subject(subject_pseudonym="d" * 32, created_at=T0.replace(tzinfo=None), erased_at=None)
        )
        with pytest.raises(StatementError) as caught:
            session.flush()
    assert isinstance(caught.value.orig, NaiveDatetimeError)
    assert "ddd" not in str(caught.value), "bound parameters must stay out of error messages"


def test_migrations_build_exactly_the_orm_schema(ledger_url: str) -> None:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert current_revision(engine) == head_revision() == "0006"
    finally:
        engine.dispose()


def test_migrations_downgrade_to_base_and_up_again(ledger_url: str) -> None:
    upgrade(ledger_url)
    downgrade(ledger_url, "base")
    engine = create_ledger_engine(ledger_url)
    try:
        assert LEDGER_TABLES.isdisjoint(inspect(engine).get_table_names())
        assert current_revision(engine) is None
        upgrade(ledger_url)
        assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES
    finally:
        engine.dispose()
