"""What a data-subject request must hold to be taken in (CLI and privacy.requests.v1 alike):
a receipt time inside the window the law can still be met in, known purposes and
platforms, an id, bounded fields and lists; refusals name the field and the rule, never
the value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from processors.identity import SOCIAL_PLATFORMS, InvalidIdentifier, qualify_handle
from processors.policy import parse_policy
from processors.privacy import PrivacyRequestError, RequestType, submit
from processors.request_intake import (
    MAX_IDENTIFIERS,
    MAX_RECEIPT_AGE_MONTHS,
    RECEIPT_CLOCK_SKEW,
    REQUEST_REASON_LIMIT,
    RequestRefused,
    check_identifier_count,
    check_purpose,
    check_reason,
    check_receipt,
    check_request_id,
    request_purposes,
)
from streams.settings import PROJECT_ROOT

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
POLICY = parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))
PURPOSES = request_purposes(POLICY)


def test_the_window_is_the_longest_lawful_answer_time() -> None:
    assert MAX_RECEIPT_AGE_MONTHS == 3  # one month, extendable by two (GDPR Art. 12(3))


@pytest.mark.parametrize(
    "received_at",
    [NOW, NOW - timedelta(days=40), datetime(2026, 8, 26, 9, 0, tzinfo=UTC),
     NOW + RECEIPT_CLOCK_SKEW - timedelta(seconds=1)],
)  # fmt: skip
def test_receipt_times_the_law_can_still_be_met_for_are_taken(received_at: datetime) -> None:
    taken = check_receipt(received_at, NOW)
    assert taken <= NOW  # a clock a little ahead is taken as now: the earlier deadline
    assert taken == min(received_at, NOW)


@pytest.mark.parametrize(
    ("received_at", "rule"),
    [(datetime(1970, 1, 1, tzinfo=UTC), "more than 3 months ago"),
     (datetime(2026, 8, 24, 9, 0, tzinfo=UTC), "more than 3 months ago"),
     (NOW + RECEIPT_CLOCK_SKEW + timedelta(seconds=1), "in the future"),
     (NOW + timedelta(days=365), "in the future")],
)  # fmt: skip
def test_receipt_times_far_in_the_past_or_in_the_future_are_refused(
    received_at: datetime, rule: str
) -> None:
    with pytest.raises(RequestRefused) as caught:
        check_receipt(received_at, NOW)
    assert caught.value.field == "received_at"
    assert rule in str(caught.value)
    assert str(received_at.year) not in str(caught.value)


def test_the_state_machine_refuses_the_same_receipt_times() -> None:
    with pytest.raises(RequestRefused, match="received_at"):
        submit("dsr-1", "erasure", datetime(1970, 1, 1, tzinfo=UTC), "dpo", NOW)
    step = submit("dsr-2", "erasure", NOW + timedelta(minutes=1), "dpo", NOW)
    assert step.request.received_at == NOW


def test_purposes_come_from_the_policy_and_the_notice() -> None:
    objection = PURPOSES[RequestType.OBJECTION]
    assert {"coaching", "staff_training", "service_improvement", "contact_handling"} <= objection
    assert {"direct_marketing", "direct_marketing_profiling"} <= objection  # notice §7
    assert "satisfaction_survey" not in objection  # a service: nothing is produced for it
    assert "satisfaction_survey" in PURPOSES[RequestType.CONSENT_WITHDRAWAL]
    assert "reporting" in objection  # a derived purpose, on a legitimate interest (Art. 21)
    assert "reporting" not in PURPOSES[RequestType.CONSENT_WITHDRAWAL]  # none rests on consent


@pytest.mark.parametrize(
    ("request_type", "purpose"),
    [(RequestType.OBJECTION, "coaching"), (RequestType.OBJECTION, "direct_marketing"),
     (RequestType.OBJECTION, "reporting"),
     (RequestType.CONSENT_WITHDRAWAL, "satisfaction_survey"), (RequestType.ERASURE, None)],
)  # fmt: skip
def test_known_purposes_are_taken(request_type: RequestType, purpose: str | None) -> None:
    check_purpose(request_type, purpose, PURPOSES)


@pytest.mark.parametrize(
    ("request_type", "purpose"),
    [(RequestType.OBJECTION, "world_domination"),
     (RequestType.CONSENT_WITHDRAWAL, "world_domination"),
     (RequestType.OBJECTION, "satisfaction_survey"),
     (RequestType.CONSENT_WITHDRAWAL, "reporting")],
)  # fmt: skip
def test_unknown_purposes_are_refused(request_type: RequestType, purpose: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        check_purpose(request_type, purpose, PURPOSES)
    assert caught.value.field == "purpose"
    assert purpose not in str(caught.value)
    assert "coaching" in str(caught.value)  # says which are known (codes, not personal data)


def test_platforms_are_the_contracts_platforms() -> None:
    enum = json.loads((PROJECT_ROOT / "schemas/avro/common/SocialPlatform.avsc").read_text())
    assert frozenset(enum["symbols"]) == SOCIAL_PLATFORMS


def test_a_handle_on_an_unknown_platform_is_refused_without_the_handle() -> None:
    assert qualify_handle("Facebook", "@JaneD").value == "facebook:janed"
    with pytest.raises(InvalidIdentifier) as caught:
        qualify_handle("myspace", "someone")
    assert "unknown platform" in str(caught.value)
    assert "someone" not in str(caught.value)
    assert "myspace" not in str(caught.value)


@pytest.mark.parametrize("request_id", ["", " ", "\n"])
def test_an_empty_request_id_is_refused(request_id: str) -> None:
    with pytest.raises(RequestRefused, match="request_id"):
        check_request_id(request_id)
    check_request_id("DPO-2026-0042")


def test_oversized_fields_and_lists_are_refused() -> None:
    check_reason(None)
    check_reason("x" * REQUEST_REASON_LIMIT)
    with pytest.raises(RequestRefused, match="reason") as caught:
        check_reason("x" * 500_000)
    assert "xxxx" not in str(caught.value)
    check_identifier_count(MAX_IDENTIFIERS)
    with pytest.raises(RequestRefused, match="identifiers"):
        check_identifier_count(10_000)


def test_a_refusal_is_a_privacy_request_error() -> None:
    assert issubclass(RequestRefused, PrivacyRequestError)
    assert issubclass(RequestRefused, ValueError)  # the privacy app dead-letters those
