"""Privacy requests in the ledger: each request, its identifier digests, its downstream
commands and its append-only history.

`processors.privacy` and `processors.privacy_commands` decide every change; this stores
the result. A write names the value the decision started from (`Step.before`, or the
command before the change) and is refused with StaleRequestError when the stored row is
no longer that value: two workers cannot both move one request. Rows are locked first
(FOR UPDATE on PostgreSQL; SQLite serialises writers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from processors.privacy import TERMINAL_STATES, PrivacyRequest, Step
from processors.privacy_commands import ConsumerCommand
from streams.ledger.audit import _normalised_details as normalised_details
from streams.ledger.columns import require_aware
from streams.ledger.errors import (
    LedgerError,
    StaleRequestError,
    UnknownCommandError,
    UnknownRequestError,
)
from streams.ledger.models import PrivacyRequestRow, RequestCommand, RequestEvent, RequestIdentifier
from streams.ledger.records import (
    Command,
    Decision,
    DecisionSource,
    IdentifierKind,
    Outcome,
    RequestEventRecord,
    RequestState,
    RequestType,
    field_values,
    require_text,
)
from streams.ledger.subjects import validated_digests

DigestPair = tuple[IdentifierKind | str, str]
"""(identifier kind, keyed HMAC hex digest of the normalised identifier)."""

# the open states named (not "not terminal"): an IN list can use ix_privacy_requests_state_due_at
# on SQLite and PostgreSQL, a NOT IN reads every request ever made
_OPEN = PrivacyRequestRow.state.in_(
    sorted(s.value for s in RequestState if s not in TERMINAL_STATES)
)
_REQUEST_FIELDS = tuple(f.name for f in fields(PrivacyRequest))
_COMMAND_FIELDS = tuple(f.name for f in fields(ConsumerCommand))
_MUTABLE_COMMAND_FIELDS = ("issued_at", "answer_by", "attempt", "outcome", "reason",
                           "answered_at", "escalated_at")  # fmt: skip


class PrivacyRequests:
    """Requests, digests, commands and history in the caller's Session: flushes, never
    commits. Event details hold codes and counts only; `actor` is who made the change."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def submit(
        self, step: Step, identifiers: Sequence[DigestPair], actor: str, now: datetime
    ) -> tuple[PrivacyRequest, bool]:
        """Store a new request (from `processors.privacy.submit`) with the digests of the
        identifiers given; a request id already stored returns (it, False), unchanged."""
        now = require_aware(now)
        if step.before is not None:
            raise LedgerError("submit stores a new request: use apply for a transition")
        digests = validated_digests(identifiers)
        existing = self._session.get(PrivacyRequestRow, step.request.request_id)
        if existing is not None:
            return _request(existing), False
        row = PrivacyRequestRow(**_row_values(step.request))
        self._session.add(row)
        self._session.flush()
        self._session.add_all(
            RequestIdentifier(request_id=row.request_id, identifier_digest=digest,
                              identifier_kind=kind)
            for digest, kind in digests.items()
        )  # fmt: skip
        self._log(row, actor, now, step.event, None, dict(step.details))
        return _request(row), True

    def apply(self, step: Step, actor: str, now: datetime) -> PrivacyRequest:
        """Store a transition's result; StaleRequestError if the stored request is no longer
        `step.before` (another worker moved it since it was read)."""
        now = require_aware(now)
        before = step.before
        if before is None or before.request_id != step.request.request_id:
            raise LedgerError("a transition must start from the stored request it changes")
        row = self._locked(before.request_id)
        if _request(row) != before:
            raise StaleRequestError("request", before.request_id)
        for name, value in _row_values(step.request).items():
            setattr(row, name, value)
        self._log(row, actor, now, step.event, before.state.value, dict(step.details))
        return _request(row)

    def get(self, request_id: str) -> PrivacyRequest | None:
        """The request with this id, or None."""
        row = self._session.get(PrivacyRequestRow, request_id)
        return None if row is None else _request(row)

    def identifiers(self, request_id: str) -> list[tuple[str, str]]:
        """(kind, digest) of each identifier the request gave, in digest order."""
        query = select(RequestIdentifier.identifier_kind, RequestIdentifier.identifier_digest)
        query = query.where(RequestIdentifier.request_id == request_id)
        return [
            (k, d)
            for k, d in self._session.execute(query.order_by(RequestIdentifier.identifier_digest))
        ]

    def discard_identifiers(self, request_id: str, actor: str, now: datetime) -> int:
        """Delete a closed request's digests (kept no longer than needed); returns how many."""
        now = require_aware(now)
        row = self._locked(request_id)
        if RequestState(row.state) not in TERMINAL_STATES:
            raise LedgerError(f"request {request_id} is still open: its digests are in use")
        result = self._session.execute(
            delete(RequestIdentifier).where(RequestIdentifier.request_id == request_id)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        self._log(row, actor, now, "identifiers_discarded", None, {"count": count})
        return count

    def open_requests(self) -> list[PrivacyRequest]:
        """Requests not yet completed, refused or rejected, earliest deadline first."""
        return self._requests(_OPEN)

    def overdue(self, now: datetime) -> list[PrivacyRequest]:
        """Open requests past their (possibly extended) deadline, earliest first."""
        now = require_aware(now)
        return self._requests(_OPEN, _deadline() < now)

    def count_open(self, now: datetime) -> tuple[int, int]:
        """(open, overdue) requests, counted by the database: for a metrics gauge."""
        now = require_aware(now)
        overdue = func.count().filter(_deadline() < now)
        query = select(func.count(), overdue).select_from(PrivacyRequestRow).where(_OPEN)
        open_count, late = self._session.execute(query).one()
        return int(open_count), int(late or 0)

    def for_subject(self, pseudonym: str) -> list[PrivacyRequest]:
        """Requests that resolved to this subject pseudonym, oldest first."""
        every = self._requests(order=PrivacyRequestRow.received_at)
        return [request for request in every if pseudonym in request.subjects]

    def add_commands(
        self, commands: Sequence[ConsumerCommand], actor: str, now: datetime
    ) -> list[ConsumerCommand]:
        """Store commands not stored yet (a command id already stored is skipped) and
        return the ones stored now, each with a `command_issued` event."""
        now = require_aware(now)
        stored = []
        for command in commands:
            row = self._locked(command.request_id)
            if self._session.get(RequestCommand, command.command_id) is not None:
                continue
            self._session.add(RequestCommand(**_command_values(command)))
            self._session.flush()
            details = {"consumer": command.consumer, "command": command.command.value,
                       "controller": command.controller, "attempt": command.attempt}  # fmt: skip
            self._log(row, actor, now, "command_issued", None, details, command.command_id)
            stored.append(command)
        return stored

    def update_command(
        self, before: ConsumerCommand, after: ConsumerCommand, event: str, actor: str,
        now: datetime,
    ) -> ConsumerCommand:  # fmt: skip
        """Store an answer, a re-send or an escalation decided from `before`.

        StaleRequestError if the stored command is no longer `before`; only the attempt,
        the answer and the escalation may change.
        """
        now = require_aware(now)
        row = self._session.get(
            RequestCommand, before.command_id, with_for_update=True, populate_existing=True
        )
        if row is None:
            raise UnknownCommandError(before.command_id)
        if _command(row) != before:
            raise StaleRequestError("command", before.command_id)
        fixed = {n for n in _COMMAND_FIELDS if n not in _MUTABLE_COMMAND_FIELDS}
        if any(getattr(before, n) != getattr(after, n) for n in fixed):
            raise LedgerError(f"command {before.command_id}: only its attempt or answer change")
        for name, value in _command_values(after).items():
            setattr(row, name, value)
        details = {"consumer": after.consumer, "attempt": after.attempt,
                   "outcome": None if after.outcome is None else after.outcome.value}  # fmt: skip
        request = self._locked(after.request_id)
        self._log(request, actor, now, event, None, details, after.command_id)
        return _command(row)

    def get_command(self, command_id: str) -> ConsumerCommand | None:
        row = self._session.get(RequestCommand, command_id)
        return None if row is None else _command(row)

    def commands(self, request_id: str) -> list[ConsumerCommand]:
        """The request's commands, by consumer, controller, subject."""
        query = select(RequestCommand).where(RequestCommand.request_id == request_id)
        order = (RequestCommand.consumer, RequestCommand.controller,
                 RequestCommand.subject_pseudonym, RequestCommand.command_id)  # fmt: skip
        query = query.order_by(*order)
        return [_command(row) for row in self._session.scalars(query)]

    def commands_needing_attention(self, now: datetime) -> list[ConsumerCommand]:
        """Commands of open requests that are unanswered past answer_by, or failed and not
        yet escalated: what `commands_to_resend` / `commands_to_escalate` choose from."""
        now = require_aware(now)
        late = RequestCommand.outcome.is_(None) & (RequestCommand.answer_by < now)
        failed = (RequestCommand.outcome == Outcome.FAILED.value) & (
            RequestCommand.escalated_at.is_(None)
        )
        query = (
            select(RequestCommand)
            .join(PrivacyRequestRow, PrivacyRequestRow.request_id == RequestCommand.request_id)
            .where(_OPEN, or_(late, failed))
            .order_by(RequestCommand.answer_by, RequestCommand.command_id)
        )
        return [_command(row) for row in self._session.scalars(query)]

    def events(self, request_id: str) -> list[RequestEventRecord]:
        """The request's history in the order it was written ([] for an unknown id)."""
        query = select(RequestEvent).where(RequestEvent.request_id == request_id)
        rows = self._session.scalars(query.order_by(RequestEvent.id))
        return [_event(row) for row in rows]

    def _requests(self, *where: Any, order: Any = None) -> list[PrivacyRequest]:
        query = select(PrivacyRequestRow).where(*where)
        query = query.order_by(order if order is not None else _deadline(),
                               PrivacyRequestRow.request_id)  # fmt: skip
        return [_request(row) for row in self._session.scalars(query)]

    def _locked(self, request_id: str) -> PrivacyRequestRow:
        row = self._session.get(
            PrivacyRequestRow, request_id, with_for_update=True, populate_existing=True
        )
        if row is None:
            raise UnknownRequestError(request_id)
        return row

    def _log(
        self, row: PrivacyRequestRow, actor: str, now: datetime, event: str,
        from_state: str | None, details: Mapping[str, Any], command_id: str | None = None,
    ) -> None:  # fmt: skip
        require_text(actor, "actor", 128)
        self._session.add(
            RequestEvent(request_id=row.request_id, at=now, actor=actor, event=event,
                         from_state=from_state, state=row.state, command_id=command_id,
                         details=normalised_details(details))
        )  # fmt: skip
        self._session.flush()


def _deadline() -> Any:
    return func.coalesce(PrivacyRequestRow.extended_until, PrivacyRequestRow.due_at)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


def _row_values(request: PrivacyRequest) -> dict[str, Any]:
    values = {name: _plain(getattr(request, name)) for name in _REQUEST_FIELDS}
    values["subject_pseudonyms"] = list(values.pop("subjects"))
    values["controllers"] = sorted(request.controllers)
    values["executed_for"] = sorted(request.executed_for)
    return values


_FROM_ROW: Mapping[str, Callable[[Any], Any]] = {
    "request_type": RequestType, "state": RequestState, "decision": Decision,
    "decision_source": DecisionSource, "controllers": frozenset, "subjects": tuple,
    "executed_for": frozenset,
    "command": Command, "outcome": Outcome,
}  # fmt: skip


def _converted(name: str, value: Any) -> Any:
    return value if value is None or name not in _FROM_ROW else _FROM_ROW[name](value)


def _request(row: PrivacyRequestRow) -> PrivacyRequest:
    values = {
        n: getattr(row, "subject_pseudonyms" if n == "subjects" else n) for n in _REQUEST_FIELDS
    }
    return PrivacyRequest(**{n: _converted(n, v) for n, v in values.items()})


def _command_values(command: ConsumerCommand) -> dict[str, Any]:
    return {name: _plain(getattr(command, name)) for name in _COMMAND_FIELDS}


def _command(row: RequestCommand) -> ConsumerCommand:
    return ConsumerCommand(**{n: _converted(n, getattr(row, n)) for n in _COMMAND_FIELDS})


def _event(row: RequestEvent) -> RequestEventRecord:
    details = MappingProxyType(dict(row.details))
    return RequestEventRecord(**{**field_values(row, RequestEventRecord), "details": details})
