"""Whose processing a request reaches: the purpose's controller for objections and consent
withdrawals, data on record otherwise, ORES by default; a subject made for a person never
seen when the request is about future processing."""

from __future__ import annotations

import pytest

from processors.policy import parse_policy
from processors.privacy import RequestType
from processors.request_scope import Scope, purpose_controllers, request_scope

POLICY_DOCUMENT = (
    {
        "version": "test",
        "retention_classes": {"none": {}},
        "rules": [
            {"name": "coaching", "match": {"purpose": ["coaching", "staff_training"]},
             "controller": "COMNEXIO", "legal_basis": "legitimate_interest",
             "retention_class": "none"},
            {"name": "handling", "match": {"purpose": "contact_handling",
                                           "service": "satisfaction_survey"},
             "controller": "ORES", "processor": "COMNEXIO", "legal_basis": "public_task",
             "retention_class": "none"},
        ],
    }
)  # fmt: skip
POLICY = parse_policy(POLICY_DOCUMENT)
OWNERS = purpose_controllers(POLICY)


def test_the_policy_says_who_controls_each_purpose_and_service() -> None:
    assert {
        "coaching": frozenset({"COMNEXIO"}), "staff_training": frozenset({"COMNEXIO"}),
        "contact_handling": frozenset({"ORES"}), "satisfaction_survey": frozenset({"ORES"}),
    } == OWNERS  # fmt: skip


@pytest.mark.parametrize("holding", [set(), {"ORES"}, {"ORES", "COMNEXIO"}])
def test_an_objection_to_coaching_is_comnexios_whatever_data_exists(holding: set[str]) -> None:
    scope = request_scope(RequestType.OBJECTION, "coaching", True, holding, OWNERS)
    assert scope == Scope(frozenset({"COMNEXIO"}))


def test_a_consent_withdrawal_for_the_survey_is_ores() -> None:
    scope = request_scope(
        RequestType.CONSENT_WITHDRAWAL, "satisfaction_survey", True, {"COMNEXIO"}, OWNERS
    )
    assert scope.controllers == frozenset({"ORES"})


@pytest.mark.parametrize(
    ("kind", "purpose", "controllers", "inferred"),
    [
        (RequestType.OBJECTION, "coaching", {"COMNEXIO"}, False),
        (RequestType.CONSENT_WITHDRAWAL, "satisfaction_survey", {"ORES"}, False),
        (RequestType.RESTRICTION, None, {"ORES"}, True),
        (RequestType.OBJECTION, "direct_marketing", {"ORES"}, True),  # no rule: the default
    ],
)
def test_a_person_never_seen_gets_a_subject_for_future_processing(
    kind: RequestType, purpose: str | None, controllers: set[str], inferred: bool
) -> None:
    scope = request_scope(kind, purpose, False, set(), OWNERS)
    assert scope == Scope(frozenset(controllers), inferred=inferred, new_subject=True)


@pytest.mark.parametrize(
    "kind",
    [RequestType.ERASURE, RequestType.ACCESS, RequestType.PORTABILITY,
     RequestType.RECTIFICATION, RequestType.LIFT_RESTRICTION],
)  # fmt: skip
def test_requests_about_existing_data_of_a_person_never_seen_reach_nothing(
    kind: RequestType,
) -> None:
    assert request_scope(kind, None, False, set(), OWNERS) == Scope(frozenset())


REPORTING = {"reporting": {"description": "KPIs", "derived_from": ["contact_handling"],
                           "controller": "ORES", "processor": "COMNEXIO",
                           "legal_basis": "legitimate_interest"}}  # fmt: skip
WITH_REPORTING = parse_policy({**POLICY_DOCUMENT, "derived_purposes": REPORTING})


def test_a_derived_purpose_is_controlled_as_the_policy_says() -> None:
    owners = purpose_controllers(WITH_REPORTING)
    assert owners["reporting"] == frozenset({"ORES"})
    assert {k: v for k, v in owners.items() if k != "reporting"} == OWNERS


@pytest.mark.parametrize(("found", "holding"), [(True, {"COMNEXIO"}), (True, set()),
                                                (False, set())])  # fmt: skip
def test_an_objection_to_reporting_is_ores_whatever_data_exists(
    found: bool, holding: set[str]
) -> None:
    owners = purpose_controllers(WITH_REPORTING)
    scope = request_scope(RequestType.OBJECTION, "reporting", found, holding, owners)
    assert scope == Scope(frozenset({"ORES"}), new_subject=not found)


def test_data_on_record_decides_other_requests_and_ores_is_inferred_without_any() -> None:
    both = request_scope(RequestType.ERASURE, None, True, {"ORES", "COMNEXIO"}, OWNERS)
    assert both == Scope(frozenset({"ORES", "COMNEXIO"}))
    quarantined = request_scope(RequestType.ERASURE, None, True, set(), OWNERS)
    assert quarantined == Scope(frozenset({"ORES"}), inferred=True)
