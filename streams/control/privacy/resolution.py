"""Resolution: a request's identifier digests to subjects, and where their data is.

Subjects come from the subject index; controllers and channels from the router's
footprints, plus the controllers of the subjects' recordings. A subject found only in
quarantine (no policy rule matched any of its events) has no controller on record: ORES
is taken as controller of contact handling (the privacy notice's default) and the
evidence says it was inferred.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from processors import privacy
from processors.privacy import PrivacyRequest, Step
from streams.ledger import PrivacyRequests, RetentionLedger, SubjectIndex
from streams.ledger.subject_state import SubjectStates


def resolve_step(
    session: Session, request: PrivacyRequest, now: datetime, versions: dict[str, str]
) -> Step:
    """The `resolved` step, its details saying what was found where (codes and counts)."""
    index, states = SubjectIndex(session), SubjectStates(session)
    digests = PrivacyRequests(session).identifiers(request.request_id)
    subjects = sorted({s for _, d in digests if (s := index.lookup(d)) is not None})
    footprints = states.footprints(subjects)
    ledger = RetentionLedger(session)
    recordings = [
        r for s in subjects for r in ledger.recordings_for("subject", s, include_expired=True)
    ]
    controllers = {f.controller for f in footprints} | {r.controller for r in recordings}
    inferred = bool(subjects) and not controllers
    if inferred:
        controllers = {"ORES"}
    step = privacy.resolve(request, subjects, controllers, now)
    found: dict[str, object] = {
        f"found.{c}": ",".join(sorted({f.channel for f in footprints if f.controller == c}))
        for c in sorted(controllers)
    }
    found |= {
        "recordings": len([r for r in recordings if r.state != "expired"]),
        "recordings_held": len([r for r in recordings if r.state == "held"]),
        "controller_inferred": inferred,
        **versions,
    }
    return replace(step, details={**step.details, **found})
