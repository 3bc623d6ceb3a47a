from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import yaml

import processors.policy as policy_module
from processors.policy import (
    ContactFacts,
    Decisions,
    DerivedPurpose,
    PolicyError,
    attribute_controller,
    hold_signal_of,
    parse_policy,
)
from streams.settings import PROJECT_ROOT

DOCUMENT = yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text())
POLICY = parse_policy(DOCUMENT)


def facts(**overrides: str) -> ContactFacts:
    values = {"client": "ORES", "service": "outage_report", "purpose": "contact_handling",
              "channel": "phone", "kind": "inbound_call"}  # fmt: skip
    values.update(overrides)
    return ContactFacts(**values)


@pytest.mark.parametrize(
    "service",
    ["customer_contact", "incoming_call", "outage_report", "intervention_followup", "complaint",
     "satisfaction_survey", "callback", "click_to_call", "chat", "chatbot", "email",
     "social_moderation"],
)  # fmt: skip
def test_contact_handling_for_ores_has_ores_as_controller(service: str) -> None:
    decision = attribute_controller(POLICY, facts(service=service))
    assert decision is not None
    assert (decision.controller, decision.processor) == ("ORES", "COMNEXIO")
    assert decision.policy_version == DOCUMENT["version"]


def test_coaching_relisten_has_comnexio_as_controller() -> None:
    decision = attribute_controller(POLICY, facts(purpose="coaching", kind="recording_available"))
    assert decision is not None
    assert (decision.controller, decision.processor, decision.purpose) == (
        "COMNEXIO", None, "coaching")  # fmt: skip
    assert decision.legal_basis == "legitimate_interest"


def test_recordings_get_the_recording_retention_class() -> None:
    decision = attribute_controller(POLICY, facts(kind="recording_available"))
    assert decision is not None
    assert decision.retention_class == "recording"
    assert POLICY.retention_classes["recording"].recording_period_days == 30


@pytest.mark.parametrize(
    "overrides",
    [{"purpose": "direct_marketing"}, {"service": "horoscope"}, {"client": "OTHER-DSO"}],
)
def test_no_rule_means_no_controller(overrides: dict[str, str]) -> None:
    assert attribute_controller(POLICY, facts(**overrides)) is None


def _broken(path: list[Any], value: Any) -> Any:
    document = copy.deepcopy(DOCUMENT)
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], "", "policy.version"),
        (["rules"], [], "policy.rules"),
        (["rules", 0, "controller"], "ACME", r"rules\[0\] \(comnexio-coaching\).controller"),
        (["rules", 1, "processor"], "ORES", "processor"),
        (["rules", 1, "legal_basis"], "because", "legal_basis"),
        (["rules", 1, "retention_class"], "forever", "retention_class"),
        (["rules", 1, "match"], {"colour": "red"}, "match.colour"),
        (["rules", 1, "name"], "comnexio-coaching", "duplicate rule names"),
        (["retention_classes", "recording"], {"recording_period_days": -3}, "positive integer"),
    ],
)
def test_bad_policy_is_refused_with_the_path(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(_broken(path, value))


@pytest.mark.parametrize(
    ("service", "reason"),
    [("complaint", "complaint"), ("fraud_report", "fraud"), ("dispute", "dispute"),
     ("outage_report", None)],
)  # fmt: skip
def test_hold_signals_come_from_the_policy(service: str, reason: str | None) -> None:
    assert hold_signal_of(POLICY, facts(service=service)) == reason
    if reason is not None:
        assert attribute_controller(POLICY, facts(service=service)) is not None


def test_bad_hold_signals_are_refused() -> None:
    with pytest.raises(PolicyError, match=r"hold_signals.gossip: unknown reason"):
        parse_policy(_broken(["hold_signals", "gossip"], {"service": "x"}))
    with pytest.raises(PolicyError, match="release_grace_days"):
        parse_policy(_broken(["release_grace_days"], 0))
    assert POLICY.release_grace_days == 7


def test_reporting_is_a_derived_purpose_of_ores_open_to_objection() -> None:
    (reporting,) = POLICY.derived_purposes
    assert reporting == DerivedPurpose(
        name="reporting", description=reporting.description,
        derived_from=frozenset({"contact_handling"}), controller="ORES",
        processor="COMNEXIO", legal_basis="legitimate_interest",
    )  # fmt: skip
    assert "performance indicators" in reporting.description
    assert POLICY.derived_purpose_names == {"reporting"}
    # no event is produced for it: no rule matches an event naming it
    assert attribute_controller(POLICY, facts(purpose="reporting")) is None


def test_a_policy_without_derived_purposes_has_none() -> None:
    document = copy.deepcopy(DOCUMENT)
    del document["derived_purposes"]
    assert parse_policy(document).derived_purposes == ()
    assert parse_policy(document).derived_purpose_names == frozenset()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["derived_purposes"], ["reporting"], r"derived_purposes: a mapping of purpose"),
        (["derived_purposes", "reporting"], "ORES", r"derived_purposes.reporting: expected a"),
        (["derived_purposes", "coaching"], {}, r"derived_purposes.coaching: already a purpose"),
        (["derived_purposes", "reporting", "audience"], "all", r"unknown keys \['audience'\]"),
        (["derived_purposes", "reporting", "description"], " ", r"reporting.description"),
        (["derived_purposes", "reporting", "derived_from"], [], r"reporting.derived_from"),
        (["derived_purposes", "reporting", "derived_from"], ["gossip"],
         r"reporting.derived_from: .*contact_handling"),
        (["derived_purposes", "reporting", "derived_from"], "contact_handling",
         r"reporting.derived_from"),
        (["derived_purposes", "reporting", "controller"], "ACME", r"reporting.controller"),
        (["derived_purposes", "reporting", "processor"], "ORES", r"reporting.processor"),
        (["derived_purposes", "reporting", "legal_basis"], "because", r"reporting.legal_basis"),
        (["derived_purposes", "reporting", "legal_basis"], "consent",
         r"reporting.legal_basis: .*object to a derived purpose \(GDPR Art. 21\)"),
    ],
)  # fmt: skip
def test_a_malformed_derived_purpose_is_refused_with_its_path(
    path: list[Any], value: Any, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(_broken(path, value))


def _key(f: ContactFacts) -> tuple[str, str, str, str, str]:
    return (f.client, f.service, f.purpose, f.channel, f.kind)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"service": "complaint"}, {"purpose": "coaching", "kind": "recording_available"},
     {"service": "horoscope"}, {"client": "OTHER-DSO", "service": "dispute"}],
)  # fmt: skip
def test_decisions_are_the_policys_decisions(overrides: dict[str, str]) -> None:
    decide, asked = Decisions(POLICY), facts(**overrides)
    expected = (attribute_controller(POLICY, asked), hold_signal_of(POLICY, asked))
    assert decide(_key(asked)) == expected
    assert decide(_key(asked)) == expected  # remembered, the same


def test_decisions_remember_a_bounded_number_of_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_module, "_MAX_REMEMBERED", 2)
    decide = Decisions(POLICY)
    keys = [_key(facts(service=s)) for s in ("callback", "chat", "complaint")]
    first = [decide(key) for key in keys]
    again = [decide(key) for key in keys]
    assert again == first
    assert [a is f for a, f in zip(again, first, strict=True)] == [True, True, False]


def test_deciding_leaves_the_policy_as_it_was() -> None:
    """The policy is a plain value: nothing is cached on it (it also crosses to the
    router's helper process as a pickle)."""
    policy = parse_policy(DOCUMENT)
    before = pickle.dumps(policy)
    attribute_controller(policy, facts())
    Decisions(policy)(_key(facts(service="complaint")))
    assert pickle.dumps(policy) == before
    assert policy == POLICY
