"""Router unit fixtures: a migrated SQLite ledger, a directory over it, fixed keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from processors.pseudonym import Pseudonymiser
from schemas.catalog import SchemaCatalog
from streams.ledger import create_ledger_engine, session_factory, upgrade
from streams.router.directory import SubjectDirectory

PSEUDONYM_KEY = b"p" * 32
MASTER_KEY = b"m" * 32


def _engine(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    upgrade(url)
    return create_ledger_engine(url)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """The ledger of the shared `engine` / `sessions` fixtures (tests/conftest.py): SQLite."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(PSEUDONYM_KEY)


@pytest.fixture
def directory(sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser) -> SubjectDirectory:
    return SubjectDirectory(sessions, pseudonymiser, MASTER_KEY)


@pytest.fixture
def ledger_factory(tmp_path: Path) -> Iterator[object]:
    """Fresh, separate ledgers on demand (for comparing two ways of doing the same)."""
    engines: list[Engine] = []

    def make(name: str) -> sessionmaker[Session]:
        engine = _engine(tmp_path / f"{name}.db")
        engines.append(engine)
        return session_factory(engine)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()
