"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import create_ledger_engine, session_factory, upgrade
from streams.settings import ENV_PREFIX, TEST_ENV_PREFIX


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's CONTACTFLOW_* variables or writes their data dir."""

    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX) and not key.upper().startswith(TEST_ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def engine(ledger_url: str) -> Iterator[Engine]:
    """A ledger migrated to head at `ledger_url` (each suite says which backends)."""
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


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


def _skipped(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """In CI a skipped test is a failure: say so before pytest's closing line."""
    if os.environ.get("CI") and _skipped(config):
        terminalreporter.write_line(
            f"CI: {len(_skipped(config))} test(s) skipped; every test must run in CI",
            red=True,
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and exitstatus == 0 and _skipped(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
