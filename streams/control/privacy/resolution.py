"""Resolution: a request's identifier digests to subjects, and where their data is.

This loads the facts (the subjects the digests name, the router's footprints, the
subjects' recordings), lets `processors.request_scope` decide whose processing the request
reaches, and stores what that needs: for a request about future processing from a person
never seen, the subject that will carry their state, made from the request's digests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from processors import privacy
from processors.privacy import PrivacyRequest, Step
from processors.request_scope import request_scope
from streams.ledger import PrivacyRequests, RetentionLedger, SubjectIndex
from streams.ledger.records import RecordingRecord
from streams.ledger.subject_state import Footprint, SubjectStates


def facts_of(
    session: Session, digests: Sequence[tuple[str, str]]
) -> tuple[list[str], list[Footprint], list[RecordingRecord]]:
    """What the ledger holds on the people `digests` ((kind, digest), ...) name: their
    subjects, where the router saw their data, and their recordings (expired ones too).
    Indexed lookups only: a bounded number of rows whatever the ledger's size."""
    index, states = SubjectIndex(session), SubjectStates(session)
    subjects = sorted({s for _, d in digests if (s := index.lookup(d)) is not None})
    ledger = RetentionLedger(session)
    recordings = [
        r for s in subjects for r in ledger.recordings_for("subject", s, include_expired=True)
    ]
    return subjects, states.footprints(subjects), recordings


def resolve_step(
    session: Session,
    request: PrivacyRequest,
    now: datetime,
    versions: dict[str, str],
    controllers_of: Mapping[str, frozenset[str]],
    pseudonym_for: Callable[[str, int], str],
) -> Step:
    """The `resolved` step, its details saying what was found where (codes and counts).
    `pseudonym_for(digest, generation)` names a subject first seen with that digest."""
    index = SubjectIndex(session)
    digests = PrivacyRequests(session).identifiers(request.request_id)
    subjects, footprints, recordings = facts_of(session, digests)
    holding = {f.controller for f in footprints} | {r.controller for r in recordings}
    scope = request_scope(
        request.request_type, request.purpose, bool(subjects), holding, controllers_of
    )
    if scope.new_subject and digests:

        def unused(digest: str) -> str:
            return index.unused_pseudonym(digest, pseudonym_for)

        subjects = [index.resolve_or_create(digests, unused, now)]
    controllers = scope.controllers if subjects else frozenset()
    step = privacy.resolve(request, subjects, controllers, now)
    found: dict[str, object] = {
        f"found.{c}": ",".join(sorted({f.channel for f in footprints if f.controller == c}))
        for c in sorted(holding | controllers)
    }
    found |= {
        "recordings": len([r for r in recordings if r.state != "expired"]),
        "recordings_held": len([r for r in recordings if r.state == "held"]),
        "controller_inferred": scope.inferred and bool(subjects),
        "subject_made_for_request": scope.new_subject and bool(subjects),
        **versions,
    }
    return replace(step, details={**step.details, **found})
