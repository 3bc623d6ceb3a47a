"""What a privacy request does to a subject's privacy state (privacy.subject-state.v1).

The router reads that state as a table: restricted subjects are stored flagged and kept out
of processing (GDPR Art. 18), objected purposes are never produced (Art. 21) and events
are marked as excluded from an objected derived purpose (reporting), an erased subject's
events are refused. Survey suppression is for the survey sender (consent
withdrawn, Art. 7(3)). Pure: the current state in, the next state out.
"""

from __future__ import annotations

from dataclasses import replace

from processors.privacy import RequestType
from processors.routing import SubjectStatus


def status_after(
    current: SubjectStatus, request_type: RequestType, purpose: str | None
) -> SubjectStatus:
    """The state once `request_type` (for `purpose` where it has one) is executed; request
    types that change no state (access, portability, rectification) return it unchanged."""
    if request_type == RequestType.ERASURE:
        return replace(current, erased=True, restricted=True)
    if request_type == RequestType.RESTRICTION:
        return replace(current, restricted=True)
    if request_type == RequestType.LIFT_RESTRICTION:
        return replace(current, restricted=False)
    if request_type == RequestType.OBJECTION and purpose is not None:
        return replace(current, objected_purposes=current.objected_purposes | {purpose})
    if request_type == RequestType.CONSENT_WITHDRAWAL:
        return replace(current, suppressed_from_surveys=True)
    return current


def changes_state(request_type: RequestType) -> bool:
    """Whether executing this request type publishes a new subject state."""
    return request_type in {
        RequestType.ERASURE, RequestType.RESTRICTION, RequestType.LIFT_RESTRICTION,
        RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL,
    }  # fmt: skip
