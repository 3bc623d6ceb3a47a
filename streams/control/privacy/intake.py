"""What a data-subject request arrives with, from the CLI or `privacy.requests.v1`.

Identifiers are normalised exactly as the router normalises them and leave this module
only as keyed digests: the ledger never stores the raw values, and errors name the kind
of identifier, never its value. What may be taken in (receipt time, purposes, platforms,
a request id, sizes) is `processors.request_intake`: an `Intake` checks what it holds
alone, `checked` what needs the clock and the policy; the CLI calls it before connecting,
`PrivacyService.submit` again for every path.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from processors.identity import (
    Identifier,
    customer_reference,
    normalise_email,
    normalise_phone,
    qualify_handle,
)
from processors.privacy import PrivacyRequestError
from processors.pseudonym import Pseudonymiser
from processors.request_intake import (
    check_identifier_count,
    check_purpose,
    check_reason,
    check_receipt,
    check_request_id,
)

KINDS = ("phone", "email", "social_handle", "customer_ref")


@dataclass(frozen=True, slots=True)
class Intake:
    """A request as submitted: identifiers normalised, nothing stored yet."""

    request_type: str
    identifiers: tuple[Identifier, ...]
    submitted_by: str
    received_at: datetime
    verified_by: str | None = None
    purpose: str | None = None
    reason: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        check_identifier_count(len(self.identifiers))
        check_reason(self.reason)
        if self.request_id is not None:  # given (the topic's records always give one)
            check_request_id(self.request_id)

    def with_id(self) -> tuple[str, Intake]:
        """The request id (a new one when none was given) and the intake carrying it."""
        request_id = f"dsr-{uuid.uuid4().hex[:16]}" if self.request_id is None else self.request_id
        return request_id, Intake(**{**_fields(self), "request_id": request_id})

    def digests(self, pseudonymiser: Pseudonymiser) -> list[tuple[str, str]]:
        """(kind, keyed digest) of each identifier, as the subject index holds them."""
        return [(i.kind.value, pseudonymiser.identifier_digest(i)) for i in self.identifiers]


def identifier(kind: str, value: str) -> Identifier:
    """Normalise one identifier; a social handle is written `<platform>:<handle>`."""
    if kind == "phone":
        return normalise_phone(value)
    if kind == "email":
        return normalise_email(value)
    if kind == "customer_ref":
        return customer_reference(value)
    if kind == "social_handle":
        platform, _, handle = value.partition(":")
        if not handle:
            raise PrivacyRequestError("a social handle is written <platform>:<handle>")
        return qualify_handle(platform, handle)
    raise PrivacyRequestError(f"identifier kind must be one of {', '.join(KINDS)}")


def identifiers(pairs: Sequence[tuple[str, str]]) -> tuple[Identifier, ...]:
    """Normalised identifiers; at least one is required, at most MAX_IDENTIFIERS."""
    if not pairs:
        raise PrivacyRequestError("a request needs at least one identifier of the person")
    check_identifier_count(len(pairs))
    return tuple(identifier(kind, value) for kind, value in pairs)


def checked(intake: Intake, now: datetime, purposes: Mapping[str, frozenset[str]]) -> Intake:
    """`intake` once its receipt time and purpose pass (`RequestRefused` otherwise), the
    receipt time a clock slightly ahead gave taken as `now`."""
    check_purpose(intake.request_type, intake.purpose, purposes)
    return replace(intake, received_at=check_receipt(intake.received_at, now))


def from_message(record: Mapping[str, Any]) -> Intake:
    """A decoded `PrivacyRequest` record from privacy.requests.v1: its id is required."""
    check_request_id(record["request_id"])
    check_reason(record.get("reason"))
    check_identifier_count(len(record["identifiers"]))
    pairs = [(item["kind"], item["value"]) for item in record["identifiers"]]
    return Intake(
        request_type=record["request_type"],
        identifiers=identifiers(pairs),
        submitted_by=record["submitted_by"],
        received_at=record["received_at"],
        verified_by=record.get("verified_by"),
        purpose=record.get("purpose"),
        reason=record.get("reason"),
        request_id=record["request_id"],
    )


def _fields(intake: Intake) -> dict[str, Any]:
    return {name: getattr(intake, name) for name in Intake.__slots__}
