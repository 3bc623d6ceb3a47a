"""from_json and validate: conversion of producer JSON, and problems naming paths, never values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import (
    CHANNEL_CONTRACTS,
    Contract,
    ContractViolation,
    FieldProblem,
    SchemaCatalog,
    from_json,
    validate,
)
from schemas.examples import example_events

NS = "be.comnexio.contactflow"
PHONE = "+32 471 12 34 56"
EMAIL = "jean.dupont@example.org"
TEXT = "Bonjour, je suis Jean Dupont, rue de l'Exemple 12 à Charleroi"


def _phone(catalog: SchemaCatalog) -> Contract:
    return catalog.latest("PhoneContactEvent")


def _inbound_call() -> dict[str, Any]:
    return example_events("phone")[0]


def _problems(contract: Contract, event: dict[str, Any]) -> list[str]:
    with pytest.raises(ContractViolation) as caught:
        from_json(contract, event)
    return [str(problem) for problem in caught.value.problems]


def test_from_json_converts_timestamps_and_fills_defaults(catalog: SchemaCatalog) -> None:
    event = _inbound_call()
    event["envelope"].pop("purpose", None)
    del event["envelope"]["site"]
    del event["payload"]["agent_id"], event["payload"]["ivr_path"]
    event["envelope"]["occurred_at"] = 1741076262000  # epoch milliseconds are accepted too
    record = from_json(_phone(catalog), event)
    envelope = record["envelope"]
    assert envelope["occurred_at"] == datetime(2025, 3, 4, 8, 17, 42, tzinfo=UTC)
    assert (envelope["purpose"], envelope["site"]) == ("contact_handling", None)
    assert envelope["subject"]["email"] is None
    assert envelope["subject"]["social_handle"] is None
    name, payload = record["payload"]
    assert name == f"{NS}.InboundCall"
    assert payload["answered_at"] == datetime(2025, 3, 4, 8, 15, 31, tzinfo=UTC)
    assert payload["answered_at"].utcoffset() is not None
    assert (payload["agent_id"], payload["ivr_path"]) == (None, None)
    assert validate(_phone(catalog), record) == []


@pytest.mark.parametrize(
    ("channel", "change", "expected"),
    [
        (
            "phone",
            lambda e: e["envelope"].pop("contact_id"),
            "envelope.contact_id: missing required field",
        ),
        (
            "phone",
            lambda e: e["envelope"].update(site="brussels"),
            "envelope.site: unknown enum symbol (expected one of: gosselies, eupen)",
        ),
        (
            "phone",
            lambda e: e["envelope"].update(occurred_at="04/03/2025 09:17"),
            "envelope.occurred_at: not a valid ISO-8601 timestamp",
        ),
        (
            "phone",
            lambda e: e["payload"].update(answered_at="2025-03-04T09:15:31"),
            "payload[InboundCall].answered_at: timestamp needs a timezone",
        ),
        (
            "survey",
            lambda e: e["payload"].update(score=11),
            "payload[SurveyAnswered].score: above the maximum of 10",
        ),
        (
            "phone",
            lambda e: e.update(kind="outbound_call"),
            "payload: does not agree with kind (kind requires OutboundCall; "
            "the value fits InboundCall)",
        ),
        (
            "phone",
            lambda e: e["envelope"]["subject"].update(fax="+32 71 00 00 00"),
            "envelope.subject.fax: unknown field",
        ),
        (
            "phone",
            lambda e: e["payload"].update(duration_s=None),
            "payload[InboundCall].duration_s: null is not allowed",
        ),
        (
            "phone",
            lambda e: e["payload"].update(duration_s="131"),
            "payload[InboundCall].duration_s: expected an integer",
        ),
        (
            "phone",
            lambda e: e["envelope"].update(event_id="evt-1"),
            "envelope.event_id: not a valid UUID",
        ),
        (
            "chat",
            lambda e: e["payload"]["messages"][2].update(sender="robot"),
            "payload[ChatTranscript].messages[2].sender: unknown enum symbol "
            "(expected one of: customer, agent, bot)",
        ),
    ],
    ids=[
        "missing-required",
        "unknown-enum",
        "unparseable-timestamp",
        "naive-timestamp",
        "score-11",
        "kind-payload-mismatch",
        "extra-field",
        "null-in-non-null",
        "wrong-type",
        "bad-uuid",
        "array-item-path",
    ],
)
def test_each_problem_names_the_field_path(
    catalog: SchemaCatalog, channel: str, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    contract = catalog.latest(CHANNEL_CONTRACTS[channel])
    events = example_events(channel)
    event = events[1] if channel in ("survey", "chat") else events[0]
    change(event)
    assert _problems(contract, event) == [expected]


def test_payload_not_fitting_any_branch_reports_the_kind_branch(catalog: SchemaCatalog) -> None:
    event = _inbound_call()
    del event["payload"]["queue"]
    event["payload"]["queue_name"] = "ores-outage-fr"
    assert _problems(_phone(catalog), event) == [
        "payload[InboundCall].queue: missing required field",
        "payload[InboundCall].queue_name: unknown field",
    ]


def test_unknown_kind_is_reported_once_on_kind(catalog: SchemaCatalog) -> None:
    event = _inbound_call()
    event["kind"] = "fax_received"
    problems = _problems(_phone(catalog), event)
    assert len(problems) == 1
    assert problems[0].startswith("kind: unknown enum symbol")


def test_personal_data_never_appears_in_problems(catalog: SchemaCatalog) -> None:
    event = _inbound_call()
    event["envelope"].update(site=PHONE, occurred_at=EMAIL, event_id=TEXT, language=["x", EMAIL])
    event["envelope"]["subject"].update(phone=123, **{PHONE: EMAIL, "e mail": EMAIL})
    event["payload"].update(duration_s=TEXT, answered_at=f"{PHONE}T09:00", queue={"n": TEXT})
    with pytest.raises(ContractViolation) as caught:
        from_json(_phone(catalog), event)
    text = str(caught.value) + repr(caught.value.problems)
    assert len(caught.value.problems) == 10
    for secret in (PHONE, EMAIL, TEXT, "471", "dupont"):
        assert secret not in text.lower()
    assert "envelope.subject.<key>: unknown field" in text


def test_validate_checks_a_record_with_tuple_notation(catalog: SchemaCatalog) -> None:
    contract = _phone(catalog)
    record = from_json(contract, _inbound_call())
    record["payload"] = (f"{NS}.ClickToCall", {"request_id": "c2c-1", "page": "/fr"})
    assert validate(contract, record) == [
        FieldProblem(
            "payload",
            "does not agree with kind (kind requires InboundCall; the value fits ClickToCall)",
        )
    ]
    record["kind"] = "click_to_call"
    assert validate(contract, record) == []
    record["envelope"]["occurred_at"] = datetime(2025, 3, 4, 9, 0)  # noqa: DTZ001 - on purpose
    record["payload"][1]["page"] = None
    assert [str(p) for p in validate(contract, record)] == [
        "envelope.occurred_at: timestamp needs a timezone",
        "payload[ClickToCall].page: null is not allowed",
    ]


def test_contract_violation_message_summarises(catalog: SchemaCatalog) -> None:
    event = _inbound_call()
    del event["envelope"]["client"], event["envelope"]["service"]
    with pytest.raises(ContractViolation, match=r"^PhoneContactEvent v3: 2 problems: envelope\."):
        from_json(_phone(catalog), event)


def test_from_json_refuses_a_non_object(catalog: SchemaCatalog) -> None:
    with pytest.raises(ContractViolation, match="<record>: expected an object"):
        from_json(_phone(catalog), [])  # type: ignore[arg-type]
