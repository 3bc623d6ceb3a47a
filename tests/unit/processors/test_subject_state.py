"""What each executed request does to a subject's privacy state."""

from __future__ import annotations

import pytest

from processors.privacy import RequestType
from processors.routing import NO_RESTRICTIONS, SubjectStatus
from processors.subject_state import changes_state, status_after


def test_erasure_marks_erased_and_restricted() -> None:
    after = status_after(NO_RESTRICTIONS, RequestType.ERASURE, None)
    assert (after.erased, after.restricted) == (True, True)


def test_restriction_then_lifting_restores_processing_and_keeps_objections() -> None:
    objected = SubjectStatus(objected_purposes=frozenset({"coaching"}))
    restricted = status_after(objected, RequestType.RESTRICTION, None)
    assert restricted.restricted
    lifted = status_after(restricted, RequestType.LIFT_RESTRICTION, None)
    assert not lifted.restricted
    assert lifted.objected_purposes == {"coaching"}


def test_objections_accumulate_per_purpose() -> None:
    first = status_after(NO_RESTRICTIONS, RequestType.OBJECTION, "coaching")
    both = status_after(first, RequestType.OBJECTION, "direct_marketing")
    assert both.objected_purposes == {"coaching", "direct_marketing"}
    assert not both.restricted


def test_consent_withdrawal_suppresses_surveys_only() -> None:
    after = status_after(NO_RESTRICTIONS, RequestType.CONSENT_WITHDRAWAL, "satisfaction_survey")
    assert after.suppressed_from_surveys
    assert after.objected_purposes == frozenset()


@pytest.mark.parametrize("kind", [RequestType.ACCESS, RequestType.PORTABILITY,
                                  RequestType.RECTIFICATION])  # fmt: skip
def test_requests_without_a_state_leave_it_unchanged(kind: RequestType) -> None:
    assert status_after(NO_RESTRICTIONS, kind, None) is NO_RESTRICTIONS
    assert not changes_state(kind)
