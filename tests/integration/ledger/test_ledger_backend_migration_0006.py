"""Migration 0006 on every backend: `contactflow ledger upgrade` of a 0005 ledger holding
rows in every table keeps each row as it was and adds the lookup indexes; the downgrade
drops them and keeps the rows too.

The 0005 ledger is filled through its reflected tables, not the ORM models: the models
follow the newest revision, the rows must fit the old one."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, insert, inspect, select
from typer.testing import CliRunner

from streams.cli import app
from streams.ledger import create_ledger_engine, current_revision, downgrade, head_revision, upgrade

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 10, 0, 0, 250000, tzinfo=UTC)
NEW_INDEXES = {
    "holds": "ix_holds_target_released_at",
    "request_commands": "ix_request_commands_outcome_escalated_at",
    "audit_log": "ix_audit_log_action_request_id",
}


def _hex(label: str) -> str:
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


def _subject(n: int) -> str:
    return "s-" + _hex(f"subject-{n}")[:32]


def _rows_of_0005() -> dict[str, list[dict[str, Any]]]:
    """A few rows for each table of revision 0005, parents before children."""
    alice, bob, carol, merged = (_subject(n) for n in range(4))
    later = T0 + timedelta(days=30)
    request = {"request_type": "erasure", "received_at": T0, "submitted_by": "dpo",
               "due_at": later, "updated_at": T0, "subject_pseudonyms": [alice],
               "controllers": ["ORES"], "extension_months": 0}  # fmt: skip
    recording = {"subject_pseudonym": alice, "controller": "ORES", "purpose": "service",
                 "channel": "phone", "recording_kind": "call_audio", "ended_at": T0,
                 "retain_until": later, "policy_version": "v1", "registered_at": T0,
                 "updated_at": T0}  # fmt: skip
    hold = {"reason": "dispute", "reference": "CASE-1", "source": "manual", "placed_by": "dpo",
            "placed_at": T0}  # fmt: skip
    command = {"consumer": "crm", "command": "erase", "subject_pseudonym": alice,
               "controller": "ORES", "issued_at": T0, "answer_by": later, "attempt": 1}  # fmt: skip
    return {
        "subjects": [
            {"subject_pseudonym": alice, "created_at": T0, "erased_at": None},
            {"subject_pseudonym": bob, "created_at": T0, "erased_at": later},
            {"subject_pseudonym": carol, "created_at": T0, "erased_at": None},
        ],
        "subject_identifiers": [
            {
                "identifier_digest": _hex(f"id-{n}"),
                "identifier_kind": kind,
                "subject_pseudonym": subject,
                "first_seen_at": T0,
                "last_seen_at": later,
            }
            for n, (kind, subject) in enumerate(
                [("phone", alice), ("email", alice), ("phone", carol), ("customer_ref", carol)]
            )
        ],
        "subject_aliases": [
            {"alias_pseudonym": merged, "canonical_pseudonym": alice, "merged_at": T0}
        ],
        "subject_keys": [
            {
                "key_id": "k-1",
                "subject_pseudonym": alice,
                "wrapped_key": b"\x01" * 60,
                "algorithm": "AES-256-GCM",
                "created_at": T0,
                "shredded_at": None,
            },
            {
                "key_id": "k-2",
                "subject_pseudonym": bob,
                "wrapped_key": None,
                "algorithm": "AES-256-GCM",
                "created_at": T0,
                "shredded_at": later,
            },
        ],
        "subject_footprints": [
            {
                "subject_pseudonym": alice,
                "controller": "ORES",
                "channel": "phone",
                "first_seen_at": T0,
            },
            {
                "subject_pseudonym": carol,
                "controller": "COMNEXIO",
                "channel": "chat",
                "first_seen_at": T0,
            },
        ],
        "subject_privacy_states": [
            {
                "subject_pseudonym": carol,
                "restricted": True,
                "objected_purposes": ["coaching"],
                "suppressed_from_surveys": False,
                "erased": False,
                "updated_at": T0,
                "request_id": "dsr-2",
            },
        ],
        "audit_log": [
            {
                "at": T0,
                "actor": "test",
                "action": "request.submitted",
                "request_id": "dsr-1",
                "subject_pseudonym": None,
                "details": {"type": "erasure"},
                "prev_hash": "0" * 64,
                "entry_hash": _hex("entry-1")[:64],
            },
            {
                "at": T0,
                "actor": "test",
                "action": "dead_lettered",
                "request_id": None,
                "subject_pseudonym": alice,
                "details": {"offset": 3},
                "prev_hash": _hex("entry-1")[:64],
                "entry_hash": _hex("entry-2")[:64],
            },
        ],
        "recordings": [
            {
                **recording,
                "recording_id": "rec-1",
                "contact_id": "c-1",
                "state": "held",
                "expired_at": None,
            },
            {
                **recording,
                "recording_id": "rec-2",
                "contact_id": "c-2",
                "state": "expired",
                "expired_at": later,
            },
        ],
        "holds": [
            {**hold, "hold_id": "hold-1", "scope": "subject", "target": alice},
            {
                **hold,
                "hold_id": "hold-2",
                "scope": "contact",
                "target": "c-2",
                "released_at": later,
                "released_by": "dpo",
                "release_reason": "settled",
            },
        ],
        "recording_history": [
            {
                "recording_id": "rec-1",
                "at": T0,
                "action": "registered",
                "hold_id": None,
                "retain_until": later,
                "details": {"policy_version": "v1"},
            },
            {
                "recording_id": "rec-1",
                "at": T0,
                "action": "held",
                "hold_id": "hold-1",
                "retain_until": None,
                "details": {},
            },
        ],
        "privacy_requests": [
            {**request, "request_id": "dsr-1", "state": "awaiting_acks", "executed_for": ["ORES"]},
            {
                **request,
                "request_id": "dsr-2",
                "request_type": "restriction",
                "state": "completed",
                "closed_at": later,
            },
        ],
        "request_identifiers": [
            {"request_id": "dsr-1", "identifier_digest": _hex("id-0"), "identifier_kind": "phone"}
        ],
        "request_commands": [
            {**command, "command_id": "cmd-1", "request_id": "dsr-1"},
            {
                **command,
                "command_id": "cmd-2",
                "request_id": "dsr-1",
                "consumer": "warehouse",
                "outcome": "failed",
                "reason": "timeout",
                "answered_at": T0,
            },
        ],
        "request_events": [
            {
                "request_id": "dsr-1",
                "at": T0,
                "actor": "test",
                "event": "submitted",
                "from_state": None,
                "state": "received",
                "command_id": None,
                "details": {},
            },
            {
                "request_id": "dsr-1",
                "at": T0,
                "actor": "test",
                "event": "command_issued",
                "from_state": None,
                "state": "awaiting_acks",
                "command_id": "cmd-1",
                "details": {"consumer": "crm"},
            },
        ],
    }


def _fill(engine: Engine) -> None:
    tables = MetaData()
    tables.reflect(engine)
    with engine.begin() as connection:
        for name, rows in _rows_of_0005().items():
            for row in rows:  # one by one: rows of a table leave different columns out
                connection.execute(insert(tables.tables[name]).values(row))


def _every_row(engine: Engine, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows (of these columns), as tuples in a stable order."""
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as connection:
        return {
            name: sorted(
                (tuple(row) for row in connection.execute(
                    select(*(tables.tables[name].c[c] for c in wanted)))),
                key=repr,
            )
            for name, wanted in columns.items()
        }  # fmt: skip


def _columns(engine: Engine) -> dict[str, list[str]]:
    """table -> its column names, for every ledger table (alembic's own left out)."""
    return {
        name: [str(c["name"]) for c in inspect(engine).get_columns(name)]
        for name in inspect(engine).get_table_names()
        if name != "alembic_version"
    }


def _index_names(engine: Engine, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(engine).get_indexes(table)}


def test_ledger_upgrade_of_a_0005_ledger_keeps_every_row_and_adds_the_indexes(
    ledger_url: str, tmp_path: Path
) -> None:
    upgrade(ledger_url, "0005")
    engine = create_ledger_engine(ledger_url)
    try:
        _fill(engine)
        columns = _columns(engine)  # the rows are compared on the columns of 0005
        before = _every_row(engine, columns)
        assert [name for name, rows in before.items() if not rows] == [], "a table left empty"
        assert not any(index in _index_names(engine, t) for t, index in NEW_INDEXES.items())

        env = {"CONTACTFLOW_DATABASE_URL": ledger_url, "CONTACTFLOW_DATA_DIR": str(tmp_path)}
        result = CliRunner().invoke(app, ["ledger", "upgrade"], env=env)
        assert result.exit_code == 0, result.output
        assert "migrated from 0005 to" in result.output
        assert current_revision(engine) == head_revision()

        assert _every_row(engine, columns) == before
        for table, index in NEW_INDEXES.items():
            assert index in _index_names(engine, table)

        downgrade(ledger_url, "0005")
        assert _every_row(engine, columns) == before
        for table, index in NEW_INDEXES.items():
            assert index not in _index_names(engine, table)
    finally:
        engine.dispose()
