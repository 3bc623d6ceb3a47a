"""Every data-subject request action, one way: ledger first, Kafka messages, then commit.

Each transition runs in one ledger transaction; the messages it implies (the request
forwarded to ORES, subject states, downstream commands, audit events) are produced and
flushed before that transaction commits (`streams.kafka.outbox`). Inputs replayed after a crash
change nothing twice: transitions are refused from a state already left, commands have
stable ids, answers repeat harmlessly. The clock is always a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from processors import privacy
from processors.consumers import ConsumerRegistry
from processors.privacy import PrivacyRequest, RequestState, RequestType, Step
from processors.privacy_commands import (
    ConsumerCommand,
    commands_issued,
    commands_to_escalate,
    commands_to_resend,
    complete,
    escalate_command,
    plan_commands,
    ready_to_complete,
    record_answer,
    resend,
)
from processors.pseudonym import Pseudonymiser
from schemas.topic_names import PRIVACY_REQUESTS
from streams.bootstrap import Container
from streams.control.privacy import execution
from streams.control.privacy.config import PrivacyConfig
from streams.control.privacy.instruments import PrivacyInstruments
from streams.control.privacy.intake import Intake, checked
from streams.control.privacy.messages import command_message, controller_message
from streams.control.privacy.request_cut import RequestCut, RequestRecords, dead_letter_audit
from streams.control.privacy.resolution import resolve_step
from streams.control.retention.service import RetentionService, SqlLedgerUnitOfWork
from streams.errors import ContactflowError
from streams.kafka.outbox import Message, Outbox
from streams.keys import load_keys
from streams.ledger import (
    PrivacyRequests,
    UnknownCommandError,
    UnknownRequestError,
    session_factory,
)
from streams.telemetry import Telemetry

_MAX_STEPS = 8


@dataclass
class _Unit:
    session: Session
    requests: PrivacyRequests
    messages: list[Message] = field(default_factory=list)


@dataclass
class TickResult:
    """What one deadline check did."""

    resent: int = 0
    escalated_commands: int = 0
    escalated_requests: int = 0


class PrivacyService:
    """The privacy requests' orchestrator. It takes what it works with as arguments: the
    ledger's session factory (one transaction per action), an outbox (`encode`, `send`,
    `audit`, `close`: `streams.kafka.outbox.Outbox` on Kafka), the pseudonymiser, the
    retention service and, on Kafka only, the request topic's records to cut."""

    def __init__(
        self, sessions: sessionmaker[Session], outbox: Outbox, config: PrivacyConfig, *,
        pseudonymiser: Pseudonymiser, retention: RetentionService, telemetry: Telemetry,
        actor: str, request_records: RequestRecords | None = None,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._outbox = outbox
        self.serde = outbox.serde
        self._pseudonymiser = pseudonymiser
        self._config = config
        self._registry: ConsumerRegistry = config.registry
        self._actor = actor
        self._retention = retention
        self._instruments = PrivacyInstruments(telemetry, sessions)
        self._request_records = request_records

    @classmethod
    def from_container(
        cls, container: Container, config: PrivacyConfig, *, actor: str
    ) -> PrivacyService:
        """The service over the container's ledger and Kafka, as the workers and CLI run it;
        its retention service shares its ledger sessions and its outbox (one producer)."""
        sessions = session_factory(container.ledger_engine)
        outbox = Outbox(container.settings.kafka_client_config(), container.topics,
                        container.schemas)  # fmt: skip
        return cls(
            sessions, outbox, config,
            pseudonymiser=Pseudonymiser(load_keys(container.settings).pseudonym_key),
            retention=RetentionService(SqlLedgerUnitOfWork(sessions), outbox,
                                       serde=outbox.serde, actor=actor,
                                       grace_days=config.grace_days),
            telemetry=container.telemetry, actor=actor,
            request_records=RequestRecords(container, sessions, outbox, actor),
        )  # fmt: skip

    # -- intake --------------------------------------------------------------------------

    def submit(self, intake: Intake, now: datetime, *, via: str | None = None) -> PrivacyRequest:
        """Store a new request (or return the stored one with that id) and move it on;
        `via` names the topic it came from (the evidence says whether a record was cut).
        A receipt time or purpose that may not be taken in raises `RequestRefused`."""
        request_id, intake = checked(intake, now, self._config.request_purposes).with_id()
        with self._instruments.span("privacy.intake", request_id, intake.request_type):
            step = privacy.submit(
                request_id, intake.request_type, intake.received_at, intake.submitted_by, now,
                verified_by=intake.verified_by, purpose=intake.purpose,
            )  # fmt: skip
            with self._unit() as unit:
                digests = intake.digests(self._pseudonymiser)
                request, created = unit.requests.submit(step, digests, self._actor, now)
                if created:
                    extra: dict[str, object] = {"identifiers": len(digests)}
                    if intake.reason is not None:
                        extra["reason"] = intake.reason
                    if via is not None:
                        extra["via"] = via
                    self._audit(unit, step, request, now, extra)
        return self.advance(request_id, now)

    def submit_message(self, value: bytes, now: datetime) -> PrivacyRequest:
        """A `PrivacyRequest` from privacy.requests.v1."""
        from streams.control.privacy.intake import from_message

        _, record = self.serde.deserialize(value, "PrivacyRequest")
        return self.submit(from_message(record), now, via=PRIVACY_REQUESTS)

    def verify(self, request_id: str, by: str, now: datetime) -> PrivacyRequest:
        with self._instruments.span("privacy.intake", request_id), self._unit() as unit:
            request = self._get(unit, request_id)
            self._apply(unit, privacy.verify(request, by, now), now)
        return self.advance(request_id, now)

    def reject(self, request_id: str, reason: str, by: str, now: datetime) -> PrivacyRequest:
        with self._instruments.span("privacy.intake", request_id), self._unit() as unit:
            request = self._get(unit, request_id)
            return self._apply(unit, privacy.reject_unverified(request, reason, by, now), now)

    def extend(self, request_id: str, months: int, reason: str, now: datetime) -> PrivacyRequest:
        with self._instruments.span("privacy.deadlines", request_id), self._unit() as unit:
            request = self._get(unit, request_id)
            step = privacy.extend(request, months, reason, now)
            return self._apply(unit, step, now, {"reason": reason})

    # -- the controller's instruction, consumers' answers ---------------------------------

    def instruct(
        self, request_id: str, decision: str, reason: str | None, by: str, now: datetime
    ) -> PrivacyRequest:
        with self._instruments.span("privacy.instruction", request_id), self._unit() as unit:
            request = self._get(unit, request_id)
            step = privacy.instruct(request, decision, reason, by, now)
            extra = {} if reason is None else {"reason": reason}
            if step.event != "instruction_repeated":  # a redelivery changes nothing
                self._apply(unit, step, now, extra)
        return self.advance(request_id, now)

    def instruct_message(self, value: bytes, now: datetime) -> PrivacyRequest:
        """A `ControllerInstruction` from privacy.instructions.v1."""
        _, record = self.serde.deserialize(value, "ControllerInstruction")
        by = f"controller:{record['controller']}"
        return self.instruct(record["request_id"], record["decision"], record["reason"], by, now)

    def acknowledge(
        self, command_id: str, outcome: str, reason: str | None, now: datetime
    ) -> PrivacyRequest:
        with self._instruments.span("privacy.ack", None) as span, self._unit() as unit:
            before = unit.requests.get_command(command_id)
            if before is None:
                raise UnknownCommandError(command_id)
            span.set_attribute("contactflow.request_id", before.request_id)
            after = record_answer(before, outcome, reason, now)
            if after != before:
                unit.requests.update_command(before, after, "answered", self._actor, now)
                self._audit_command(unit, after, "command.answered", now)
        return self.advance(before.request_id, now)

    def acknowledge_message(self, value: bytes, now: datetime) -> PrivacyRequest:
        """An `Acknowledgement` from privacy.acks.v1."""
        _, record = self.serde.deserialize(value, "Acknowledgement")
        return self.acknowledge(record["command_id"], record["outcome"], record["reason"], now)

    # -- moving requests on ----------------------------------------------------------------

    def advance(self, request_id: str, now: datetime) -> PrivacyRequest:
        """Take every transition that needs no outside input, one transaction each."""
        for _ in range(_MAX_STEPS):
            with self._unit() as unit:
                moved = self._next(unit, self._get(unit, request_id), now)
            if not moved:
                break
        return self.get(request_id)

    def record_export(self, request_id: str, records: int, now: datetime) -> PrivacyRequest:
        """An access or portability export was written: the request can complete."""
        with self._unit() as unit:
            request = self._get(unit, request_id)
            exported = self._apply(unit, privacy.exported(request, records, now), now)
            self._apply(unit, commands_issued(exported, self._registry, [], now), now)
        return self.advance(request_id, now)

    def tick(self, now: datetime) -> TickResult:
        """Re-send unanswered commands, escalate silent or failed consumers and overdue
        requests (once each): an audit event on privacy.audit.v1 and a metric."""
        result = TickResult()
        with self._instruments.span("privacy.deadlines", None), self._unit() as unit:
            attention = unit.requests.commands_needing_attention(now)
            for command in commands_to_resend(attention, self._registry, now):
                again = resend(command, self._registry, now)
                unit.requests.update_command(command, again, "resent", self._actor, now)
                unit.messages.append(self._command_message(unit, again))
                result.resent += 1
            attention = unit.requests.commands_needing_attention(now)
            for command in commands_to_escalate(attention, self._registry, now):
                marked = escalate_command(command, now)
                unit.requests.update_command(command, marked, "command_escalated", self._actor, now)
                self._audit_command(unit, marked, "escalation.consumer", now)
                self._instruments.escalations.add(
                    1, {"kind": "consumer", "consumer": command.consumer}
                )
                result.escalated_commands += 1
            for request in unit.requests.overdue(now):
                if request.escalated_at is None:
                    self._apply(unit, privacy.escalate(request, now), now)
                    self._instruments.escalations.add(
                        1, {"kind": "request", "type": request.request_type}
                    )
                    result.escalated_requests += 1
        return result

    # -- reading ---------------------------------------------------------------------------

    def get(self, request_id: str) -> PrivacyRequest:
        with self._sessions() as session:
            request = PrivacyRequests(session).get(request_id)
        if request is None:
            raise UnknownRequestError(request_id)
        return request

    def sessions(self) -> Any:
        """The ledger session factory (for reports and exports)."""
        return self._sessions

    def dead_letter(
        self, message: Any, stage: str, error: Exception, now: datetime, *,
        code: str | None = None,
    ) -> None:  # fmt: skip
        """Park an input record the privacy app cannot use, with its bytes and the reason
        (`code`, by default the exception's type, and its message: messages here never
        hold personal data), and say so in the audit log: the request topic's cut may then
        pass the record."""
        code = code or type(error).__name__
        self._retention.dead_letter(message.topic(), message.partition(), message.offset(),
                                    message.key(), message.value(), stage, code, str(error),
                                    now)  # fmt: skip
        with self._unit() as unit:
            unit.messages.append(dead_letter_audit(
                self._outbox, unit.session, self._actor, now, topic=message.topic(),
                partition=message.partition(), offset=message.offset(), key=message.key(),
                reason_code=code,
            ))  # fmt: skip

    def cut_taken_in_requests(
        self, now: datetime, partitions: Iterable[int] | None = None
    ) -> RequestCut:
        """Delete the records of privacy.requests.v1 the ledger has taken in (their
        identifiers in clear are needed no more); see `streams.control.privacy.request_cut`."""
        return self._records().cut_taken_in(now, partitions)

    @property
    def requests_topic(self) -> str:
        return self._records().topic

    def close(self) -> None:
        if self._request_records is not None:
            self._request_records.close()
        self._outbox.close()
        self._retention.close()

    # -- internals -------------------------------------------------------------------------

    def _records(self) -> RequestRecords:
        if self._request_records is None:
            raise ContactflowError("this privacy service was built without the request topic")
        return self._request_records

    def _next(self, unit: _Unit, request: PrivacyRequest, now: datetime) -> bool:
        state = request.state
        if state == RequestState.RECEIVED:
            self._resolve(unit, request, now)
        elif state == RequestState.RESOLVED:
            step = privacy.route(request, self._config.standing, now)
            routed = self._apply(unit, step, now)
            if step.details.get("forward_to_controller") in {"for_instruction", "for_information"}:
                unit.messages.append(controller_message(self._outbox, routed, now))
        elif state == RequestState.AWAITING_CONTROLLER:
            self._execute(unit, request, now)  # COMNEXIO's own part goes out meanwhile
            return False
        elif state == RequestState.EXECUTING:
            if request.request_type in privacy.EXPORTED:
                return False  # waits for `dsr export`
            request = self._execute(unit, request, now)
            mine = unit.requests.commands(request.request_id)
            self._apply(unit, commands_issued(request, self._registry, mine, now), now)
        elif state == RequestState.AWAITING_ACKS:
            mine = unit.requests.commands(request.request_id)
            if not ready_to_complete(request, mine):
                return False
            self._apply(unit, complete(request, mine, now), now)
            unit.requests.discard_identifiers(request.request_id, self._actor, now)
        else:
            if not request.is_open and unit.requests.identifiers(request.request_id):
                unit.requests.discard_identifiers(request.request_id, self._actor, now)
            return False
        return True

    def _resolve(self, unit: _Unit, request: PrivacyRequest, now: datetime) -> None:
        versions = {"policy_version": self._config.policy_version,
                    "consumers_version": self._registry.version}  # fmt: skip
        step = resolve_step(unit.session, request, now, versions,
                            self._config.purpose_controllers,
                            self._pseudonymiser.subject_pseudonym)  # fmt: skip
        self._apply(unit, step, now)

    def _execute(self, unit: _Unit, request: PrivacyRequest, now: datetime) -> PrivacyRequest:
        with self._instruments.span("privacy.execute", request.request_id, request.request_type):
            return self._execute_allowed(unit, request, now)

    def _execute_allowed(
        self, unit: _Unit, request: PrivacyRequest, now: datetime
    ) -> PrivacyRequest:
        todo = privacy.executable_controllers(request) - request.executed_for
        if todo:
            effects = self._effects(unit, request, todo, now)
            request = self._apply(unit, privacy.execute(request, todo, effects.evidence, now), now)
            unit.messages.extend(effects.messages)
        issued = {c.command_id for c in unit.requests.commands(request.request_id)}
        planned = plan_commands(request, self._registry, issued, now)
        for command in unit.requests.add_commands(planned, self._actor, now):
            unit.messages.append(self._command_message(unit, command))
        return request

    def _effects(
        self, unit: _Unit, request: PrivacyRequest, todo: frozenset[str], now: datetime
    ) -> execution.Effects:
        effects = execution.Effects()
        if request.request_type == RequestType.ERASURE:
            erased, messages = self._retention.erase_recordings(
                unit.session, list(request.subjects), set(todo), request.request_id, now
            )
            effects.messages.extend(messages)
            effects.evidence |= {"recordings_deleted": len(erased.deleted),
                                 "recordings_retained_under_hold": len(erased.held)}  # fmt: skip
            forgotten = execution.forget_footprints(unit.session, request, todo)
            effects.evidence["footprints_removed"] = forgotten
            if not privacy.all_agreed(request, request.executed_for | todo):
                effects.evidence["keys_shredded"] = 0  # another controller has not agreed
                return effects
            effects.evidence |= execution.shred_subjects(unit.session, request, now)
        if privacy.state_changes_now(request, todo):
            state = execution.apply_state(unit.session, self._outbox, request, now)
            effects.messages.extend(state.messages)
            effects.evidence |= state.evidence
        return effects

    def _command_message(self, unit: _Unit, command: ConsumerCommand) -> Message:
        return command_message(self._outbox, unit.session, self._registry, command)

    def _apply(
        self, unit: _Unit, step: Step, now: datetime, extra: Mapping[str, object] | None = None
    ) -> PrivacyRequest:
        request = unit.requests.apply(step, self._actor, now)
        self._audit(unit, step, request, now, extra)
        return request

    def _audit(
        self, unit: _Unit, step: Step, request: PrivacyRequest, now: datetime,
        extra: Mapping[str, object] | None = None,
    ) -> None:  # fmt: skip
        details = {"type": request.request_type.value, "state": request.state.value,
                   **dict(step.details), **(extra or {})}  # fmt: skip
        action = "escalation.request" if step.event == "escalated" else f"request.{step.event}"
        message = self._outbox.audit(unit.session, self._actor, action, now,
                                     request_id=request.request_id, details=details)  # fmt: skip
        unit.messages.append(message)
        self._instruments.transitions.add(
            1, {"type": request.request_type.value, "event": step.event}
        )

    def _audit_command(
        self, unit: _Unit, command: ConsumerCommand, action: str, now: datetime
    ) -> None:
        details = {"command_id": command.command_id, "consumer": command.consumer,
                   "command": command.command.value, "controller": command.controller,
                   "attempt": command.attempt,
                   "outcome": "" if command.outcome is None else command.outcome.value}  # fmt: skip
        subject = command.subject_pseudonym
        message = self._outbox.audit(unit.session, self._actor, action, now,
                                     request_id=command.request_id, subject=subject,
                                     details=details)  # fmt: skip
        unit.messages.append(message)

    def _get(self, unit: _Unit, request_id: str) -> PrivacyRequest:
        request = unit.requests.get(request_id)
        if request is None:
            raise UnknownRequestError(request_id)
        return request

    @contextmanager
    def _unit(self) -> Iterator[_Unit]:
        with self._sessions.begin() as session:
            unit = _Unit(session, PrivacyRequests(session))
            yield unit
            self._outbox.send(unit.messages, "privacy")
