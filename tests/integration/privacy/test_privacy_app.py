"""The faust control-plane app on the real broker: a request from privacy.requests.v1, the
controller's refusal through `dsr instruct`, consumers' answers on privacy.acks.v1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from appproc import app_env, privacy_app, wait_for
from flow import decoded, publish, route_person
from people import HANDLE, PHONE
from typer.testing import CliRunner

from streams.cli import app
from streams.ledger import UnknownRequestError

pytestmark = pytest.mark.integration


def test_request_topic_refusal_and_acks_through_the_app(container, privacy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    route_person(container, now)
    publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-app-1", {
        "request_id": "dsr-app-1", "request_type": "restriction",
        "identifiers": [{"kind": "phone", "value": PHONE},
                        {"kind": "social_handle", "value": f"facebook:{HANDLE}"}],
        "purpose": None, "received_at": now, "verified_by": "id_card_copy",
        "submitted_by": "intake-portal", "reason": None,
    })  # fmt: skip
    publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-app-bad", {
        "request_id": "dsr-app-bad", "request_type": "objection", "identifiers": [],
        "purpose": None, "received_at": now, "verified_by": None,
        "submitted_by": "intake-portal", "reason": None,
    })  # fmt: skip
    log = tmp_path / "privacy-app.log"
    runner, env = CliRunner(), app_env(container)
    with privacy_app(container, log):
        waiting = wait_for(lambda: _state(privacy, "dsr-app-1") == "awaiting_controller",
                           "the app to forward the request to ORES", log)  # fmt: skip
        assert waiting
        refused = runner.invoke(app, ["dsr", "instruct", "dsr-app-1", "--decision", "refuse",
                                      "--reason", "contract dispute pending"], env=env)  # fmt: skip
        assert refused.exit_code == 0, refused.output
        wait_for(lambda: _state(privacy, "dsr-app-1") == "refused", "the refusal", log)
        dead = wait_for(lambda: decoded(container, "contact.deadletter.v1"),
                        "the bad request to be dead-lettered", log)  # fmt: skip
    assert dead[0][1]["reason_code"] in {"PrivacyRequestError", "ValueError"}
    assert dead[0][1]["original_value"]  # the original bytes are kept
    assert not decoded(container, "privacy.restriction.v1")  # ORES refused: nothing went out

    report = runner.invoke(app, ["dsr", "report", "dsr-app-1"], env=env)
    assert report.exit_code == 0, report.output
    assert "refuse" in report.output
    assert "contract dispute pending" in report.output
    assert PHONE not in report.output
    assert HANDLE not in report.output


def _state(privacy, request_id: str) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return str(privacy.get(request_id).state)
    except UnknownRequestError:  # not stored yet
        return None
