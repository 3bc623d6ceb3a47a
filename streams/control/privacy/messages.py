"""The messages a request sends: the request forwarded to ORES and downstream commands.

Commands carry ids, codes and pseudonyms only: the held recordings a consumer storing
recordings must keep, and for a rectification the identifier kinds corrected (the
values stay in the controller's system of record).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from processors.consumers import Command, ConsumerRegistry
from processors.privacy import PrivacyRequest
from processors.privacy_commands import ConsumerCommand
from schemas.topic_names import (
    PRIVACY_CONTROLLER_ORES,
    PRIVACY_ERASURE,
    PRIVACY_INSTRUCTIONS,
    PRIVACY_RESTRICTION,
)
from streams.kafka.outbox import Message, Outbox
from streams.ledger import PrivacyRequests, RetentionLedger

ERASURE, RESTRICTION = PRIVACY_ERASURE, PRIVACY_RESTRICTION


def command_message(
    outbox: Outbox, session: Session, registry: ConsumerRegistry, command: ConsumerCommand
) -> Message:
    """`command` as a DownstreamCommand on privacy.erasure.v1 (erase) or .restriction.v1."""
    requests = PrivacyRequests(session)
    request = requests.get(command.request_id)
    held: list[str] = []
    kinds: list[str] = []
    consumer = registry.consumers.get(command.consumer)
    if command.command == Command.ERASE and consumer is not None and consumer.stores_recordings:
        recordings = RetentionLedger(session).recordings_for("subject", command.subject_pseudonym)
        held = [r.recording_id for r in recordings
                if r.state == "held" and r.controller == command.controller]  # fmt: skip
    if command.command == Command.RECTIFY:
        kinds = sorted({kind for kind, _ in requests.identifiers(command.request_id)})
    value = {
        "command_id": command.command_id, "request_id": command.request_id,
        "command": command.command.value, "consumer": command.consumer,
        "subject_pseudonym": command.subject_pseudonym, "controller": command.controller,
        "purpose": None if request is None else request.purpose,
        "issued_at": command.issued_at, "answer_by": command.answer_by,
        "attempt": command.attempt, "held_recordings": held, "rectified_kinds": kinds,
    }  # fmt: skip
    topic = ERASURE if command.command == Command.ERASE else RESTRICTION
    encoded = outbox.encode("DownstreamCommand", value)
    return topic, command.subject_pseudonym.encode(), encoded


def controller_message(outbox: Outbox, request: PrivacyRequest, now: datetime) -> Message:
    """The request as ORES sees it on privacy.controller.ores.v1 (pseudonyms only)."""
    value = {
        "request_id": request.request_id, "request_type": request.request_type.value,
        "subject_pseudonyms": list(request.subjects), "controller": "ORES",
        "forwarded_at": now, "due_at": request.deadline,
    }  # fmt: skip
    encoded = outbox.encode("ControllerRequest", value)
    return PRIVACY_CONTROLLER_ORES, request.request_id.encode(), encoded


def send_ores_instruction(
    outbox: Outbox, request_id: str, decision: str, reason: str | None, now: datetime
) -> None:
    """ORES's instruction on privacy.instructions.v1, as its system would send it (the CLI
    and the demo stand in for that system)."""
    value = {"request_id": request_id, "decision": decision, "reason": reason,
             "decided_at": now, "controller": "ORES"}  # fmt: skip
    encoded = outbox.encode("ControllerInstruction", value)
    outbox.send([(PRIVACY_INSTRUCTIONS, request_id.encode(), encoded)], "instruction")
