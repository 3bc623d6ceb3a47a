"""PrivacyService without Kafka or a container: the real ledger on SQLite, an outbox that
keeps what it is given. Whose processing a request reaches, when the subject state is
published, what a refusal leaves, and that a refused send commits nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from doubles import MemoryOutbox
from sqlalchemy.orm import Session, sessionmaker

from processors.consumers import parse_registry
from processors.identity import normalise_phone
from processors.policy import parse_policy
from processors.privacy import RequestType
from processors.pseudonym import Pseudonymiser
from processors.request_intake import request_purposes
from processors.request_scope import purpose_controllers
from schemas.topic_names import (
    PRIVACY_CONTROLLER_ORES,
    PRIVACY_ERASURE,
    PRIVACY_RESTRICTION,
    PRIVACY_SUBJECT_STATE,
)
from streams.control.privacy.config import PrivacyConfig
from streams.control.privacy.intake import Intake, identifiers
from streams.control.privacy.service import PrivacyService
from streams.control.retention.service import RetentionService, SqlLedgerUnitOfWork
from streams.kafka.outbox import OutboxRefused
from streams.ledger import PrivacyRequests, SubjectIndex, create_ledger_engine, upgrade
from streams.ledger.engine import session_factory
from streams.ledger.hotpath import add_footprints
from streams.telemetry import Telemetry

INFRA = Path(__file__).resolve().parents[3] / "infra"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PSEUDONYMS = Pseudonymiser(b"unit-test-pseudonym-key-32-bytes")
PHONE = "+32 471 55 66 77"


def _config() -> PrivacyConfig:
    policy = parse_policy(yaml.safe_load((INFRA / "policy.yaml").read_text()))
    return PrivacyConfig(
        registry=parse_registry(yaml.safe_load((INFRA / "consumers.yaml").read_text())),
        standing=frozenset(), policy_version=policy.version,
        purpose_controllers=purpose_controllers(policy),
        grace_days=policy.release_grace_days, request_purposes=request_purposes(policy),
    )  # fmt: skip


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = create_ledger_engine(url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
def service(sessions: sessionmaker[Session], outbox: MemoryOutbox) -> Iterator[PrivacyService]:
    retention = RetentionService(SqlLedgerUnitOfWork(sessions), outbox, serde=outbox.serde,
                                 actor="test", grace_days=7)  # fmt: skip
    privacy = PrivacyService(sessions, outbox, _config(), pseudonymiser=PSEUDONYMS,  # type: ignore[arg-type]
                             retention=retention, telemetry=Telemetry.in_memory(),
                             actor="test")  # fmt: skip
    yield privacy
    privacy.close()


def _seen(sessions: sessionmaker[Session], *controllers: str) -> str:
    """A person the router met on the phone, handled for `controllers`."""
    digest = PSEUDONYMS.identifier_digest(normalise_phone(PHONE))
    with sessions.begin() as session:
        subject = SubjectIndex(session).resolve_or_create(
            [("phone", digest)], PSEUDONYMS.subject_pseudonym, NOW
        )
        add_footprints(session, [(subject, c, "phone") for c in controllers], NOW)
    return subject


def _intake(kind: str, purpose: str | None = None, phone: str = PHONE) -> Intake:
    return Intake(request_type=kind, identifiers=identifiers([("phone", phone)]),
                  submitted_by="dpo", received_at=NOW, verified_by="id_card_copy",
                  purpose=purpose)  # fmt: skip


def test_an_objection_to_coaching_from_an_ores_only_person_is_comnexios_at_once(
    service: PrivacyService, sessions: sessionmaker[Session], outbox: MemoryOutbox
) -> None:
    subject = _seen(sessions, "ORES")
    request = service.submit(_intake("objection", "coaching"), NOW)
    assert (request.state, request.controllers) == ("awaiting_acks", frozenset({"COMNEXIO"}))
    assert request.executed_for == frozenset({"COMNEXIO"})
    ((key, state),) = outbox.on(PRIVACY_SUBJECT_STATE)
    assert key == subject.encode()
    assert state is not None
    assert state["objected_purposes"] == ["coaching"]
    stops = {(c["consumer"], c["command"]) for _, c in outbox.on(PRIVACY_RESTRICTION) if c}
    assert ("coaching_tool", "stop_purpose") in stops
    assert outbox.on(PRIVACY_CONTROLLER_ORES) == []


def test_a_restriction_of_a_person_never_seen_makes_their_subject_and_waits_for_ores(
    service: PrivacyService, sessions: sessionmaker[Session], outbox: MemoryOutbox
) -> None:
    request = service.submit(_intake("restriction"), NOW)
    assert request.state == "awaiting_controller"
    assert len(request.subjects) == 1
    digest = PSEUDONYMS.identifier_digest(normalise_phone(PHONE))
    with sessions() as session:
        assert SubjectIndex(session).lookup(digest) == request.subjects[0]
        (resolved,) = [e for e in PrivacyRequests(session).events(request.request_id)
                       if e.event == "resolved"]  # fmt: skip
    assert resolved.details["subject_made_for_request"] is True
    assert resolved.details["controller_inferred"] is True
    assert len(outbox.on(PRIVACY_CONTROLLER_ORES)) == 1
    assert outbox.on(PRIVACY_SUBJECT_STATE) == []  # ORES has not agreed yet

    executed = service.instruct(request.request_id, "execute", None, "controller:ORES", NOW)
    assert executed.executed_for == frozenset({"ORES"})
    ((_, state),) = outbox.on(PRIVACY_SUBJECT_STATE)
    assert state is not None
    assert state["restricted"] is True


def test_an_erasure_refused_by_ores_erases_comnexios_part_and_keeps_the_key(
    service: PrivacyService, sessions: sessionmaker[Session], outbox: MemoryOutbox
) -> None:
    _seen(sessions, "ORES", "COMNEXIO")
    request = service.submit(_intake("erasure"), NOW)
    assert (request.state, request.executed_for) == ("awaiting_controller", {"COMNEXIO"})
    refused = service.instruct(request.request_id, "refuse", "contract ongoing",
                               "controller:ORES", NOW + timedelta(hours=1))  # fmt: skip
    assert refused.executed_for == frozenset({"COMNEXIO"})
    with sessions() as session:
        executed = [e for e in PrivacyRequests(session).events(request.request_id)
                    if e.event == "executed"]  # fmt: skip
    assert [e.details["keys_shredded"] for e in executed] == [0]  # ORES's data needs it
    assert {c["controller"] for _, c in outbox.on(PRIVACY_ERASURE) if c} == {"COMNEXIO"}
    assert outbox.on(PRIVACY_SUBJECT_STATE) == []


def test_a_request_kafka_refuses_is_not_stored(
    service: PrivacyService, sessions: sessionmaker[Session], outbox: MemoryOutbox
) -> None:
    outbox.refusing = True
    with pytest.raises(OutboxRefused):
        service.submit(_intake("restriction"), NOW)
    with sessions() as session:
        assert PrivacyRequests(session).open_requests() == []  # rolled back with the send
    outbox.refusing = False
    again = service.submit(_intake("restriction"), NOW)
    assert again.request_type == RequestType.RESTRICTION
