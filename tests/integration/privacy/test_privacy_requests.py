"""Restriction, lifting, objection, unverified requests and deadlines on the real broker,
the router honouring the published subject state; time moves by an injected clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from appproc import app_env
from flow import decoded, route, route_person, send
from people import EMAIL, PHONE, coaching_recording, example, fresh
from typer.testing import CliRunner

from streams.cli import app
from streams.control.privacy.intake import Intake, identifiers

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def _intake(kind: str, verified: bool = True, **extra: object) -> Intake:
    values: dict[str, object] = {
        "request_type": kind, "identifiers": identifiers([("email", EMAIL)]),
        "submitted_by": "privacy-office", "received_at": NOW,
        "verified_by": "id_card_copy" if verified else None, **extra,
    }  # fmt: skip
    return Intake(**values)  # type: ignore[arg-type]


def _call_ids(container, logical: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {t["event_id"] for _, t in decoded(container, logical)}


def test_restriction_keeps_new_events_out_of_processing_until_lifted(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW)
    request = privacy.submit(_intake("restriction"), NOW)
    assert request.state == "awaiting_controller"
    request = privacy.instruct(request.request_id, "execute", None, "controller:ORES", NOW)
    assert request.state == "awaiting_acks"
    states = [s for _, s in decoded(container, "privacy.subject-state.v1")]
    assert [s["restricted"] for s in states] == [True]
    assert decoded(container, "privacy.restriction.v1")

    during = fresh(example("phone", "inbound_call"), phone=PHONE)
    send(container, [("phone", during)])
    route(container)
    assert during["envelope"]["event_id"] in _call_ids(container, "contact.restricted.v1")
    assert during["envelope"]["event_id"] not in _call_ids(container, "contact.ores.v1")

    lift = privacy.submit(_intake("lift_restriction", reason="accuracy verified"), NOW)
    privacy.instruct(lift.request_id, "execute", None, "controller:ORES", NOW)
    after = fresh(example("phone", "inbound_call"), phone=PHONE)
    send(container, [("phone", after)])
    route(container)
    assert after["envelope"]["event_id"] in _call_ids(container, "contact.ores.v1")
    latest = [s for _, s in decoded(container, "privacy.subject-state.v1")][-1]
    assert latest["restricted"] is False


def test_objection_to_coaching_keeps_recordings_out_of_coaching(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW, [("phone", coaching_recording())])
    assert decoded(container, "contact.comnexio.v1")
    request = privacy.submit(_intake("objection", purpose="coaching"), NOW)
    # COMNEXIO's own purpose: applied at once, ORES has no part in it
    assert request.state == "awaiting_acks"
    assert request.controllers == frozenset({"COMNEXIO"})
    assert not decoded(container, "privacy.controller.ores.v1")
    states = [s for _, s in decoded(container, "privacy.subject-state.v1")]
    assert states[-1]["objected_purposes"] == ["coaching"]
    stop = {(c["consumer"], c["command"]) for _, c in decoded(container, "privacy.restriction.v1")}
    assert ("coaching_tool", "stop_purpose") in stop

    again = coaching_recording()
    send(container, [("phone", again)])
    route(container)
    assert again["envelope"]["event_id"] not in _call_ids(container, "contact.comnexio.v1")


def test_an_unverified_request_changes_nothing_until_verified(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW)
    request = privacy.submit(_intake("erasure", verified=False), NOW)
    assert request.state == "identity_unverified"
    assert request.subjects == ()
    for logical in ("privacy.erasure.v1", "privacy.subject-state.v1", "privacy.controller.ores.v1"):
        assert not decoded(container, logical)
    verified = privacy.verify(request.request_id, "id_card_copy", NOW + timedelta(hours=1))
    assert verified.state == "awaiting_controller"


def test_a_silent_consumer_makes_the_request_overdue_and_escalated(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW)
    request = privacy.submit(_intake("restriction"), NOW)
    privacy.instruct(request.request_id, "execute", None, "controller:ORES", NOW)
    commands = decoded(container, "privacy.restriction.v1")
    silent = "reporting_warehouse"
    for _, command in commands:
        if command["consumer"] != silent:
            privacy.acknowledge(command["command_id"], "done", None, NOW + timedelta(hours=2))
    assert privacy.tick(NOW + timedelta(days=4)).resent == 0  # P5D not yet passed
    resent = privacy.tick(NOW + timedelta(days=6))
    assert resent.resent >= 1
    attempts = [c for _, c in decoded(container, "privacy.restriction.v1") if c["attempt"] == 2]
    assert {c["consumer"] for c in attempts} == {silent}
    escalated = privacy.tick(NOW + timedelta(days=12))
    assert escalated.escalated_commands >= 1
    late = privacy.tick(NOW + timedelta(days=40))
    assert late.escalated_requests == 1
    assert privacy.tick(NOW + timedelta(days=41)).escalated_requests == 0  # once
    stored = privacy.get(request.request_id)
    assert stored.state == "awaiting_acks"
    assert stored.escalated_at is not None
    audit = [a for _, a in decoded(container, "privacy.audit.v1")]
    actions = {a["action"] for a in audit}
    assert {"escalation.consumer", "escalation.request"} <= actions


def test_access_export_holds_every_decrypted_record_with_controller_and_purpose(  # type: ignore[no-untyped-def]
    container, privacy, tmp_path
) -> None:
    route_person(container, NOW, [("phone", coaching_recording())])
    request = privacy.submit(_intake("access"), NOW)
    privacy.instruct(request.request_id, "execute", None, "controller:ORES", NOW)
    out = tmp_path / "export.json"
    runner = CliRunner()
    exported = runner.invoke(app, ["dsr", "export", request.request_id, "--out", str(out)],
                             env=app_env(container))  # fmt: skip
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text())
    assert {r["controller"] for r in document["records"]} == {"ORES", "COMNEXIO"}
    assert len(document["records"]) == 6  # five channels and the coaching recording
    emails = {r["event"]["envelope"]["subject"].get("email") for r in document["records"]}
    assert EMAIL in emails  # decrypted for the person it belongs to
    assert all(r["purpose"] and r["legal_basis"] for r in document["records"])
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert privacy.get(request.request_id).state == "completed"
    assert EMAIL not in exported.output
    again = runner.invoke(app, ["dsr", "export", request.request_id, "--out", str(out)],
                          env=app_env(container))  # fmt: skip
    assert again.exit_code != 0  # a completed request exports nothing more


def test_consent_withdrawal_and_rectification_reach_their_consumers(container, privacy) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW)
    withdrawal = privacy.submit(_intake("consent_withdrawal", purpose="satisfaction_survey"), NOW)
    privacy.instruct(withdrawal.request_id, "execute", None, "controller:ORES", NOW)
    state = [s for _, s in decoded(container, "privacy.subject-state.v1")][-1]
    assert state["suppressed_from_surveys"] is True
    assert state["restricted"] is False
    rectification = privacy.submit(_intake("rectification"), NOW)
    privacy.instruct(rectification.request_id, "execute", None, "controller:ORES", NOW)
    commands = [c for _, c in decoded(container, "privacy.restriction.v1")]
    suppress = {c["consumer"] for c in commands if c["command"] == "suppress"}
    assert suppress == {"survey_tool", "ores_systems"}
    rectify = [c for c in commands if c["command"] == "rectify"]
    assert {c["consumer"] for c in rectify} == {"crm", "survey_tool", "reporting_warehouse",
                                                 "ores_systems"}  # fmt: skip
    assert all(c["rectified_kinds"] == ["email"] for c in rectify)
    assert EMAIL not in repr(commands)
