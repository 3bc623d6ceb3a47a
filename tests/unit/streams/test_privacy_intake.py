"""Request intake and privacy configuration: normalised identifiers, clear refusals that
never quote a value, standing instructions parsed strictly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.identity import InvalidIdentifier
from processors.privacy import PrivacyRequestError, RequestType
from processors.pseudonym import Pseudonymiser
from streams.control.privacy.config import standing_instructions
from streams.control.privacy.intake import Intake, from_message, identifiers
from streams.errors import ContactflowError

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_identifiers_are_normalised_as_the_router_does() -> None:
    pairs = [("phone", "0471 12 34 56"), ("email", " Jane.Doe@Example.ORG "),
             ("social_handle", "facebook:JaneD"), ("customer_ref", "C-123")]  # fmt: skip
    found = identifiers(pairs)
    assert [(i.kind.value, i.value) for i in found][:2] == [
        ("phone", "+32471123456"), ("email", "jane.doe@example.org"),
    ]  # fmt: skip
    assert [i.kind.value for i in found] == ["phone", "email", "social_handle", "customer_ref"]


@pytest.mark.parametrize(
    ("pairs", "secret"),
    [([("phone", "12")], "12"), ([("email", "not-an-address")], "not-an-address"),
     ([("social_handle", "janed")], "janed"), ([("fax", "+3222222222")], "+3222222222")],
)  # fmt: skip
def test_a_bad_identifier_is_refused_without_echoing_it(
    pairs: list[tuple[str, str]], secret: str
) -> None:
    with pytest.raises((InvalidIdentifier, PrivacyRequestError)) as caught:
        identifiers(pairs)
    assert secret not in str(caught.value)


def test_a_request_needs_an_identifier() -> None:
    with pytest.raises(PrivacyRequestError, match="at least one identifier"):
        identifiers([])


def test_digests_match_the_subject_index_and_ids_are_minted_once() -> None:
    pseudonymiser = Pseudonymiser(b"k" * 32)
    intake = Intake("erasure", identifiers([("phone", "+32 471 12 34 56")]), "dpo", NOW)
    request_id, stamped = intake.with_id()
    assert request_id.startswith("dsr-")
    assert stamped.with_id()[0] == request_id
    ((kind, digest),) = stamped.digests(pseudonymiser)
    assert kind == "phone"
    assert digest == pseudonymiser.identifier_digest(stamped.identifiers[0])


def test_a_topic_request_becomes_an_intake() -> None:
    record = {"request_id": "dsr-7", "request_type": "objection", "purpose": "coaching",
              "identifiers": [{"kind": "email", "value": "A@B.be"}], "received_at": NOW,
              "verified_by": None, "submitted_by": "portal", "reason": None}  # fmt: skip
    intake = from_message(record)
    assert (intake.request_id, intake.purpose, intake.verified_by) == ("dsr-7", "coaching", None)
    assert intake.identifiers[0].value == "a@b.be"


def test_standing_instructions_are_request_types() -> None:
    assert standing_instructions("") == frozenset()
    assert standing_instructions("erasure,restriction") == {
        RequestType.ERASURE, RequestType.RESTRICTION,
    }  # fmt: skip
    with pytest.raises(ContactflowError, match="unknown request types"):
        standing_instructions("erasure,forget_me")
