"""ORM tables of the ledger. Only digests, pseudonyms, wrapped keys, ids and codes live here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column

from streams.ledger.columns import UTCDateTime
from streams.ledger.errors import AppendOnlyViolationError
from streams.ledger.records import (
    CONTROLLERS,
    Command,
    Decision,
    DecisionSource,
    HistoryAction,
    HoldReason,
    HoldScope,
    IdentifierKind,
    Outcome,
    RecordingKind,
    RecordingState,
    RequestState,
    RequestType,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PSEUDONYM = String(128)
IDENTIFIER_KINDS = tuple(kind.value for kind in IdentifierKind)
RECORD_ID = String(200)
ACTOR = String(128)
REQUEST_ID = String(128)
REQUEST_FK = "privacy_requests.request_id"
REASON = String(500)


def _one_of(column: str, values: Iterable[str]) -> CheckConstraint:
    """CHECK column IN (values), named after the column (ck_<table>_<column>)."""
    return CheckConstraint(
        "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values)), name=column
    )


class Base(DeclarativeBase):
    """Declarative base; its metadata is what the migrations must reproduce exactly."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Subject(Base):
    """A data subject known only by its pseudonym; canonical after any merge."""

    __tablename__ = "subjects"

    subject_pseudonym: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]


class SubjectIdentifier(Base):
    """The subject index: keyed HMAC digest of a normalised identifier -> subject."""

    __tablename__ = "subject_identifiers"
    __table_args__ = (
        CheckConstraint(
            "identifier_kind IN ({})".format(", ".join(f"'{k}'" for k in IDENTIFIER_KINDS)),
            name="identifier_kind",
        ),
    )

    identifier_digest: Mapped[str] = mapped_column(String(128), primary_key=True)
    identifier_kind: Mapped[str] = mapped_column(String(16))
    subject_pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("subjects.subject_pseudonym"), index=True
    )
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class SubjectAlias(Base):
    """A pseudonym retired by a merge, still resolving to the surviving subject."""

    __tablename__ = "subject_aliases"

    alias_pseudonym: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    canonical_pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("subjects.subject_pseudonym"), index=True
    )
    merged_at: Mapped[datetime]


class SubjectKey(Base):
    """A subject's data key, wrapped by the master key; NULL bytes once shredded."""

    __tablename__ = "subject_keys"
    __table_args__ = (
        CheckConstraint(
            "(wrapped_key IS NULL AND shredded_at IS NOT NULL)"
            " OR (wrapped_key IS NOT NULL AND shredded_at IS NULL)",
            name="shredded_means_no_key",
        ),
    )

    key_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject_pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("subjects.subject_pseudonym"), index=True
    )
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary())
    algorithm: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    shredded_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Append-only, hash-chained evidence. prev_hash is unique, so the chain cannot fork."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_request_id", "action", "request_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    subject_pseudonym: Mapped[str | None] = mapped_column(PSEUDONYM, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON())
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class Recording(Base):
    """A recording's retention schedule: standard until retain_until, held, or expired."""

    __tablename__ = "recordings"
    __table_args__ = (
        _one_of("controller", CONTROLLERS),
        _one_of("recording_kind", tuple(RecordingKind)),
        _one_of("state", tuple(RecordingState)),
        CheckConstraint(
            "(state = 'expired') = (expired_at IS NOT NULL)", name="expired_means_expired_at"
        ),
        Index("ix_recordings_state_retain_until", "state", "retain_until"),
    )

    recording_id: Mapped[str] = mapped_column(RECORD_ID, primary_key=True)
    contact_id: Mapped[str] = mapped_column(RECORD_ID, index=True)
    subject_pseudonym: Mapped[str] = mapped_column(PSEUDONYM, index=True)
    controller: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    recording_kind: Mapped[str] = mapped_column(String(32))
    media_ref: Mapped[str | None] = mapped_column(String(1000))
    ended_at: Mapped[datetime]
    retain_until: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expired_at: Mapped[datetime | None]


class Hold(Base):
    """A legal hold on a recording, a contact or a subject; released once, never deleted."""

    __tablename__ = "holds"
    __table_args__ = (
        _one_of("scope", tuple(HoldScope)),
        _one_of("reason", tuple(HoldReason)),
        CheckConstraint(
            "(released_at IS NULL AND released_by IS NULL AND release_reason IS NULL)"
            " OR (released_at IS NOT NULL AND released_by IS NOT NULL"
            " AND release_reason IS NOT NULL)",
            name="release_is_complete",
        ),
        Index("ix_holds_scope_target", "scope", "target"),
        Index("ix_holds_target_released_at", "target", "released_at"),
    )

    hold_id: Mapped[str] = mapped_column(RECORD_ID, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(RECORD_ID)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))
    placed_by: Mapped[str] = mapped_column(ACTOR)
    placed_at: Mapped[datetime]
    released_at: Mapped[datetime | None] = mapped_column(index=True)
    released_by: Mapped[str | None] = mapped_column(ACTOR)
    release_reason: Mapped[str | None] = mapped_column(String(200))


class RecordingHistoryEntry(Base):
    """Append-only history of a recording's retention: registered, held, released, ..."""

    __tablename__ = "recording_history"
    __table_args__ = (_one_of("action", tuple(HistoryAction)), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    recording_id: Mapped[str] = mapped_column(
        RECORD_ID, ForeignKey("recordings.recording_id"), index=True
    )
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    hold_id: Mapped[str | None] = mapped_column(RECORD_ID, ForeignKey("holds.hold_id"))
    retain_until: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON())


class PrivacyRequestRow(Base):
    """A data-subject request: state, deadlines, the controller's decision. No identifier:
    subjects as pseudonyms, identifiers as keyed digests (request_identifiers)."""

    __tablename__ = "privacy_requests"
    __table_args__ = (
        _one_of("request_type", tuple(RequestType)),
        _one_of("state", tuple(RequestState)),
        _one_of("decision", tuple(Decision)),
        _one_of("decision_source", tuple(DecisionSource)),
        CheckConstraint("(verified_at IS NULL) = (verified_by IS NULL)", name="verified"),
        CheckConstraint(
            "(decision IS NULL) = (decision_source IS NULL)"
            " AND (decision IS NULL) = (decided_at IS NULL)"
            " AND (decision IS NULL OR decision <> 'refuse' OR decision_reason IS NOT NULL)",
            name="decision_is_complete",
        ),
        CheckConstraint(
            "extension_months BETWEEN 0 AND 2"
            " AND (extension_months = 0) = (extended_until IS NULL)"
            " AND (extension_months = 0) = (extension_reason IS NULL)",
            name="extension_has_reason",
        ),
        CheckConstraint(
            "(state IN ('completed', 'refused', 'rejected')) = (closed_at IS NOT NULL)",
            name="closed_means_closed_at",
        ),
        Index("ix_privacy_requests_state_due_at", "state", "due_at"),
    )

    request_id: Mapped[str] = mapped_column(REQUEST_ID, primary_key=True)
    request_type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]
    submitted_by: Mapped[str] = mapped_column(ACTOR)
    due_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    purpose: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None]
    verified_by: Mapped[str | None] = mapped_column(String(64))
    subject_pseudonyms: Mapped[list[str]] = mapped_column(JSON())
    controllers: Mapped[list[str]] = mapped_column(JSON())
    resolved_at: Mapped[datetime | None]
    forwarded_at: Mapped[datetime | None]
    decision: Mapped[str | None] = mapped_column(String(16))
    decision_source: Mapped[str | None] = mapped_column(String(32))
    decision_reason: Mapped[str | None] = mapped_column(REASON)
    decided_by: Mapped[str | None] = mapped_column(ACTOR)
    decided_at: Mapped[datetime | None]
    extension_months: Mapped[int] = mapped_column(Integer())
    extended_until: Mapped[datetime | None]
    extension_reason: Mapped[str | None] = mapped_column(REASON)
    escalated_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    executed_for: Mapped[list[str]] = mapped_column(JSON(), server_default=text("'[]'"))


class RequestIdentifier(Base):
    """An identifier the requester gave, as its keyed digest only (never the value)."""

    __tablename__ = "request_identifiers"
    __table_args__ = (_one_of("identifier_kind", IDENTIFIER_KINDS),)

    request_id: Mapped[str] = mapped_column(REQUEST_ID, ForeignKey(REQUEST_FK), primary_key=True)
    identifier_digest: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    identifier_kind: Mapped[str] = mapped_column(String(16))


class RequestCommand(Base):
    """A command to one consumer for one subject and controller; latest attempt, answer."""

    __tablename__ = "request_commands"
    __table_args__ = (
        _one_of("command", tuple(Command)),
        _one_of("controller", CONTROLLERS),
        _one_of("outcome", tuple(Outcome)),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint(
            "(outcome IS NULL) = (answered_at IS NULL)"
            " AND (outcome IS NULL OR outcome <> 'failed' OR reason IS NOT NULL)",
            name="answer_is_complete",
        ),
        Index("ix_request_commands_outcome_escalated_at", "outcome", "escalated_at"),
    )

    command_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(REQUEST_ID, ForeignKey(REQUEST_FK), index=True)
    consumer: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(32))
    subject_pseudonym: Mapped[str] = mapped_column(PSEUDONYM)
    controller: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime]
    answer_by: Mapped[datetime] = mapped_column(index=True)
    attempt: Mapped[int] = mapped_column(Integer())
    outcome: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(REASON)
    answered_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]


class RequestEvent(Base):
    """Append-only history of a request: every transition, command issued or answered."""

    __tablename__ = "request_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(REQUEST_ID, ForeignKey(REQUEST_FK), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(ACTOR)
    event: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    command_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("request_commands.command_id")
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSON())


@event.listens_for(AuditEntry, "before_update")
def _refuse_audit_update(mapper: Mapper[Any], connection: Connection, target: AuditEntry) -> None:
    changed = [attr.key for attr in inspect(target).attrs if attr.history.has_changes()]
    if changed:
        raise AppendOnlyViolationError(
            f"audit_log is append-only: refusing to update entry {target.id} "
            f"(changed: {', '.join(sorted(changed))})"
        )


@event.listens_for(AuditEntry, "before_delete")
def _refuse_audit_delete(mapper: Mapper[Any], connection: Connection, target: AuditEntry) -> None:
    raise AppendOnlyViolationError(
        f"audit_log is append-only: refusing to delete entry {target.id}"
    )


class SubjectFootprint(Base):
    """Where a subject has data: a row per (subject, controller, channel), written by the
    router before it first routes such an event. Privacy requests resolve against it."""

    __tablename__ = "subject_footprints"
    __table_args__ = (_one_of("controller", CONTROLLERS),)

    subject_pseudonym: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    controller: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_seen_at: Mapped[datetime]


class SubjectPrivacyState(Base):
    """A subject's current privacy state, as published on privacy.subject-state.v1."""

    __tablename__ = "subject_privacy_states"

    subject_pseudonym: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    restricted: Mapped[bool]
    objected_purposes: Mapped[list[str]] = mapped_column(JSON())
    suppressed_from_surveys: Mapped[bool]
    erased: Mapped[bool]
    updated_at: Mapped[datetime]
    request_id: Mapped[str | None] = mapped_column(REQUEST_ID)


@event.listens_for(RecordingHistoryEntry, "before_update")
def _refuse_history_update(
    mapper: Mapper[Any], connection: Connection, target: RecordingHistoryEntry
) -> None:
    if any(attr.history.has_changes() for attr in inspect(target).attrs):
        raise AppendOnlyViolationError(
            f"recording_history is append-only: refusing to update entry {target.id}"
        )


@event.listens_for(RecordingHistoryEntry, "before_delete")
def _refuse_history_delete(
    mapper: Mapper[Any], connection: Connection, target: RecordingHistoryEntry
) -> None:
    raise AppendOnlyViolationError(
        f"recording_history is append-only: refusing to delete entry {target.id}"
    )


@event.listens_for(RequestEvent, "before_update")
def _keep_event(mapper: Mapper[Any], connection: Connection, target: RequestEvent) -> None:
    if any(attr.history.has_changes() for attr in inspect(target).attrs):
        raise AppendOnlyViolationError(f"request_events is append-only: not updating {target.id}")


@event.listens_for(RequestEvent, "before_delete")
def _keep_events(mapper: Mapper[Any], connection: Connection, target: RequestEvent) -> None:
    raise AppendOnlyViolationError(f"request_events is append-only: not deleting {target.id}")
