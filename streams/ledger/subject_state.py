"""Subjects as privacy requests see them: where each has data, and its privacy state.

Footprints (subject, controller, channel) are written by the router; a request resolves
its subjects against them. The privacy state is what `privacy.subject-state.v1` carries;
the ledger row is the system of record the topic is published from. Works in the caller's
Session: flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from processors.routing import NO_RESTRICTIONS, SubjectStatus
from streams.ledger.columns import require_aware
from streams.ledger.models import (
    SubjectFootprint,
    SubjectIdentifier,
    SubjectPrivacyState,
)
from streams.ledger.subjects import subject_family


@dataclass(frozen=True, slots=True)
class Footprint:
    subject_pseudonym: str
    controller: str
    channel: str
    first_seen_at: datetime


class SubjectStates:
    def __init__(self, session: Session) -> None:
        self._session = session

    def footprints(self, pseudonyms: Collection[str]) -> list[Footprint]:
        """Where these subjects (and their aliases) have data, by controller and channel."""
        family = subject_family(self._session, pseudonyms)
        query = select(SubjectFootprint).where(SubjectFootprint.subject_pseudonym.in_(family))
        query = query.order_by(SubjectFootprint.controller, SubjectFootprint.channel)
        return [
            Footprint(r.subject_pseudonym, r.controller, r.channel, r.first_seen_at)
            for r in self._session.scalars(query)
        ]

    def forget_footprints(self, pseudonyms: Collection[str], controllers: Collection[str]) -> int:
        """Delete the footprints of erased data; returns how many rows went."""
        family = subject_family(self._session, pseudonyms)
        result = self._session.execute(
            delete(SubjectFootprint).where(
                SubjectFootprint.subject_pseudonym.in_(family),
                SubjectFootprint.controller.in_(list(controllers)),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def forget_identifiers(self, pseudonyms: Collection[str]) -> int:
        """Delete the identifier digests of erased subjects (the subject row stays as a
        tombstone): a person who comes back is then a new subject. Returns how many."""
        family = subject_family(self._session, pseudonyms)
        result = self._session.execute(
            delete(SubjectIdentifier).where(SubjectIdentifier.subject_pseudonym.in_(family))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def status(self, pseudonym: str) -> SubjectStatus:
        row = self._session.get(SubjectPrivacyState, pseudonym)
        if row is None:
            return NO_RESTRICTIONS
        return SubjectStatus(
            restricted=row.restricted,
            objected_purposes=frozenset(row.objected_purposes),
            erased=row.erased,
            suppressed_from_surveys=row.suppressed_from_surveys,
        )

    def set_status(
        self, pseudonym: str, status: SubjectStatus, request_id: str, now: datetime
    ) -> bool:
        """Store the new state; False (nothing written) when it is the stored one."""
        now = require_aware(now)
        if status == self.status(pseudonym):
            return False
        row = self._session.get(SubjectPrivacyState, pseudonym, with_for_update=True)
        if row is None:
            row = SubjectPrivacyState(subject_pseudonym=pseudonym)
            self._session.add(row)
        row.restricted = status.restricted
        row.objected_purposes = sorted(status.objected_purposes)
        row.suppressed_from_surveys = status.suppressed_from_surveys
        row.erased = status.erased
        row.updated_at = now
        row.request_id = request_id
        self._session.flush()
        return True
