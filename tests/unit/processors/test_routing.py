"""Which derived purposes a subject's tagged events must be kept out of."""

from __future__ import annotations

import pytest

from processors.routing import NO_RESTRICTIONS, SubjectStatus, excluded_purposes

DERIVED = frozenset({"reporting", "benchmarking"})


def test_no_objection_excludes_nothing() -> None:
    assert excluded_purposes(NO_RESTRICTIONS, DERIVED) == ()
    assert excluded_purposes(SubjectStatus(restricted=True), DERIVED) == ()


@pytest.mark.parametrize(
    ("objected", "excluded"),
    [
        ({"reporting"}, ("reporting",)),
        ({"coaching", "reporting"}, ("reporting",)),  # coaching is not derived: suppressed
        ({"coaching"}, ()),
        ({"reporting", "benchmarking", "direct_marketing"}, ("benchmarking", "reporting")),
    ],
)
def test_the_objected_derived_purposes_are_excluded_sorted(
    objected: set[str], excluded: tuple[str, ...]
) -> None:
    status = SubjectStatus(objected_purposes=frozenset(objected))
    assert excluded_purposes(status, DERIVED) == excluded


def test_a_policy_without_derived_purposes_excludes_nothing() -> None:
    status = SubjectStatus(objected_purposes=frozenset({"reporting"}))
    assert excluded_purposes(status, frozenset()) == ()
