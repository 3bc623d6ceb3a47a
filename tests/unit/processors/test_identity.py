from __future__ import annotations

import pytest

from processors.identity import (
    IdentifierKind,
    InvalidIdentifier,
    customer_reference,
    normalise_email,
    normalise_phone,
    qualify_handle,
)


@pytest.mark.parametrize(
    "raw", ["0471 12 34 56", "+32 471 12 34 56", "0032471123456", "00 32 (0)471 12.34.56"]
)
def test_belgian_mobile_spellings_are_one_number(raw: str) -> None:
    assert normalise_phone(raw).value == "+32471123456"


def test_landline_with_zone_prefix_and_foreign_number() -> None:
    assert normalise_phone("071 12 34 56").value == "+3271123456"
    assert normalise_phone("087 59 12 34").value == "+3287591234"  # Eupen zone
    assert normalise_phone("+33 6 12 34 56 78").value == "+33612345678"


@pytest.mark.parametrize("raw", ["", "abc", "12", "0471", "+32471123456789", "x" * 50])
def test_unparseable_or_impossible_numbers_are_refused_without_the_value(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalise_phone(raw)
    assert caught.value.kind is IdentifierKind.PHONE
    if raw:
        assert raw not in str(caught.value)


def test_email_is_trimmed_and_casefolded() -> None:
    assert normalise_email("  Marie.Dupont@Example.ORG ").value == "marie.dupont@example.org"


@pytest.mark.parametrize("raw", ["no-at-sign", "a@b", "two@@example.org", "sp ace@example.org"])
def test_bad_email_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid email: not an e-mail address"):
        normalise_email(raw)


def test_handles_are_qualified_by_platform() -> None:
    assert qualify_handle("facebook", "@Marie.Dupont").value == "facebook:marie.dupont"
    assert qualify_handle("x", "marie_d").value != qualify_handle("instagram", "marie_d").value
    with pytest.raises(InvalidIdentifier):
        qualify_handle("x", "has spaces")


def test_customer_reference_is_kept_as_given() -> None:
    assert customer_reference(" ORES-Cust-0042 ").value == "ORES-Cust-0042"
    with pytest.raises(InvalidIdentifier):
        customer_reference("   ")
