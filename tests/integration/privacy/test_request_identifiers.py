"""A request's identifiers are on privacy.requests.v1 only until intake: once the ledger
holds a record's request (as keyed digests) or its dead letter, the record is cut (Kafka
DeleteRecords); a record the ledger does not hold stays, and so does every record behind
it in its partition. Read back with read_committed from the topic's beginning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from appproc import app_env, privacy_app, wait_for
from confluent_kafka import Consumer, Producer, TopicPartition
from flow import decoded, publish, route_person
from people import EMAIL, PHONE
from typer.testing import CliRunner

from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.cli import app
from streams.control.app import APP_ID
from streams.control.privacy.catchup import apply_privacy_topics
from streams.control.privacy.config import load_registry
from streams.control.privacy.evidence import request_report
from streams.control.privacy.request_cut import DEAD_LETTERED_ACTION, REMOVED_ACTION
from streams.control.privacy.service import PrivacyService
from streams.kafka.readback import read_all
from streams.ledger import AuditLog, UnknownRequestError, session_factory
from streams.ops.deadletters import DeadLetters
from streams.sdk.downstream.example import serve_registered

pytestmark = pytest.mark.integration
REQUESTS = "privacy.requests.v1"
NOW = datetime.now(UTC)
# every spelling of the person's phone and e-mail an intake system could send
SPELLINGS = (PHONE, "+32471556677", "0032471556677", "0471 55 66 77", "0471556677",
             "471556677", EMAIL, EMAIL.lower(), EMAIL.upper())  # fmt: skip


def _request(request_id: str, request_type: str = "erasure", **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": request_id, "request_type": request_type,
        "identifiers": [{"kind": "phone", "value": PHONE}, {"kind": "email", "value": EMAIL}],
        "purpose": None, "received_at": NOW, "verified_by": "id_card_copy",
        "submitted_by": "intake-portal", "reason": None, **overrides,
    }  # fmt: skip


def _in_clear(container: Container, logical: str = REQUESTS) -> list[str]:
    """Where a spelling of the person's identifiers shows in a record of the topic (key,
    value or header), read from its beginning with read_committed."""
    config = container.settings.kafka_client_config()
    found = []
    for message in read_all(config, container.topics.name(logical), committed_only=True):
        raw = b" ".join([message.key() or b"", message.value() or b"",
                         *(v or b"" for _, v in message.headers() or [])]).lower()  # fmt: skip
        found += [f"{message.partition()}@{message.offset()}: {spelling!r}"
                  for spelling in SPELLINGS if spelling.lower().encode() in raw]  # fmt: skip
    return found


def _records(container: Container) -> int:
    config = container.settings.kafka_client_config()
    return len(read_all(config, container.topics.name(REQUESTS), committed_only=True))


def test_after_an_erasure_no_request_record_holds_the_persons_identifiers(  # type: ignore[no-untyped-def]
    container, privacy: PrivacyService
) -> None:
    route_person(container, NOW)
    publish(container, REQUESTS, "PrivacyRequest", "dsr-cut-erasure", _request("dsr-cut-erasure"))
    # a bad request (a purpose is only for objections and withdrawals): dead-lettered
    bad = _request("dsr-cut-bad", purpose="direct_marketing")
    publish(container, REQUESTS, "PrivacyRequest", "dsr-cut-bad", bad)
    assert _in_clear(container), "the records hold the identifiers before intake"

    drained = apply_privacy_topics(container, privacy, NOW + timedelta(minutes=1))
    assert (drained.applied[REQUESTS], drained.dead_lettered) == (1, 1)
    cut = drained.requests_cut
    assert (cut.removed, cut.held, cut.refused) == (2, {}, {})
    assert _records(container) == 0, "both records cut once the ledger accounted for them"
    request = privacy.get("dsr-cut-erasure")
    assert request.state == "awaiting_controller"

    publish(container, "privacy.instructions.v1", "ControllerInstruction", request.request_id, {
        "request_id": request.request_id, "decision": "execute", "reason": None,
        "decided_at": NOW, "controller": "ORES"})  # fmt: skip
    apply_privacy_topics(container, privacy, NOW + timedelta(minutes=5))
    answered: list[str] = []
    serve_registered(container, load_registry(container).consumers, max_idle_s=2.0,
                     say=answered.append)  # fmt: skip
    assert answered
    apply_privacy_topics(container, privacy, NOW + timedelta(hours=1))
    done = privacy.get(request.request_id)
    assert done.state == "completed"

    assert _in_clear(container) == [], "no record of privacy.requests.v1 holds them"
    # the bad request's original bytes wait on the dead letters: purge reaches them
    (letter,) = [r for _, r in decoded(container, "contact.deadletter.v1")
                 if r["source_topic"] == container.topics.name(REQUESTS)]  # fmt: skip
    assert PHONE.encode() in letter["original_value"]
    later = NOW + timedelta(hours=2)  # the clock the dead letter was written with, moved on
    DeadLetters(container, actor="test").purge(later, later)
    assert _in_clear(container, "contact.deadletter.v1") == []

    with session_factory(container.ledger_engine)() as session:
        audit = AuditLog(session)
        removed = audit.entries(request_id=request.request_id, action=REMOVED_ACTION)
        assert [e.details["topic"] for e in removed] == [container.topics.name(REQUESTS)]
        assert len(audit.entries(action=DEAD_LETTERED_ACTION)) == 1
        assert audit.verify_chain().ok
        report = request_report(session, request.request_id, NOW, topics=container.topics)
    assert report["request_record"]["via_topic"] is True
    assert report["request_record"]["removed_at"] is not None
    raw = report["clear_copies"]["raw_topics"]
    assert raw["topics"] == [f"contact.raw.{c}.v1"
                             for c in ("chat", "email", "phone", "social", "survey")]  # fmt: skip
    assert raw["retention_ms"] == 3 * 86_400_000
    latest = done.closed_at + timedelta(days=3 + 7, hours=1, minutes=5)  # type: ignore[operator]
    assert raw["gone_by"] == latest.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert report["clear_copies"]["dead_letters"]["retention_ms"] == 14 * 86_400_000

    shown = CliRunner().invoke(app, ["dsr", "report", request.request_id], env=app_env(container))
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "request record on privacy.requests.v1: removed at" in text
    assert "kept at least 3 d after each was written" in text
    assert "deadletters purge" in text
    assert not any(spelling in shown.output for spelling in SPELLINGS)
    as_json = CliRunner().invoke(app, ["dsr", "report", request.request_id, "--format", "json"],
                                 env=app_env(container))  # fmt: skip
    assert json.loads(as_json.output)["clear_copies"]["raw_topics"]["gone_by"] == raw["gone_by"]


def test_a_record_not_taken_in_stays_with_every_record_behind_it(  # type: ignore[no-untyped-def]
    container, privacy: PrivacyService
) -> None:
    topic = container.topics.name(REQUESTS)
    serde, contract = AvroSerde(container.schemas), container.schemas.latest("PrivacyRequest")
    unverified = serde.serialize(_request("dsr-cut-first", verified_by=None), contract)
    later = serde.serialize(_request("dsr-cut-later", "restriction"), contract)
    producer = Producer(container.settings.kafka_client_config())
    for key, value in ((b"dsr-cut-first", unverified), (b"dsr-cut-later", later)):
        producer.produce(topic, value, key, partition=0)
    assert producer.flush(10) == 0
    # the app's group committed past both, as faust does for an event its agent failed on:
    # offsets prove nothing, the ledger does
    group = Consumer(
        {**container.settings.kafka_client_config(), "group.id": container.settings.scoped(APP_ID)}
    )
    group.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    group.close()
    privacy.submit_message(later, NOW)  # the ledger holds the later request only

    cut = privacy.cut_taken_in_requests(NOW)
    assert (cut.removed, cut.held) == (0, {0: 0})
    assert _records(container) == 2, "nothing cut: the first record is not in the ledger"
    with pytest.raises(UnknownRequestError):
        privacy.get("dsr-cut-first")

    processed = CliRunner().invoke(app, ["dsr", "process"], env=app_env(container))
    assert processed.exit_code == 0, processed.output  # its own group: from the beginning
    assert "removed 2 request record(s) taken in" in " ".join(processed.output.split())
    assert privacy.get("dsr-cut-first").state == "identity_unverified"  # taken in as digests
    assert _records(container) == 0
    assert _in_clear(container) == []
    again = apply_privacy_topics(container, privacy, NOW)  # the group starts past the cut
    assert (again.applied[REQUESTS], again.requests_cut.removed) == (0, 0)


def test_the_privacy_app_cuts_the_records_it_took_in(  # type: ignore[no-untyped-def]
    container, privacy: PrivacyService, tmp_path: Path
) -> None:
    publish(container, REQUESTS, "PrivacyRequest", "dsr-cut-app",
            _request("dsr-cut-app", verified_by=None))  # fmt: skip
    log = tmp_path / "privacy-app.log"

    def taken_in_and_cut() -> bool:
        try:
            state = privacy.get("dsr-cut-app").state
        except UnknownRequestError:
            return False
        return state == "identity_unverified" and _records(container) == 0

    with privacy_app(container, log):
        wait_for(taken_in_and_cut, "the app to take the request in and cut its record", log)
    assert _in_clear(container) == []
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert not any(spelling in text for spelling in SPELLINGS)
    with session_factory(container.ledger_engine)() as session:
        removed = AuditLog(session).entries(request_id="dsr-cut-app", action=REMOVED_ACTION)
    assert [e.actor for e in removed] == ["privacy-app"]
