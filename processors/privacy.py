"""A data-subject request's life (GDPR Arts. 12, 15-22) as a state machine of values.

One function per transition: it takes the request, the inputs and the clock, and returns
a `Step` (the request it started from, the new one, an event name, details holding codes
only) or raises `TransitionError`. Nothing here stores, sends or reads anything.

    identity_unverified --verify--> received          (proof of identity, notice §7)
    identity_unverified --reject_unverified--> rejected
    received --resolve--> resolved                    (identifiers -> subject pseudonyms)
    resolved --route--> completed                     (nobody found: nothing to do)
    resolved --route--> awaiting_controller           (ORES data, no standing instruction)
    resolved --route--> executing                     (COMNEXIO data only, standing
                                                       instruction, or an absolute right)
    awaiting_controller --instruct(execute)--> executing
    awaiting_controller --instruct(refuse)--> refused (no COMNEXIO part) | executing
    awaiting_controller | executing --execute--> the same state (a controller's part done)
    executing --exported--> executing                 (access, portability: export written)
    executing --commands_issued--> awaiting_acks
    awaiting_acks --complete--> completed             (every consumer answered, none failed)
    any open state --extend | escalate--> the same state (deadline moved / escalation noted)

Overdue is a flag, not a state (`is_overdue`); `escalate` records it once. Consumer
commands: `processors.privacy_commands`. Deadlines: one month from receipt, extendable by
two months (GDPR Art. 12(3)), in Belgian calendar months (`processors.deadlines`); the
clock starts at receipt even while the identity is unverified (the stricter reading).

Objection to direct marketing (GDPR Art. 21(2)-(3); the notice calls it "droit absolu"):
the controller has no discretion, so no instruction is awaited. The request executes at
once for every controller's data, ORES is informed (`forward_to_controller`:
`for_information`), and a later refusal is recorded as not applicable, never applied.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from processors.consumers import CONTROLLERS, Command
from processors.deadlines import deadline_after

MAX_EXTENSION_MONTHS = 2
# receipt times taken in: see check_receipt
MAX_RECEIPT_AGE_MONTHS = 1 + MAX_EXTENSION_MONTHS
RECEIPT_CLOCK_SKEW = timedelta(minutes=5)
REASON_LIMIT = 500
ABSOLUTE_OBJECTION_PURPOSES = frozenset({"direct_marketing", "direct_marketing_profiling"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CODE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_PSEUDONYM = re.compile(r"(?:[a-z]{1,8}-)?[0-9a-f]{32,120}")
_E = TypeVar("_E", bound=StrEnum)


class RequestType(StrEnum):
    ERASURE = "erasure"
    RESTRICTION = "restriction"
    LIFT_RESTRICTION = "lift_restriction"
    OBJECTION = "objection"
    CONSENT_WITHDRAWAL = "consent_withdrawal"
    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"


class RequestState(StrEnum):
    IDENTITY_UNVERIFIED = "identity_unverified"
    RECEIVED = "received"
    RESOLVED = "resolved"
    AWAITING_CONTROLLER = "awaiting_controller"
    EXECUTING = "executing"
    AWAITING_ACKS = "awaiting_acks"
    COMPLETED = "completed"
    REFUSED = "refused"
    REJECTED = "rejected"


class Decision(StrEnum):
    EXECUTE = "execute"
    REFUSE = "refuse"


class DecisionSource(StrEnum):
    CONTROLLER = "controller"  # ORES instructed on privacy.instructions.v1
    STANDING = "standing"  # a standing instruction of ORES for this request type
    ABSOLUTE_RIGHT = "absolute_right"  # objection to direct marketing: nobody may refuse
    IDENTITY_NOT_PROVEN = "identity_not_proven"  # rejected before verification


TERMINAL_STATES = frozenset({RequestState.COMPLETED, RequestState.REFUSED, RequestState.REJECTED})
COMMAND_FOR: Mapping[RequestType, Command] = {
    RequestType.ERASURE: Command.ERASE,
    RequestType.RESTRICTION: Command.RESTRICT,
    RequestType.LIFT_RESTRICTION: Command.LIFT_RESTRICTION,
    RequestType.OBJECTION: Command.STOP_PURPOSE,
    RequestType.CONSENT_WITHDRAWAL: Command.SUPPRESS,
    RequestType.RECTIFICATION: Command.RECTIFY,
}
"""Access and portability send no command: their answer is an export made locally."""
PURPOSE_REQUIRED = frozenset({RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL})


class PrivacyRequestError(ValueError):
    """A value given to a transition is invalid. Messages never echo the value."""


class TransitionError(PrivacyRequestError):
    """The transition is not allowed for this request now (state, deadline, answers)."""


class RequestRefused(PrivacyRequestError):
    """A request value outside what may be taken in: `field` and `rule`, never the value."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def check_receipt(received_at: datetime, now: datetime) -> datetime:
    """The receipt time to record (a time within the clock skew ahead becomes `now`), or
    `RequestRefused` when it is in the future or further back than the law can be met.

    The window: no more than MAX_RECEIPT_AGE_MONTHS (3) calendar months back, the longest
    time the law allows to answer (one month, extended by at most two, GDPR Art. 12(3)):
    an older receipt cannot be answered lawfully whatever is done and is far likelier a
    mistyped year than a letter. At most RECEIPT_CLOCK_SKEW ahead (two systems' clocks);
    such a time is taken as `now`, the earlier deadline."""
    if not isinstance(received_at, datetime) or received_at.utcoffset() is None:
        raise RequestRefused("received_at", "a time with its zone is required")
    if received_at > now + RECEIPT_CLOCK_SKEW:
        raise RequestRefused(
            "received_at", f"in the future (more than {_minutes(RECEIPT_CLOCK_SKEW)} ahead)"
        )
    if deadline_after(received_at, MAX_RECEIPT_AGE_MONTHS) < now:
        raise RequestRefused(
            "received_at",
            f"more than {MAX_RECEIPT_AGE_MONTHS} months ago: even an extended deadline (GDPR "
            "Art. 12(3)) has passed; check the date",
        )
    return min(received_at, now)


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    """A request as the ledger stores it; subjects are pseudonyms, never identifiers."""

    request_id: str
    request_type: RequestType
    state: RequestState
    received_at: datetime
    submitted_by: str
    due_at: datetime
    updated_at: datetime
    purpose: str | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None
    subjects: tuple[str, ...] = ()
    controllers: frozenset[str] = frozenset()
    resolved_at: datetime | None = None
    forwarded_at: datetime | None = None
    decision: Decision | None = None
    decision_source: DecisionSource | None = None
    decision_reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    extension_months: int = 0
    extended_until: datetime | None = None
    extension_reason: str | None = None
    escalated_at: datetime | None = None
    closed_at: datetime | None = None
    executed_for: frozenset[str] = frozenset()  # controllers whose part was carried out

    @property
    def deadline(self) -> datetime:
        """The date the answer is due: the extended one when extended."""
        return self.extended_until or self.due_at

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class Step:
    """One transition: the request it started from (None for a new one), the result, an
    event name, and details holding codes, counts and flags only (str, int, bool)."""

    before: PrivacyRequest | None
    request: PrivacyRequest
    event: str
    details: Mapping[str, object]

    @property
    def previous_state(self) -> RequestState | None:
        return None if self.before is None else self.before.state


def is_overdue(request: PrivacyRequest, now: datetime) -> bool:
    """Still open after its (possibly extended) deadline."""
    return request.is_open and _aware(now) > request.deadline


def submit(
    request_id: str,
    request_type: RequestType | str,
    received_at: datetime,
    submitted_by: str,
    now: datetime,
    *,
    verified_by: str | None = None,
    purpose: str | None = None,
) -> Step:
    """A new request: `received` when its proof of identity came with it, else
    `identity_unverified` (which executes nothing until `verify`)."""
    now = _aware(now)
    received_at = check_receipt(_aware(received_at, "received_at"), now)
    kind = _choice(RequestType, request_type, "request_type")
    if (purpose is not None) != (kind in PURPOSE_REQUIRED):
        needing = ", ".join(sorted(PURPOSE_REQUIRED))
        raise PrivacyRequestError(f"purpose is required for {needing} and only for them")
    request = PrivacyRequest(
        request_id=_match(_ID, request_id, "request_id"),
        request_type=kind,
        state=RequestState.IDENTITY_UNVERIFIED,
        received_at=received_at,
        submitted_by=_text(submitted_by, "submitted_by", 128),
        due_at=deadline_after(received_at, 1),
        updated_at=now,
        purpose=None if purpose is None else _match(_CODE, purpose, "purpose"),
    )
    if verified_by is None:
        return Step(None, request, "submitted", {"verified": False})
    verified = _verified(request, verified_by, now)
    return Step(None, verified, "submitted", {"verified": True, "verified_by": verified_by})


def verify(request: PrivacyRequest, by: str, now: datetime) -> Step:
    """Record the proof of identity (`by` is the method, e.g. `id_card_copy`)."""
    _expect(request, "verify", RequestState.IDENTITY_UNVERIFIED)
    return Step(request, _verified(request, by, _aware(now)), "verified", {"verified_by": by})


def reject_unverified(request: PrivacyRequest, reason: str, by: str, now: datetime) -> Step:
    """Close a request whose requester could not be identified (GDPR Arts. 11(2), 12(6))."""
    _expect(request, "reject", RequestState.IDENTITY_UNVERIFIED)
    now = _aware(now)
    closed = replace(request, state=RequestState.REJECTED, decision=Decision.REFUSE,
                     decision_source=DecisionSource.IDENTITY_NOT_PROVEN,
                     decision_reason=_text(reason, "reason", REASON_LIMIT),
                     decided_by=_text(by, "by", 128), decided_at=now, closed_at=now,
                     updated_at=now)  # fmt: skip
    return Step(request, closed, "rejected", {"reason_recorded": True})


def resolve(
    request: PrivacyRequest, subjects: Collection[str], controllers: Collection[str],
    now: datetime,
) -> Step:  # fmt: skip
    """Record the subjects the identifiers resolved to and whose data they have."""
    _expect(request, "resolve", RequestState.RECEIVED)
    found = tuple(sorted({_match(_PSEUDONYM, s, "subject pseudonym") for s in subjects}))
    owners = frozenset(controllers)
    if not owners <= CONTROLLERS:
        raise PrivacyRequestError(f"controllers must be among {sorted(CONTROLLERS)}")
    if bool(found) != bool(owners):
        raise PrivacyRequestError("controllers are required exactly when subjects were found")
    now = _aware(now)
    resolved = replace(request, state=RequestState.RESOLVED, subjects=found,
                       controllers=owners, resolved_at=now, updated_at=now)  # fmt: skip
    details = {"subjects": len(found), "controllers": ",".join(sorted(owners))}
    return Step(request, resolved, "resolved", details)


def route(request: PrivacyRequest, standing: Collection[RequestType], now: datetime) -> Step:
    """Decide who acts: nobody (nothing found), ORES first, or contactflow at once.

    `standing` lists the request types ORES has given a standing instruction to execute.
    """
    _expect(request, "route", RequestState.RESOLVED)
    now = _aware(now)
    if not request.subjects:
        done = replace(request, state=RequestState.COMPLETED, closed_at=now, updated_at=now)
        return Step(request, done, "nothing_found", {"subjects": 0})
    if "ORES" not in request.controllers:
        executing = replace(request, state=RequestState.EXECUTING, updated_at=now)
        return Step(request, executing, "routed", {"forward_to_controller": "no"})
    source = _preauthorised(request, standing)
    if source is None:
        waiting = replace(request, state=RequestState.AWAITING_CONTROLLER, forwarded_at=now,
                          updated_at=now)  # fmt: skip
        return Step(request, waiting, "routed", {"forward_to_controller": "for_instruction"})
    executing = replace(request, state=RequestState.EXECUTING, forwarded_at=now,
                        decision=Decision.EXECUTE, decision_source=source, decided_at=now,
                        updated_at=now)  # fmt: skip
    details = {"forward_to_controller": "for_information", "decision_source": source.value}
    return Step(request, executing, "routed", details)


def instruct(
    request: PrivacyRequest, decision: Decision | str, reason: str | None, by: str,
    now: datetime,
) -> Step:  # fmt: skip
    """Apply ORES's instruction. A refusal needs a reason and leaves COMNEXIO's own part
    (if any) executing; against an absolute right it is recorded, not applied."""
    choice = _choice(Decision, decision, "decision")
    now = _aware(now)
    if request.decision_source == DecisionSource.ABSOLUTE_RIGHT:
        details = {"decision": choice.value, "applied": False}
        return Step(request, request, "instruction_not_applicable", details)
    repeated = request.decision_source == DecisionSource.CONTROLLER
    if repeated and request.decision == choice:  # a redelivered instruction
        return Step(request, request, "instruction_repeated", {"decision": choice.value})
    _expect(request, "instruct", RequestState.AWAITING_CONTROLLER)
    if choice == Decision.REFUSE and reason is None:
        raise PrivacyRequestError("a refusal must give its reason")
    own_part = "COMNEXIO" in request.controllers
    refused_all = choice == Decision.REFUSE and not own_part
    state = RequestState.REFUSED if refused_all else RequestState.EXECUTING
    why = None if reason is None else _text(reason, "reason", REASON_LIMIT)
    decided = replace(request, state=state, decision=choice,
                      decision_source=DecisionSource.CONTROLLER, decision_reason=why,
                      decided_by=_text(by, "by", 128), decided_at=now, updated_at=now,
                      closed_at=now if refused_all else None)  # fmt: skip
    return Step(request, decided, "instructed", {"decision": choice.value})


def executable_controllers(request: PrivacyRequest) -> frozenset[str]:
    """Whose data may be acted on now: COMNEXIO's own at once (it is controller there),
    ORES's only once executed on its instruction (or an absolute right). An unverified,
    unresolved or closed request acts on nothing."""
    active = {RequestState.AWAITING_CONTROLLER, RequestState.EXECUTING,
              RequestState.AWAITING_ACKS}  # fmt: skip
    if request.state not in active:
        return frozenset()
    if request.decision == Decision.EXECUTE:
        return request.controllers
    return request.controllers & {"COMNEXIO"}


EXPORTED = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


def all_agreed(request: PrivacyRequest, controllers: Collection[str]) -> bool:
    """Whether `controllers` covers every controller the request concerns: a subject-wide
    change (its privacy state, its keys shredded) waits for all of them."""
    return request.controllers <= frozenset(controllers)


def execute(
    request: PrivacyRequest, controllers: Collection[str], evidence: Mapping[str, object],
    now: datetime,
) -> Step:  # fmt: skip
    """Record that the part of `controllers` was carried out inside contactflow, with the
    evidence (codes and counts) of what it did. Only what `executable_controllers` allows
    and was not done before may be executed."""
    todo = frozenset(controllers)
    allowed = executable_controllers(request)
    if not todo or not todo <= allowed - request.executed_for:
        raise TransitionError(
            f"request {request.request_id}: cannot execute for {sorted(todo)} "
            f"(allowed {sorted(allowed - request.executed_for)})"
        )
    now = _aware(now)
    done = replace(request, executed_for=request.executed_for | todo, updated_at=now)
    return Step(request, done, "executed", {"controllers": ",".join(sorted(todo)), **evidence})


def state_changes_now(request: PrivacyRequest, todo: Collection[str]) -> bool:
    """Whether executing `todo` is what completes the controllers' agreement: the subject
    state is published then, once."""
    return not all_agreed(request, request.executed_for) and all_agreed(
        request, request.executed_for | frozenset(todo)
    )


def exported(request: PrivacyRequest, records: int, now: datetime) -> Step:
    """An access or portability export was written (`records` of them)."""
    if request.request_type not in EXPORTED or request.state != RequestState.EXECUTING:
        raise TransitionError(
            f"request {request.request_id}: no export is due in state {request.state}"
        )
    if records < 0:
        raise PrivacyRequestError("records must be zero or more")
    now = _aware(now)
    return Step(request, replace(request, updated_at=now), "exported", {"records": records})


def extend(request: PrivacyRequest, months: int, reason: str, now: datetime) -> Step:
    """Extend the deadline by whole months (GDPR Art. 12(3)): at most two in all, with a
    reason, decided within the first month (the person must be told within it)."""
    now = _aware(now)
    if not request.is_open:
        raise TransitionError(f"request {request.request_id}: it is {request.state}")
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise PrivacyRequestError("months must be a positive integer")
    total = request.extension_months + months
    if total > MAX_EXTENSION_MONTHS:
        raise TransitionError(
            f"request {request.request_id}: extensions may add at most "
            f"{MAX_EXTENSION_MONTHS} months to the one-month deadline (3 months in all)"
        )
    if now > request.due_at:
        raise TransitionError(
            f"request {request.request_id}: an extension must be decided within one month "
            "of receipt (GDPR Art. 12(3))"
        )
    extended = replace(request, extension_months=total,
                       extended_until=deadline_after(request.received_at, 1 + total),
                       extension_reason=_text(reason, "reason", REASON_LIMIT),
                       updated_at=now)  # fmt: skip
    return Step(request, extended, "extended", {"months": months, "total_months": total})


def escalate(request: PrivacyRequest, now: datetime) -> Step:
    """Record, once, that an overdue request was escalated."""
    if not is_overdue(request, now):
        raise TransitionError(f"request {request.request_id}: not overdue")
    if request.escalated_at is not None:
        raise TransitionError(f"request {request.request_id}: already escalated")
    now = _aware(now)
    escalated = replace(request, escalated_at=now, updated_at=now)
    overdue_by = int((now - request.deadline).total_seconds())
    return Step(request, escalated, "escalated", {"overdue_seconds": overdue_by})


def _verified(request: PrivacyRequest, by: str, now: datetime) -> PrivacyRequest:
    if now < request.received_at:
        raise PrivacyRequestError("now must not be before received_at")
    return replace(request, state=RequestState.RECEIVED, verified_at=now,
                   verified_by=_match(_CODE, by, "verified_by"), updated_at=now)  # fmt: skip


def _preauthorised(
    request: PrivacyRequest, standing: Collection[RequestType]
) -> DecisionSource | None:
    absolute = (
        request.request_type == RequestType.OBJECTION
        and request.purpose in ABSOLUTE_OBJECTION_PURPOSES
    )
    if absolute:
        return DecisionSource.ABSOLUTE_RIGHT
    return DecisionSource.STANDING if request.request_type in standing else None


def _expect(request: PrivacyRequest, action: str, *states: RequestState) -> None:
    if request.state not in states:
        raise TransitionError(
            f"request {request.request_id}: cannot {action} in state {request.state}"
        )


def _aware(value: datetime, name: str = "now") -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PrivacyRequestError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _choice(kind: type[_E], value: object, name: str) -> _E:
    if isinstance(value, str) and value in set(kind):
        return kind(value)
    raise PrivacyRequestError(f"{name} must be one of {', '.join(kind)}")


def _match(pattern: re.Pattern[str], value: object, name: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise PrivacyRequestError(f"{name} is malformed (expected {pattern.pattern})")
    return value


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise PrivacyRequestError(f"{name} must be a non-blank string of 1-{limit} characters")
    return value
