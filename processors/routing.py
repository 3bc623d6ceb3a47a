"""Where a decoded contact event goes, decided from values only.

The router (streams.router) does the I/O; every decision it takes about one event is a
function here: which identifiers name the subject, whether the event time is plausible,
which topic receives the tagged event given the subject's privacy state, which derived
purposes the tagged event must be kept out of, and whether the event is a recording with
a retention deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from processors.identity import (
    Identifier,
    customer_reference,
    normalise_email,
    normalise_phone,
    qualify_handle,
)
from processors.policy import Attribution

EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)


# kind -> (recording kind, payload field holding the recording id, media_ref field or None)
RECORDING_KINDS: dict[str, tuple[str, str, str | None]] = {
    "recording_available": ("call_audio", "recording_id", "media_ref"),
    "transcript_available": ("chat_transcript", "transcript_id", None),
    "email_received": ("email_body", "message_id", None),
    "email_sent": ("email_body", "message_id", None),
}


class Route(StrEnum):
    CONTROLLER = "controller"  # the controller's processing topic
    RESTRICTED = "restricted"  # stored, flagged, not processed (GDPR Art. 18)
    SUPPRESSED = "suppressed"  # the subject objected to this purpose: not produced
    QUARANTINE = "quarantine"  # no policy rule: no controller guessed


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    """The privacy state of a subject as published on privacy.subject-state.v1."""

    restricted: bool = False
    objected_purposes: frozenset[str] = field(default_factory=frozenset)
    erased: bool = False
    suppressed_from_surveys: bool = False


NO_RESTRICTIONS = SubjectStatus()


@dataclass(frozen=True, slots=True)
class RecordingRef:
    recording_id: str
    recording_kind: str
    media_ref: str | None
    ended_at: datetime


def subject_identifiers(subject: dict[str, Any]) -> list[Identifier]:
    """The normalised identifiers of an envelope's `subject`; InvalidIdentifier if one is bad."""
    found: list[Identifier] = []
    if subject.get("phone") is not None:
        found.append(normalise_phone(subject["phone"]))
    if subject.get("email") is not None:
        found.append(normalise_email(subject["email"]))
    handle = subject.get("social_handle")
    if handle is not None:
        found.append(qualify_handle(handle["platform"], handle["handle"]))
    if subject.get("customer_ref") is not None:
        found.append(customer_reference(subject["customer_ref"]))
    return found


def implausible_time(occurred_at: datetime, now: datetime) -> str | None:
    """Why an event time cannot be right (before 2000, or in the future), else None."""
    if occurred_at < EARLIEST_EVENT:
        return "occurred_at is before 2000-01-01"
    if occurred_at > now + MAX_CLOCK_SKEW:
        return "occurred_at is more than a day in the future"
    return None


def choose_route(attribution: Attribution | None, status: SubjectStatus) -> Route:
    """Quarantine without a rule; restriction outranks processing; objections suppress."""
    if attribution is None:
        return Route.QUARANTINE
    if status.restricted:
        return Route.RESTRICTED
    if attribution.purpose in status.objected_purposes:
        return Route.SUPPRESSED
    return Route.CONTROLLER


def excluded_purposes(status: SubjectStatus, derived: frozenset[str]) -> tuple[str, ...]:
    """The derived purposes (`derived`: the policy's, e.g. reporting) a subject's events
    must not be used for: those it objected to (GDPR Art. 21), sorted. Unlike an objection
    to a purpose events are produced for (`choose_route` suppresses those), the event
    still reaches its controller's topic, marked."""
    objected = status.objected_purposes
    if not objected:
        return ()
    return tuple(sorted(objected & derived))


def recording_of(kind: str, payload: Any, occurred_at: datetime) -> RecordingRef | None:
    """The recording an event makes available (call audio, transcript, e-mail body), if any."""
    spec = RECORDING_KINDS.get(kind)
    if spec is None:
        return None
    recording_kind, id_field, media_field = spec
    body = payload[1] if isinstance(payload, tuple) else payload
    ended_at = body.get("ended_at") or occurred_at
    media_ref = body.get(media_field) if media_field else None
    return RecordingRef(str(body[id_field]), recording_kind, media_ref, ended_at)


def retain_until(ended_at: datetime, period_days: int | None) -> datetime | None:
    """End of the standard retention period, or None when the class keeps no recordings."""
    if period_days is None:
        return None
    return ended_at + timedelta(days=period_days)
