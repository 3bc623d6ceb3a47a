"""A request's effects inside contactflow, for the controllers whose data it may touch now.

- erasure: recordings deleted unless a hold keeps them (then restricted and reported as
  "retained under legal hold", GDPR Art. 17(3)(e)); footprints forgotten; once every
  controller holding the subject's data has agreed, the subject's keys are shredded
  (crypto-shredding works per subject, not per controller) and the subject is marked
  erased; until then the agreed controller's data is erased by deletion commands only;
- restriction, lift, objection, consent withdrawal: the subject's privacy state, stored
  in the ledger and published on the compacted `privacy.subject-state.v1` (the router
  reads it as a table), once it may change for every controller concerned.

Every function returns the messages to send and codes/counts for the evidence; none
commits (the caller's unit does, after Kafka has the messages).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from processors.privacy import PrivacyRequest
from processors.routing import SubjectStatus
from processors.subject_state import changes_state, status_after
from schemas import records
from schemas.topic_names import PRIVACY_SUBJECT_STATE
from streams.kafka.outbox import Message, Outbox
from streams.ledger import KeyVault, SubjectIndex
from streams.ledger.subject_state import SubjectStates


@dataclass
class Effects:
    """What execution did: messages to send, evidence (codes, counts) and held recordings
    per (subject, controller) for the erasure commands."""

    messages: list[Message] = field(default_factory=list)
    evidence: dict[str, object] = field(default_factory=dict)
    held: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def apply_state(
    session: Session, outbox: Outbox, request: PrivacyRequest, now: datetime
) -> Effects:
    """Publish the subject state the request implies, for each of its subjects."""
    effects = Effects()
    if not changes_state(request.request_type):
        return effects
    states = SubjectStates(session)
    changed = 0
    for subject in request.subjects:
        status = status_after(states.status(subject), request.request_type, request.purpose)
        if states.set_status(subject, status, request.request_id, now):
            changed += 1
            effects.messages.append(_state_message(outbox, subject, status, request, now))
    effects.evidence["subject_states_published"] = changed
    return effects


def shred_subjects(session: Session, request: PrivacyRequest, now: datetime) -> dict[str, int]:
    """Crypto-shred every key of the request's subjects, mark them erased (the subject row
    stays, a tombstone), and delete their identifier digests."""
    vault, index = KeyVault(session), SubjectIndex(session)
    shredded = 0
    for subject in request.subjects:
        shredded += vault.shred_subject(subject, now)
        index.mark_erased(subject, now)
    removed = SubjectStates(session).forget_identifiers(request.subjects)
    return {"keys_shredded": shredded, "subjects_erased": len(request.subjects),
            "identifiers_removed": removed}  # fmt: skip


def forget_footprints(
    session: Session, request: PrivacyRequest, controllers: Collection[str]
) -> int:
    return SubjectStates(session).forget_footprints(request.subjects, controllers)


def _state_message(
    outbox: Outbox, subject: str, status: SubjectStatus, request: PrivacyRequest, now: datetime
) -> Message:
    value = records.subject_state(
        subject_pseudonym=subject, restricted=status.restricted,
        objected_purposes=status.objected_purposes, erased=status.erased,
        suppressed_from_surveys=status.suppressed_from_surveys, updated_at=now,
        request_id=request.request_id,
    )  # fmt: skip
    return PRIVACY_SUBJECT_STATE, subject.encode(), outbox.encode("SubjectState", value)
