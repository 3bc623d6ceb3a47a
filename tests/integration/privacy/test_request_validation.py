"""A request arriving on privacy.requests.v1 with values the CLI refuses is dead-lettered
with its reason code and bytes, the way other bad input is: nothing enters the ledger, no
id is made up, and the reason names the field and the rule, never the value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flow import decoded, publish
from people import EMAIL, PHONE
from sqlalchemy import select

from streams.bootstrap import Container
from streams.control.privacy.catchup import apply_privacy_topics
from streams.control.privacy.service import PrivacyService
from streams.ledger import UnknownRequestError, session_factory
from streams.ledger.models import PrivacyRequestRow

pytestmark = pytest.mark.integration
REQUESTS = "privacy.requests.v1"
NOW = datetime.now(UTC)
HANDLE = "myspace:someone"


def _request(request_id: str, request_type: str = "erasure", **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": request_id, "request_type": request_type,
        "identifiers": [{"kind": "phone", "value": PHONE}, {"kind": "email", "value": EMAIL}],
        "purpose": None, "received_at": NOW, "verified_by": "id_card_copy",
        "submitted_by": "intake-portal", "reason": None, **overrides,
    }  # fmt: skip


BAD = {
    "dsr-bad-1970": ({"received_at": datetime(1970, 1, 1, tzinfo=UTC)},
                     "RequestRefused", "received_at"),
    "dsr-bad-future": ({"received_at": NOW + timedelta(days=2)}, "RequestRefused",
                       "received_at"),
    "dsr-bad-platform": ({"identifiers": [{"kind": "social_handle", "value": HANDLE}]},
                         "InvalidIdentifier", "unknown platform"),
    "dsr-bad-purpose": ({"request_type": "objection", "purpose": "world_domination"},
                        "RequestRefused", "purpose"),
    "": ({}, "RequestRefused", "request_id"),
    "dsr-bad-reason": ({"request_type": "restriction", "reason": "r" * 500_000},
                       "RequestRefused", "reason"),
    "dsr-bad-identifiers": (
        {"identifiers": [{"kind": "customer_ref", "value": f"C-{i}"} for i in range(10_000)]},
        "RequestRefused", "identifiers"),
}  # fmt: skip


def test_bad_requests_on_the_topic_are_dead_lettered_with_a_reason(  # type: ignore[no-untyped-def]
    container: Container, privacy: PrivacyService
) -> None:
    for request_id, (overrides, _, _) in BAD.items():
        publish(container, REQUESTS, "PrivacyRequest", request_id or "empty",
                _request(request_id, **overrides))  # fmt: skip
    publish(container, REQUESTS, "PrivacyRequest", "dsr-good", _request("dsr-good"))

    drained = apply_privacy_topics(container, privacy, NOW + timedelta(minutes=1))
    assert (drained.applied[REQUESTS], drained.dead_lettered) == (1, len(BAD))

    letters = [r for _, r in decoded(container, "contact.deadletter.v1")
               if r["source_topic"] == container.topics.name(REQUESTS)]  # fmt: skip
    assert len(letters) == len(BAD)
    by_key = {(r["original_key"] or b"").decode(): r for r in letters}
    for request_id, (_, code, words) in BAD.items():
        letter = by_key[request_id or "empty"]
        assert (letter["stage"], letter["reason_code"]) == ("privacy", code), letter["reason"]
        assert words in letter["reason"]
        for secret in (PHONE, EMAIL, HANDLE, "someone", "world_domination", "rrrr", "C-1"):
            assert secret not in letter["reason"]

    assert privacy.get("dsr-good").request_id == "dsr-good"
    for request_id in BAD:
        if request_id:
            with pytest.raises(UnknownRequestError):
                privacy.get(request_id)
    with session_factory(container.ledger_engine)() as session:
        every = session.scalars(select(PrivacyRequestRow.request_id)).all()
    assert every == ["dsr-good"], "no id made up for the empty one"
