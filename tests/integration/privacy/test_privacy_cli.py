"""The privacy office's commands on the real broker and ledger: submit, status, verify,
extend, reject; identifiers are never printed back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from appproc import app_env
from flow import route_person
from people import EMAIL, PHONE
from typer.testing import CliRunner

from streams.cli import app

pytestmark = pytest.mark.integration


def test_submit_status_verify_extend_and_reject(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, datetime.now(UTC))
    runner, env = CliRunner(), app_env(container)

    def dsr(*args: str) -> str:
        result = runner.invoke(app, ["dsr", *args], env=env)
        assert result.exit_code == 0, result.output
        assert PHONE not in result.output
        assert EMAIL not in result.output
        return result.output

    submitted = dsr("submit", "restriction", "--phone", PHONE, "--email", EMAIL).splitlines()
    request_id, state = submitted[0].split()
    assert state == "identity_unverified"
    assert f"contactflow dsr verify {request_id} --by METHOD" in " ".join(submitted[1:])
    listed = json.loads(dsr("status", "--format", "json"))
    assert [(r["request_id"], r["state"]) for r in listed] == [(request_id, state)]

    assert dsr("verify", request_id, "--by", "id_card_copy").split() == [
        request_id, "awaiting_controller",
    ]  # fmt: skip
    extended = dsr("extend", request_id, "--months", "2", "--reason", "many systems to search")
    assert "due" in extended
    later = (datetime.now(UTC) + timedelta(days=95)).isoformat()
    (row,) = json.loads(dsr("status", "--format", "json", "--now", later))
    assert row["overdue"] is True

    other, _ = dsr("submit", "erasure", "--email", "someone.else@example.org").split()[:2]
    assert dsr("reject", other, "--reason", "identity could not be proven").split() == [
        other, "rejected",
    ]  # fmt: skip
    refused = runner.invoke(app, ["dsr", "verify", other, "--by", "id_card_copy"], env=env)
    assert refused.exit_code != 0  # the console script prints this error as one line
    assert "cannot verify in state rejected" in str(refused.exception)
    bad = runner.invoke(app, ["dsr", "submit", "erasure", "--phone", "12"], env=env)
    assert bad.exit_code != 0
    assert "phone" in str(bad.exception)
    assert "12" not in str(bad.exception)
