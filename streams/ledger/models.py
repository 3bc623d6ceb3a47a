"""ORM tables of the ledger. Only digests, pseudonyms, wrapped keys and ids live here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    event,
    inspect,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column

from streams.ledger.columns import UTCDateTime
from streams.ledger.errors import AppendOnlyViolationError
from streams.ledger.records import IdentifierKind

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PSEUDONYM = String(128)
IDENTIFIER_KINDS = tuple(kind.value for kind in IdentifierKind)


class Base(DeclarativeBase):
    """Declarative base; its metadata is what migration 0001 must reproduce exactly."""

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
    __table_args__ = {"sqlite_autoincrement": True}

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
