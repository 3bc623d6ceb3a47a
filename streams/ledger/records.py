"""Plain values the ledger repositories return; callers never hold ORM objects."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from processors.consumers import Command as Command
from processors.identity import IdentifierKind as IdentifierKind
from processors.privacy import Decision as Decision
from processors.privacy import DecisionSource as DecisionSource
from processors.privacy import RequestState as RequestState
from processors.privacy import RequestType as RequestType
from processors.privacy_commands import Outcome as Outcome
from streams.ledger.columns import require_aware
from streams.ledger.errors import InvalidIdentifierError, InvalidRetentionValueError

GENESIS_HASH = "0" * 64
"""prev_hash of the first audit entry."""

_E = TypeVar("_E", bound=StrEnum)
_D = TypeVar("_D")
_HEX = re.compile(r"[0-9a-f]{32,128}")
_PSEUDONYM = re.compile(r"(?:[a-z]{1,8}-)?[0-9a-f]{32,120}")
# The same forms, one a line: a batch of thousands is checked by one regex pass.
_HEX_LINES = re.compile(r"(?:[0-9a-f]{32,128}\n)*")
_PSEUDONYM_LINES = re.compile(r"(?:(?:[a-z]{1,8}-)?[0-9a-f]{32,120}\n)*")


def require_hex(value: str, what: str) -> str:
    """Return `value` if it is lowercase hex of 32-128 chars; refuse anything else.

    This is the guard that keeps raw identifiers (numbers, addresses, handles) out of
    the subject index: digests are hex. The message never echoes the value.
    """
    if not isinstance(value, str) or _HEX.fullmatch(value) is None:
        raise InvalidIdentifierError(f"{what} must be lowercase hex of 32-128 characters")
    return value


def require_pseudonym(value: str) -> str:
    """Return `value` if it looks like a pseudonym: hex, optionally after a short label
    such as `s-` (processors.pseudonym's form). The message never echoes the value."""
    if not isinstance(value, str) or _PSEUDONYM.fullmatch(value) is None:
        raise InvalidIdentifierError(
            "pseudonym must be lowercase hex (32-120 chars), optionally prefixed like 's-'"
        )
    return value


def require_all_hex(values: Iterable[str], what: str) -> None:
    """`require_hex` for many values at once (the router's batches)."""
    if not _all_match(_HEX_LINES, values):
        raise InvalidIdentifierError(f"{what} must be lowercase hex of 32-128 characters")


def require_all_pseudonyms(values: Iterable[str]) -> None:
    """`require_pseudonym` for many values at once (the router's batches)."""
    if not _all_match(_PSEUDONYM_LINES, values):
        require_pseudonym("")  # raises with the one message


def _all_match(lines: re.Pattern[str], values: Iterable[str]) -> bool:
    items = list(values)
    try:
        joined = "\n".join(items)
    except TypeError:  # a value that is not a string
        return False
    if joined.count("\n") != len(items) - 1:  # a value holding a line break of its own
        return not items
    return not items or lines.fullmatch(joined + "\n") is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A vault entry without its key material."""

    key_id: str
    subject_pseudonym: str
    algorithm: str
    created_at: datetime
    shredded_at: datetime | None

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log entry as stored, hash chain included."""

    id: int
    at: datetime
    actor: str
    action: str
    request_id: str | None
    subject_pseudonym: str | None
    details: Mapping[str, Any]
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Where the audit chain breaks and why (ids and hashes only)."""

    entry_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of `verify_chain`: ok is true only when no problem was found."""

    entries_checked: int
    head_hash: str | None
    problems: tuple[ChainProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


CONTROLLERS = ("ORES", "COMNEXIO")
"""Parties a recording can belong to (the Avro `Controller` symbols)."""


class RecordingKind(StrEnum):
    CALL_AUDIO = "call_audio"
    CHAT_TRANSCRIPT = "chat_transcript"
    EMAIL_BODY = "email_body"


class RecordingState(StrEnum):
    STANDARD = "standard"  # expires at retain_until
    HELD = "held"  # kept under at least one legal hold
    EXPIRED = "expired"  # past retention: the recording store deletes the media


class HoldScope(StrEnum):
    RECORDING = "recording"  # target is a recording id
    CONTACT = "contact"  # target is a contact id
    SUBJECT = "subject"  # target is a subject pseudonym (aliases included)


class HoldReason(StrEnum):
    COMPLAINT = "complaint"
    FRAUD = "fraud"
    DISPUTE = "dispute"
    LITIGATION = "litigation"
    AUTHORITY_REQUEST = "authority_request"


class HistoryAction(StrEnum):
    REGISTERED = "registered"
    HELD = "held"
    RELEASED = "released"
    EXPIRED = "expired"
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class NewRecording:
    """A recording to register; retain_until is the end of its standard period."""

    recording_id: str
    contact_id: str
    subject_pseudonym: str
    controller: str
    purpose: str
    channel: str
    recording_kind: str
    ended_at: datetime
    retain_until: datetime
    policy_version: str
    media_ref: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    """A recording's retention row as stored."""

    recording_id: str
    contact_id: str
    subject_pseudonym: str
    controller: str
    purpose: str
    channel: str
    recording_kind: str
    media_ref: str | None
    ended_at: datetime
    retain_until: datetime
    state: str
    policy_version: str
    registered_at: datetime
    updated_at: datetime
    expired_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewHold:
    """A legal hold to place. `reference` is a case or ticket id, never personal data."""

    hold_id: str
    scope: str
    target: str
    reason: str
    reference: str
    placed_by: str
    source: str = "manual"


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A legal hold as stored; active until released (a release is final)."""

    hold_id: str
    scope: str
    target: str
    reason: str
    reference: str
    source: str
    placed_by: str
    placed_at: datetime
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One step in a recording's retention history (append-only)."""

    id: int
    recording_id: str
    at: datetime
    action: str
    hold_id: str | None
    retain_until: datetime | None
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RetentionCount:
    """One cell of a retention report: how many recordings, for one measure and group.

    measure is "due_soon", "held" or "expired"; reason is the hold reason for "held"
    (a recording held for two reasons counts under each), None otherwise.
    """

    measure: str
    reason: str | None
    controller: str
    channel: str
    count: int


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Retention counts at `as_of`, one row per (measure, reason, controller, channel)."""

    as_of: datetime
    due_window: timedelta
    rows: tuple[RetentionCount, ...] = field(default=())

    def total(self, measure: str, reason: str | None = None) -> int:
        """Sum of a measure's rows, optionally for one hold reason only."""
        return sum(
            row.count
            for row in self.rows
            if row.measure == measure and (reason is None or row.reason == reason)
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form: ISO instants, the window in seconds, rows as plain dicts."""
        return {
            "as_of": self.as_of.isoformat(),
            "due_window_seconds": int(self.due_window.total_seconds()),
            "rows": [
                {
                    "measure": row.measure,
                    "reason": row.reason,
                    "controller": row.controller,
                    "channel": row.channel,
                    "count": row.count,
                }
                for row in self.rows
            ],
        }


@dataclass(frozen=True, slots=True)
class RequestEventRecord:
    """One step in a privacy request's history (append-only): who, when, from which state
    to which, about which command if any; details hold codes and counts only."""

    id: int
    request_id: str
    at: datetime
    actor: str
    event: str
    from_state: str | None
    state: str
    command_id: str | None
    details: Mapping[str, Any]


def require_text(value: Any, name: str, limit: int) -> str:
    """Return `value` if it is a non-blank string of at most `limit` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidRetentionValueError(f"{name} must be a non-blank string of 1-{limit} chars")
    return value


def require_choice(kind: type[_E], value: Any, name: str) -> _E:
    """Return `value` as a member of `kind`; the message lists the allowed values only."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidRetentionValueError(f"{name} must be one of {', '.join(kind)}") from None


def require_hold_target(scope: HoldScope, target: Any) -> str:
    """A subject target must be a pseudonym (never a raw identifier); others are ids."""
    if scope == HoldScope.SUBJECT:
        return require_pseudonym(target)
    return require_text(target, f"{scope.value} target", 200)


def require_valid_recording(new: NewRecording) -> NewRecording:
    """`new` with codes as plain strings and instants in UTC, or InvalidRetentionValueError
    (NaiveDatetimeError for a naive instant); messages never echo the values."""
    if new.controller not in CONTROLLERS:
        raise InvalidRetentionValueError(f"controller must be one of {', '.join(CONTROLLERS)}")
    if new.media_ref is not None:
        require_text(new.media_ref, "media_ref", 1000)
    for name, limit in (("recording_id", 200), ("contact_id", 200), ("purpose", 64),
                        ("channel", 16), ("policy_version", 64)):  # fmt: skip
        require_text(getattr(new, name), name, limit)
    require_pseudonym(new.subject_pseudonym)
    kind = require_choice(RecordingKind, new.recording_kind, "recording_kind")
    ended_at = require_aware(new.ended_at, "ended_at")
    retain_until = require_aware(new.retain_until, "retain_until")
    if retain_until < ended_at:
        raise InvalidRetentionValueError("retain_until must not be before ended_at")
    return replace(new, recording_kind=kind.value, ended_at=ended_at, retain_until=retain_until)


def require_valid_hold(new: NewHold) -> NewHold:
    """`new` with its codes as plain strings, or InvalidRetentionValueError."""
    scope = require_choice(HoldScope, new.scope, "scope")
    require_hold_target(scope, new.target)
    reason = require_choice(HoldReason, new.reason, "reason")
    for name, limit in (("hold_id", 200), ("reference", 200), ("source", 32),
                        ("placed_by", 128)):  # fmt: skip
        require_text(getattr(new, name), name, limit)
    return replace(new, scope=scope.value, reason=reason.value)


def field_values(obj: object, record: type[Any]) -> dict[str, Any]:
    """The attributes of `obj` named like the fields of dataclass `record`."""
    return {f.name: getattr(obj, f.name) for f in fields(record)}


def from_attributes(record: type[_D], obj: object) -> _D:
    """Build dataclass `record` from any object with attributes of the same names (a row)."""
    return record(**field_values(obj, record))
