"""Expected refusals of the CLI, as an operator meets them: one line, a non-zero exit,
never a traceback; and the spellings the README uses are accepted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from appproc import app_env
from pgschema import private_postgres_schema

from streams.bootstrap import Container
from streams.ledger import upgrade

pytestmark = pytest.mark.integration


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "contactflow"
    return subprocess.run(
        [str(script) if script.exists() else "contactflow", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CONTACTFLOW_")},
             "COLUMNS": "200", **env},
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, said
    assert "Traceback" not in said
    assert len(said.splitlines()) == 1, said
    for word in words:
        assert word in said, said


def test_expected_refusals_are_one_line(container: Container) -> None:
    env = app_env(container)
    upgrade(container.settings.resolved_database_url())
    _refused(_run(env, "hold", "release", "h-nosuchhold", "--reason", "done"), "no hold")
    placed = _run(env, "hold", "place", "--contact", "c-1", "--reason", "complaint",
                  "--ref", "CASE-1")  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    hold_id = placed.stdout.split()[2]
    released = _run(env, "hold", "release", hold_id, "--reason", "closed")
    assert released.returncode == 0, released.stderr
    _refused(_run(env, "hold", "release", hold_id, "--reason", "again"), "already released")
    _refused(
        _run(env, "hold", "place", "--recording", "rec-unknown", "--reason", "complaint",
             "--ref", "CASE-2"),
        "no recording rec-unknown", "nothing held",
    )  # fmt: skip


def test_the_readme_spellings_of_request_types_are_accepted(container: Container) -> None:
    env = app_env(container)
    for spelling in ("lift-restriction", "consent-withdrawal", "consent_withdrawal"):
        extra = ["--purpose", "satisfaction_survey"] if "consent" in spelling else []
        result = _run(env, "dsr", "submit", spelling, "--email", "a.person@example.org", *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "identity_unverified" in result.stdout
    unknown = _run(env, "dsr", "submit", "world-peace", "--email", "a@example.org")
    assert unknown.returncode == 2  # a usage error, in click's usage format
    assert "not a request type" in unknown.stderr
    assert "lift-restriction" in unknown.stderr


def test_a_ledger_never_migrated_is_one_line(tmp_path: Path) -> None:
    env = {"CONTACTFLOW_DATA_DIR": str(tmp_path / "fresh")}
    _refused(_run(env, "retention", "report"), "contactflow ledger upgrade")


def test_listings_for_scripts_and_for_narrow_terminals(container: Container) -> None:
    env = app_env(container)
    upgrade(container.settings.resolved_database_url())
    placed = _run(env, "hold", "place", "--subject-of", "+32 471 00 00 00", "--reason",
                  "dispute", "--ref", "CASE-3")  # fmt: skip
    assert placed.returncode == 1  # nobody known with that phone: nothing held
    placed = _run(env, "hold", "place", "--contact", "c-listed-contact-0001", "--reason",
                  "dispute", "--ref", "CASE-3")  # fmt: skip
    hold_id = placed.stdout.split()[2]
    holds = json.loads(_run(env, "hold", "list", "--format", "json").stdout)
    assert [(h["hold_id"], h["target"]) for h in holds] == [(hold_id, "c-listed-contact-0001")]
    narrow = _run({**env, "COLUMNS": "80"}, "hold", "list")
    assert hold_id in narrow.stdout
    assert "c-listed-contact-0001" in narrow.stdout

    topics = json.loads(_run(env, "topics", "list", "--format", "json").stdout)
    raw = next(t for t in topics if t["topic"].endswith("contact.raw.phone.v1"))
    assert raw["retention_ms"] == 259_200_000
    table = _run(env, "topics", "list").stdout
    assert "259200000" not in table
    assert "3 d" in table
    narrow_topics = _run({**env, "COLUMNS": "80"}, "topics", "list").stdout
    assert raw["topic"] in narrow_topics


LEDGER_READERS = (("dsr", "status"), ("retention", "report"), ("hold", "list"),
                  ("ledger", "upgrade"))  # fmt: skip


@pytest.mark.parametrize("command", LEDGER_READERS, ids=" ".join)
def test_an_unreachable_ledger_database_is_one_line_naming_where(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    url = "postgresql+psycopg://u:s3cr3t-pw@127.0.0.1:1/x"
    env = {"CONTACTFLOW_DATA_DIR": str(tmp_path), "CONTACTFLOW_DATABASE_URL": url}
    result = _run(env, *command)
    _refused(result, "127.0.0.1:1", "CONTACTFLOW_DATABASE_URL")
    assert result.returncode == 2
    assert "s3cr3t-pw" not in result.stdout + result.stderr


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that takes TCP connections and never answers (a database that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


@pytest.mark.parametrize("command", LEDGER_READERS, ids=" ".join)
def test_a_ledger_database_that_never_answers_fails_within_the_connect_timeout(
    command: tuple[str, ...], silent_server: int, tmp_path: Path
) -> None:
    env = {"CONTACTFLOW_DATA_DIR": str(tmp_path), "CONTACTFLOW_CONNECT_TIMEOUT_S": "2",
           "CONTACTFLOW_DATABASE_URL":
               f"postgresql+psycopg://u:s3cr3t-pw@127.0.0.1:{silent_server}/x"}  # fmt: skip
    started = time.monotonic()
    result = _run(env, *command)
    elapsed = time.monotonic() - started
    _refused(result, f"127.0.0.1:{silent_server}", "within 2 s")
    assert elapsed < 15, f"{elapsed:.1f} s"
    assert "s3cr3t-pw" not in result.stdout + result.stderr


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from private_postgres_schema()


def test_a_reachable_postgresql_ledger_still_works_with_the_connect_timeout(
    postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url
    env = {"CONTACTFLOW_DATA_DIR": str(tmp_path), "CONTACTFLOW_DATABASE_URL": url,
           "CONTACTFLOW_CONNECT_TIMEOUT_S": "1"}  # fmt: skip
    for command in LEDGER_READERS[::-1]:  # ledger upgrade first
        result = _run(env, *command)
        assert result.returncode == 0, result.stdout + result.stderr


def _submit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dsr submit` with no broker to reach: a refusal must come before any connection."""
    env = {"CONTACTFLOW_DATA_DIR": str(tmp_path), "CONTACTFLOW_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    return _run(env, "dsr", "submit", *args)


@pytest.mark.parametrize(
    ("args", "words"),
    [(["erasure", "--email", "a.person@example.org", "--received-at", "1970-01-01T00:00:00Z"],
      ["received_at", "more than 3 months ago"]),
     (["erasure", "--email", "a.person@example.org", "--received-at", "2999-01-01T00:00:00Z"],
      ["received_at", "in the future"]),
     (["erasure", "--handle", "myspace:someone"], ["social_handle", "unknown platform"]),
     (["objection", "--email", "a.person@example.org", "--purpose", "world_domination"],
      ["purpose", "not a purpose"]),
     (["restriction", "--email", "a.person@example.org", "--reason", "why " * 25_000],
      ["reason", "500"]),
     (["erasure", *[a for i in range(10_000) for a in ("--customer-ref", f"C-{i}")]],
      ["identifiers", "at most 50"])],
    ids=["received-1970", "received-future", "platform", "purpose", "reason", "identifiers"],
)  # fmt: skip
def test_dsr_submit_refuses_bad_values_in_one_line(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    result = _submit(tmp_path, *args)
    _refused(result, *words)
    assert result.returncode == 2
    said = result.stdout + result.stderr
    for secret in ("a.person@example.org", "someone", "myspace", "world_domination", "1970"):
        assert secret not in said
