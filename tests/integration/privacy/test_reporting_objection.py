"""An objection to reporting (a derived purpose ORES controls, GDPR Art. 21) through the
CLI, ORES's instruction and the real router: the objector's next events still reach
contact.ores.v1 (contact handling goes on), each marked as excluded from reporting; another
person's events are not. The events are written with each channel's newest contract."""

from __future__ import annotations

from typing import Any

import pytest
from appproc import app_env
from flow import decoded, route, send
from people import PHONE, example, fresh, one_person_on_five_channels
from typer.testing import CliRunner

from schemas.catalog import CHANNEL_CONTRACTS
from schemas.serde import AvroSerde
from streams.cli import app

pytestmark = pytest.mark.integration


def _dsr(container: Any, *args: str) -> list[str]:
    result = CliRunner().invoke(app, ["dsr", *args], env=app_env(container))
    assert result.exit_code == 0, result.output
    return result.output.split()


def _ores_events(container: Any) -> dict[str, dict[str, Any]]:
    return {t["event_id"]: t for _, t in decoded(container, "contact.ores.v1")}


def test_an_objection_to_reporting_marks_the_objectors_next_events_only(container, privacy) -> None:  # type: ignore[no-untyped-def]
    before = one_person_on_five_channels()
    send(container, before)
    route(container)
    routed = _ores_events(container)
    subjects = {routed[e["envelope"]["event_id"]]["governance"]["subject_pseudonym"]
                for _, e in before}  # fmt: skip
    assert len(subjects) == 1  # one person, linked across the five channels

    request_id, state = _dsr(container, "submit", "objection", "--purpose", "reporting",
                             "--phone", PHONE, "--verified-by", "id_card_copy")[:2]  # fmt: skip
    assert state == "awaiting_controller"  # reporting is ORES's: ORES decides
    assert [r["request_id"] for _, r in decoded(container, "privacy.controller.ores.v1")] == [
        request_id
    ]
    _dsr(container, "instruct", request_id, "--decision", "execute")
    _dsr(container, "process")
    states = [s for _, s in decoded(container, "privacy.subject-state.v1")]
    assert [(s["subject_pseudonym"], s["objected_purposes"], s["restricted"]) for s in states] == [
        (next(iter(subjects)), ["reporting"], False)
    ]

    after = [(channel, fresh(event)) for channel, event in before]
    bystander = fresh(example("phone", "inbound_call"), phone="+32 478 90 12 34")
    send(container, [*after, ("phone", bystander)])
    route(container)

    routed = _ores_events(container)
    serde = AvroSerde(container.schemas)
    for channel, event in after:  # every channel, still on the controller's topic, marked
        tagged = routed[event["envelope"]["event_id"]]
        assert tagged["governance"]["subject_pseudonym"] in subjects
        assert tagged["governance"]["excluded_purposes"] == ["reporting"], channel
        newest = container.schemas.latest(CHANNEL_CONTRACTS[channel])
        assert tagged["source_fingerprint"] == newest.fingerprint_hex
        assert serde.deserialize(tagged["event"])[0] is newest
    other = routed[bystander["envelope"]["event_id"]]
    assert other["governance"]["subject_pseudonym"] not in subjects
    assert other["governance"]["excluded_purposes"] == []
    for _, event in before:  # routed before the objection: nothing was excluded then
        assert routed[event["envelope"]["event_id"]]["governance"]["excluded_purposes"] == []
    assert request_id in " ".join(_dsr(container, "report", request_id))
