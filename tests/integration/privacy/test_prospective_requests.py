"""Objections, restrictions and consent withdrawals are about future processing: they hold
for the purpose's controller whether or not data exists yet, and for a person the pipeline
has never seen, applied to their first event. Through the CLI and the real router."""

from __future__ import annotations

from typing import Any

import pytest
from appproc import app_env
from flow import decoded, route, send
from people import coaching_recording, example, fresh
from typer.testing import CliRunner

from streams.cli import app

pytestmark = pytest.mark.integration


def _dsr(container: Any, *args: str) -> list[str]:
    result = CliRunner().invoke(app, ["dsr", *args], env=app_env(container))
    assert result.exit_code == 0, result.output
    return result.output.split()


def _event_ids(container: Any, logical: str) -> set[str]:
    return {t["event_id"] for _, t in decoded(container, logical)}


def _recording_ids(container: Any) -> set[str]:
    return {r["recording_id"] for _, r in decoded(container, "recordings.standard.v1")}


def _stop_commands(container: Any) -> set[tuple[str, str]]:
    return {(c["consumer"], c["command"]) for _, c in decoded(container, "privacy.restriction.v1")}


def test_an_objection_to_coaching_from_an_ores_only_person_stops_coaching(
    container, privacy
) -> None:  # type: ignore[no-untyped-def]
    phone = "+32 472 10 20 30"
    call = fresh(example("phone", "inbound_call"), phone=phone)  # handled for ORES only
    send(container, [("phone", call)])
    route(container)
    assert call["envelope"]["event_id"] in _event_ids(container, "contact.ores.v1")

    request_id, state = _dsr(container, "submit", "objection", "--purpose", "coaching",
                             "--phone", phone, "--verified-by", "id_card_copy")[:2]  # fmt: skip
    # COMNEXIO's own purpose: applied at once, ORES has nothing to decide
    assert state in {"awaiting_acks", "completed"}, state
    states = [s for _, s in decoded(container, "privacy.subject-state.v1")]
    assert [s["objected_purposes"] for s in states] == [["coaching"]]
    assert ("coaching_tool", "stop_purpose") in _stop_commands(container)
    assert not decoded(container, "privacy.controller.ores.v1"), "nothing for ORES to decide"

    recording = coaching_recording(phone)
    send(container, [("phone", recording)])
    route(container)
    assert recording["envelope"]["event_id"] not in _event_ids(container, "contact.comnexio.v1")
    assert recording["payload"]["recording_id"] not in _recording_ids(container)
    report = " ".join(_dsr(container, "report", request_id))
    assert "COMNEXIO" in report


def test_objection_and_restriction_of_a_person_never_seen_apply_to_their_first_event(
    container, privacy
) -> None:  # type: ignore[no-untyped-def]
    objector, restricted = "+32 473 11 22 33", "+32 474 44 55 66"
    objection, state = _dsr(container, "submit", "objection", "--purpose", "coaching",
                            "--phone", objector, "--verified-by", "id_card_copy")[:2]  # fmt: skip
    assert state == "awaiting_acks"  # a subject made for the request carries the objection
    restriction, state = _dsr(container, "submit", "restriction", "--phone", restricted,
                              "--verified-by", "id_card_copy")[:2]  # fmt: skip
    assert state == "awaiting_controller"  # ORES decides on restricting its processing
    _dsr(container, "instruct", restriction, "--decision", "execute")
    _dsr(container, "process")
    states = {
        tuple(s["objected_purposes"]): s for _, s in decoded(container, "privacy.subject-state.v1")
    }
    assert ("coaching",) in states
    assert any(s["restricted"] for s in states.values())

    first_recording = coaching_recording(objector)
    first_call = fresh(example("phone", "inbound_call"), phone=restricted)
    send(container, [("phone", first_recording), ("phone", first_call)])
    route(container)
    comnexio = _event_ids(container, "contact.comnexio.v1")
    assert first_recording["envelope"]["event_id"] not in comnexio
    assert first_call["envelope"]["event_id"] not in _event_ids(container, "contact.ores.v1")
    assert first_call["envelope"]["event_id"] in _event_ids(container, "contact.restricted.v1")
    for request_id in (objection, restriction):
        assert request_id in " ".join(_dsr(container, "report", request_id))
