"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.settings import ENV_PREFIX, TEST_ENV_PREFIX


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's CONTACTFLOW_* variables or writes their data dir."""

    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX) and not key.upper().startswith(TEST_ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


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
