"""Set-at-a-time reads and writes of the subject index and key vault, for the router.

The repositories (`SubjectIndex`, `KeyVault`) handle one subject at a time through the
ORM: right for the privacy app, a few milliseconds per subject. The router meets
thousands of new people per batch, so it reads every digest of a batch in one query and
inserts new subjects, identifiers and keys in one statement each. Merges of existing
subjects stay with `SubjectIndex.resolve_or_create`, which knows how to fold them.
Inputs are validated like the repositories validate them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from streams.ledger.columns import require_aware
from streams.ledger.models import Subject, SubjectIdentifier, SubjectKey
from streams.ledger.records import IdentifierKind, require_hex, require_pseudonym

_CHUNK = 500
# Core tables: bulk inserts skip the ORM's per-row bookkeeping (3x faster here).
_SUBJECTS = cast(Table, Subject.__table__)
_IDENTIFIERS = cast(Table, SubjectIdentifier.__table__)
_KEYS = cast(Table, SubjectKey.__table__)
T = TypeVar("T")


def _chunks(items: Collection[T]) -> Iterator[list[T]]:
    values = list(items)
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def owners_of(session: Session, digests: Collection[str]) -> dict[str, str]:
    """digest -> subject pseudonym, for the digests already indexed."""
    owners: dict[str, str] = {}
    for chunk in _chunks(digests):
        rows = session.execute(
            select(SubjectIdentifier.identifier_digest, SubjectIdentifier.subject_pseudonym)
            .where(SubjectIdentifier.identifier_digest.in_(chunk))
        )  # fmt: skip
        owners.update({digest: subject for digest, subject in rows})
    return owners


def subjects_state(session: Session, pseudonyms: Collection[str]) -> dict[str, bool]:
    """pseudonym -> erased?, for the pseudonyms that exist as subjects."""
    state: dict[str, bool] = {}
    for chunk in _chunks(pseudonyms):
        rows = session.execute(
            select(Subject.subject_pseudonym, Subject.erased_at)
            .where(Subject.subject_pseudonym.in_(chunk))
        )  # fmt: skip
        state.update({pseudonym: erased is not None for pseudonym, erased in rows})
    return state


def add_subjects(
    session: Session,
    subjects: Iterable[str],
    identifiers: Sequence[tuple[str, str, str]],
    now: datetime,
) -> None:
    """Insert new subjects, then (digest, kind, subject) identifier rows."""
    now = require_aware(now)
    subject_rows = [
        {"subject_pseudonym": require_pseudonym(s), "created_at": now, "erased_at": None}
        for s in subjects
    ]
    identifier_rows = [
        {"identifier_digest": require_hex(digest, "identifier digest"),
         "identifier_kind": IdentifierKind(kind).value, "subject_pseudonym": subject,
         "first_seen_at": now, "last_seen_at": now}
        for digest, kind, subject in identifiers
    ]  # fmt: skip
    if subject_rows:
        session.execute(insert(_SUBJECTS), subject_rows)
    if identifier_rows:
        session.execute(insert(_IDENTIFIERS), identifier_rows)


def live_keys(session: Session, subjects: Collection[str]) -> dict[str, tuple[str, bytes]]:
    """subject -> (key id, wrapped key) of its newest unshredded key."""
    newest: dict[str, tuple[datetime, str, bytes]] = {}
    for chunk in _chunks(subjects):
        rows = session.execute(
            select(SubjectKey.subject_pseudonym, SubjectKey.created_at, SubjectKey.key_id,
                   SubjectKey.wrapped_key)
            .where(SubjectKey.subject_pseudonym.in_(chunk), SubjectKey.shredded_at.is_(None))
        )  # fmt: skip
        for subject, created_at, key_id, wrapped in rows:
            if wrapped is not None and (subject not in newest or
                                        (created_at, key_id) > newest[subject][:2]):  # fmt: skip
                newest[subject] = (created_at, key_id, wrapped)
    return {subject: (key_id, wrapped) for subject, (_, key_id, wrapped) in newest.items()}


def add_keys(
    session: Session, keys: Sequence[tuple[str, str, bytes]], algorithm: str, now: datetime
) -> None:
    """Insert (key id, subject, wrapped key) rows."""
    now = require_aware(now)
    rows = [
        {"key_id": key_id, "subject_pseudonym": subject, "wrapped_key": wrapped,
         "algorithm": algorithm, "created_at": now, "shredded_at": None}
        for key_id, subject, wrapped in keys
    ]  # fmt: skip
    if rows:
        session.execute(insert(_KEYS), rows)
