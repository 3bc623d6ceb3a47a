"""Ledger unit fixtures: a freshly migrated SQLite ledger in the test's tmp dir."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import create_ledger_engine, session_factory, upgrade


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ledger.db"


@pytest.fixture
def ledger_url(ledger_path: Path) -> str:
    return f"sqlite:///{ledger_path}"


@pytest.fixture
def engine(ledger_url: str) -> Iterator[Engine]:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session


@pytest.fixture
def digest() -> Callable[[str], str]:
    """Fake identifier digests: hashes of labels, never of real identifiers."""

    def make(label: str) -> str:
        return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()

    return make


@pytest.fixture
def pseudonym_for() -> Callable[[str], str]:
    """Stand-in for the keyed pseudonym function of processors/."""

    def make(digest: str) -> str:
        return "s-" + hashlib.sha256(f"test-pseudonym:{digest}".encode()).hexdigest()[:32]

    return make
