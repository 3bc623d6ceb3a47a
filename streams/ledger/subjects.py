"""The subject index: which identifier digests belong to which pseudonymous subject."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import count

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from processors.subjects import SubjectFacts, plan_merges
from streams.ledger.columns import require_aware
from streams.ledger.errors import (
    IdentifierKindMismatchError,
    InvalidIdentifierError,
    PseudonymCollisionError,
    SubjectErasedError,
    UnknownSubjectError,
)
from streams.ledger.models import Subject, SubjectAlias, SubjectIdentifier, SubjectKey
from streams.ledger.records import IdentifierKind, require_hex, require_pseudonym

DigestPair = tuple[IdentifierKind | str, str]
"""(identifier kind, keyed HMAC hex digest of the normalised identifier)."""


class SubjectIndex:
    """Links digests seen together to one subject, merging subjects when they meet.

    Works inside the caller's Session and transaction; it flushes but never commits.
    Concurrent writers that race on the same digests get an IntegrityError on flush or
    commit: the caller retries the transaction.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def resolve_or_create(
        self,
        digests: Sequence[DigestPair],
        pseudonym_for: Callable[[str], str],
        now: datetime,
    ) -> str:
        """Return the canonical pseudonym of the subject these digests identify.

        Unknown digests join that subject; if the digests span several subjects, those
        merge into the oldest (retired pseudonyms become aliases). With no known digest a
        subject is created with pseudonym `pseudonym_for(first digest)`.
        Raises SubjectErasedError if any digest belongs to an erased subject.
        """
        now = require_aware(now)
        wanted = validated_digests(digests)
        session = self._session
        known = {
            row.identifier_digest: row
            for row in session.scalars(
                select(SubjectIdentifier).where(SubjectIdentifier.identifier_digest.in_(wanted))
            )
        }
        for digest, row in known.items():
            if row.identifier_kind != wanted[digest]:
                raise IdentifierKindMismatchError(digest, row.identifier_kind, wanted[digest])

        subjects = self._lock_subjects({row.subject_pseudonym for row in known.values()})
        owner = {  # a subject merged away by another transaction since `known` was read: left out
            digest: row.subject_pseudonym
            for digest, row in known.items()
            if row.subject_pseudonym in subjects
        }
        plan = plan_merges(
            [[(kind, digest) for digest, kind in wanted.items()]],
            owner,
            {p: SubjectFacts(s.created_at, s.erased_at is not None) for p, s in subjects.items()},
        )
        if plan.refused:
            raise SubjectErasedError(min(plan.erased_met))
        if plan.unowned and known:  # every subject named was merged away meanwhile
            raise UnknownSubjectError(min(row.subject_pseudonym for row in known.values()))
        if plan.unowned:
            canonical = self._create(pseudonym_for(next(iter(wanted))), now)
        else:
            canonical = plan.owner[next(iter(wanted))]
            self._retire([subjects[p] for p in plan.survivor_of], canonical, now)

        for digest, kind in wanted.items():
            existing = known.get(digest)
            if existing is None:
                session.add(
                    SubjectIdentifier(
                        identifier_digest=digest,
                        identifier_kind=kind,
                        subject_pseudonym=canonical,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                )
                continue
            existing.subject_pseudonym = canonical
            existing.first_seen_at = min(existing.first_seen_at, now)
            existing.last_seen_at = max(existing.last_seen_at, now)
        session.flush()
        return canonical

    def lookup(self, digest: str) -> str | None:
        """The canonical pseudonym owning `digest`, or None if it was never indexed."""
        require_hex(digest, "identifier digest")
        return self._session.scalar(
            select(SubjectIdentifier.subject_pseudonym).where(
                SubjectIdentifier.identifier_digest == digest
            )
        )

    def unused_pseudonym(self, first_digest: str, pseudonym_for: Callable[[str, int], str]) -> str:
        """The pseudonym of a new subject first seen with `first_digest`: the first
        generation of `pseudonym_for(first_digest, generation)` that no subject and no
        alias holds (an erased subject keeps its name as a tombstone, a subject merged
        away keeps it as an alias: a person who comes back after either is a new one)."""
        for generation in count(1):
            candidate = pseudonym_for(first_digest, generation)
            if self.canonical(candidate) is None:
                return candidate
        raise AssertionError("unreachable: count() does not end")

    def canonical(self, pseudonym: str) -> str | None:
        """`pseudonym` itself if it is a live subject, its survivor if merged, else None."""
        return canonical_pseudonym(self._session, pseudonym)

    def is_erased(self, pseudonym: str) -> bool:
        """True if the subject `pseudonym` resolves to has been marked erased."""
        subject = self._subject(pseudonym)
        return subject is not None and subject.erased_at is not None

    def mark_erased(self, pseudonym: str, now: datetime) -> str:
        """Stamp the subject erased (first stamp wins); returns its canonical pseudonym."""
        now = require_aware(now)
        subject = self._subject(pseudonym)
        if subject is None:
            raise UnknownSubjectError(pseudonym)
        if subject.erased_at is None:
            subject.erased_at = now
            self._session.flush()
        return subject.subject_pseudonym

    def _subject(self, pseudonym: str) -> Subject | None:
        canonical = self.canonical(pseudonym)
        return None if canonical is None else self._session.get(Subject, canonical)

    def _create(self, pseudonym: str, now: datetime) -> str:
        require_pseudonym(pseudonym)
        session = self._session
        if session.get(Subject, pseudonym) is not None:
            raise PseudonymCollisionError(pseudonym)
        if session.get(SubjectAlias, pseudonym) is not None:
            raise PseudonymCollisionError(pseudonym)
        session.add(Subject(subject_pseudonym=pseudonym, created_at=now, erased_at=None))
        session.flush()
        return pseudonym

    def _lock_subjects(self, pseudonyms: set[str]) -> dict[str, Subject]:
        """The subjects a merge may fold, locked (in pseudonym order) until the commit."""
        if not pseudonyms:
            return {}
        rows = self._session.scalars(
            select(Subject)
            .where(Subject.subject_pseudonym.in_(pseudonyms))
            .order_by(Subject.subject_pseudonym)
            .with_for_update()
        )
        return {row.subject_pseudonym: row for row in rows}

    def _retire(self, retired: Sequence[Subject], canonical: str, now: datetime) -> None:
        """Fold subjects into `canonical`: their identifiers, keys and aliases move to it,
        each retired pseudonym becomes its alias, the retired subjects go."""
        if not retired:
            return
        session = self._session
        names = [subject.subject_pseudonym for subject in retired]
        for model, column in (
            (SubjectIdentifier, SubjectIdentifier.subject_pseudonym),
            (SubjectKey, SubjectKey.subject_pseudonym),
            (SubjectAlias, SubjectAlias.canonical_pseudonym),
        ):
            session.execute(
                update(model)
                .where(column.in_(names))
                .values({column.key: canonical})
                .execution_options(synchronize_session="fetch")
            )
        for name in names:
            session.add(
                SubjectAlias(alias_pseudonym=name, canonical_pseudonym=canonical, merged_at=now)
            )
        session.flush()
        for subject in retired:
            session.delete(subject)
        session.flush()


def canonical_pseudonym(session: Session, pseudonym: str) -> str | None:
    """The subject `pseudonym` names now: itself, the survivor of its merge, or None."""
    require_pseudonym(pseudonym)
    if session.get(Subject, pseudonym) is not None:
        return pseudonym
    alias = session.get(SubjectAlias, pseudonym)
    return None if alias is None else alias.canonical_pseudonym


def subject_family(session: Session, pseudonyms: Iterable[str]) -> set[str]:
    """Each pseudonym, the subject it names now, and every alias merged into that subject:
    every pseudonym under which the same person's data may be stored."""
    family: set[str] = set()
    for pseudonym in pseudonyms:
        alias = session.get(SubjectAlias, pseudonym)
        canonical = pseudonym if alias is None else alias.canonical_pseudonym
        merged = session.scalars(
            select(SubjectAlias.alias_pseudonym).where(
                SubjectAlias.canonical_pseudonym == canonical
            )
        )
        family |= {pseudonym, canonical, *merged}
    return family


def validated_digests(digests: Sequence[DigestPair]) -> dict[str, str]:
    """digest -> kind in first-seen order; refuses empties, bad kinds, non-hex, conflicts."""
    if not digests:
        raise InvalidIdentifierError("at least one identifier digest is required")
    wanted: dict[str, str] = {}
    for raw_kind, digest in digests:
        try:
            kind = IdentifierKind(raw_kind).value
        except ValueError:
            raise InvalidIdentifierError(
                f"unknown identifier kind (expected one of {', '.join(IdentifierKind)})"
            ) from None
        require_hex(digest, "identifier digest")
        if wanted.setdefault(digest, kind) != kind:
            raise InvalidIdentifierError(f"identifier {digest} given with two different kinds")
    return wanted
