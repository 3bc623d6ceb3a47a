"""The per-subject key vault. It holds only wrapped keys; shredding destroys them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, Engine, select, text, update
from sqlalchemy.orm import Session

from streams.ledger.columns import require_aware
from streams.ledger.errors import (
    DuplicateKeyError,
    LedgerError,
    SubjectErasedError,
    UnknownKeyError,
    UnknownSubjectError,
)
from streams.ledger.models import Subject, SubjectKey
from streams.ledger.records import KeyRecord
from streams.ledger.subjects import canonical_pseudonym

_KEY_ID_MAX = 128


class KeyVault:
    """Stores and shreds wrapped data keys within the caller's Session (flushes, no commit).

    Subjects are resolved through aliases, so a key put for a retired pseudonym lands on
    the surviving subject and is shredded with it.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def put(
        self,
        key_id: str,
        subject: str,
        wrapped_key: bytes,
        algorithm: str,
        now: datetime,
    ) -> KeyRecord:
        """Store a new wrapped key for `subject`; key ids are never reused, even shredded."""
        now = require_aware(now)
        _check_key_id(key_id)
        if not wrapped_key:
            raise LedgerError("wrapped_key must be non-empty bytes")
        if not algorithm or len(algorithm) > 32:
            raise LedgerError("algorithm must be a name of 1-32 characters")
        owner = self._live_subject(subject)
        if self._session.get(SubjectKey, key_id) is not None:
            raise DuplicateKeyError(key_id)
        row = SubjectKey(
            key_id=key_id,
            subject_pseudonym=owner,
            wrapped_key=bytes(wrapped_key),
            algorithm=algorithm,
            created_at=now,
            shredded_at=None,
        )
        self._session.add(row)
        self._session.flush()
        return _record(row)

    def get(self, key_id: str) -> bytes | None:
        """The wrapped key, or None once shredded. Raises UnknownKeyError if never stored."""
        _check_key_id(key_id)
        row = self._session.get(SubjectKey, key_id)
        if row is None:
            raise UnknownKeyError(key_id)
        return row.wrapped_key

    def keys_for(self, subject: str) -> list[KeyRecord]:
        """Every key of the subject (shredded ones included), oldest first, without bytes."""
        canonical = canonical_pseudonym(self._session, subject)
        if canonical is None:
            return []
        rows = self._session.scalars(
            select(SubjectKey)
            .where(SubjectKey.subject_pseudonym == canonical)
            .order_by(SubjectKey.created_at, SubjectKey.key_id)
        )
        return [_record(row) for row in rows]

    def shred_subject(self, subject: str, now: datetime) -> int:
        """Destroy every live key of the subject; returns how many were shredded now.

        The row keeps its id and dates as evidence; the key bytes are set to NULL in the
        same statement that stamps shredded_at. See `reclaim_shredded_storage` for the
        copies a database engine may still hold in free pages or logs.
        """
        now = require_aware(now)
        canonical = canonical_pseudonym(self._session, subject)
        if canonical is None:
            raise UnknownSubjectError(subject)
        result = self._session.execute(
            update(SubjectKey)
            .where(SubjectKey.subject_pseudonym == canonical, SubjectKey.shredded_at.is_(None))
            .values(wrapped_key=None, shredded_at=now)
            .execution_options(synchronize_session="fetch")
        )
        self._session.flush()
        if not isinstance(result, CursorResult):
            raise LedgerError("the database driver reported no row count for the shred")
        return result.rowcount

    def _live_subject(self, pseudonym: str) -> str:
        canonical = canonical_pseudonym(self._session, pseudonym)
        if canonical is None:
            raise UnknownSubjectError(pseudonym)
        subject = self._session.get(Subject, canonical)
        if subject is None:
            raise UnknownSubjectError(pseudonym)
        if subject.erased_at is not None:
            raise SubjectErasedError(canonical)
        return canonical


def reclaim_shredded_storage(engine: Engine) -> None:
    """Push shredded key bytes out of the engine's free space and logs; run after commit.

    SQLite (secure_delete on): checkpoint and truncate the WAL so no old page survives.
    PostgreSQL: VACUUM FULL rewrites subject_keys without dead tuples; WAL segments and
    backups still age out on their own schedule, which the master-key wrapping covers.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "sqlite":
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
            if busy:
                raise LedgerError("WAL checkpoint blocked by another connection; retry later")
            return
        if engine.dialect.name == "postgresql":
            connection.execute(text("VACUUM FULL subject_keys"))
            return
    raise LedgerError(f"no storage reclaim procedure for {engine.dialect.name}")


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not key_id or len(key_id) > _KEY_ID_MAX:
        raise LedgerError(f"key_id must be a string of 1-{_KEY_ID_MAX} characters")


def _record(row: SubjectKey) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        subject_pseudonym=row.subject_pseudonym,
        algorithm=row.algorithm,
        created_at=row.created_at,
        shredded_at=row.shredded_at,
    )
