"""The reporting app on the real broker: contact events of all five channels go through the
router and the app, and every published figure is compared, exactly, with KPIs computed
by hand below. The events include a restricted subject, a subject who objected to
reporting, late events, a group under k, and a late-but-in-grace event that replaces a
published figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reporting_flow import (
    at,
    example,
    phone,
    reporting_app,
    run_cli,
    send_and_route,
    wait_until,
)

from processors.identity import normalise_phone
from processors.kpi import BRUSSELS, day_window, hour_window, week_window
from processors.pseudonym import Pseudonymiser
from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_RESTRICTED, PRIVACY_SUBJECT_STATE
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.reporting.figures import published

pytestmark = pytest.mark.integration

K = 3  # CONTACTFLOW_KPI_MIN_SUBJECTS of this test
ENV = {"CONTACTFLOW_KPI_MIN_SUBJECTS": str(K), "CONTACTFLOW_KPI_PUBLISH_INTERVAL_S": "0.5"}
RESTRICTED, OBJECTING = phone(9001), phone(9002)


def _event(channel: str, kind: str, when: datetime, who: str, *, envelope: dict[str, Any]
           | None = None, **payload: Any) -> tuple[str, dict[str, Any]]:  # fmt: skip
    event = at(example(channel, kind), when, phone=who)
    event["envelope"].update({"site": "gosselies", "language": "fr", **(envelope or {})})
    event["payload"].update(payload)
    return channel, event


def _iso(when: datetime) -> str:
    return when.isoformat()


def _calls(h0: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Queue ores-outage-fr at Gosselies: 4 offered, 3 answered (10 s, 30 s, 20 s), 1
    abandoned; handling 100+20, 200+0, 60 s. The restricted and the objecting person's
    calls must not count."""
    t = h0 + timedelta(minutes=5)
    answered: dict[str, Any] = {"outcome": "answered", "agent_id": "agent-gos-001"}
    return [
        _event("phone", "inbound_call", t, phone(1), queued_at=_iso(t),
               answered_at=_iso(t + timedelta(seconds=10)), duration_s=100, wrap_up_s=20,
               **answered),
        _event("phone", "inbound_call", t, phone(2), queued_at=_iso(t),
               answered_at=_iso(t + timedelta(seconds=30)), duration_s=200, wrap_up_s=0,
               **answered),
        _event("phone", "inbound_call", t, phone(3), queued_at=_iso(t), answered_at=None,
               agent_id=None, outcome="abandoned", duration_s=40, wrap_up_s=None),
        # no queued_at: the wait runs from occurred_at; exactly 20 s is within the level
        _event("phone", "inbound_call", t, phone(4), queued_at=None,
               answered_at=_iso(t + timedelta(seconds=20)), duration_s=60, wrap_up_s=None,
               **answered),
        _event("phone", "inbound_call", t, RESTRICTED, queued_at=_iso(t),
               answered_at=_iso(t + timedelta(seconds=1)), duration_s=999, **answered),
        _event("phone", "inbound_call", t, OBJECTING, queued_at=_iso(t),
               answered_at=_iso(t + timedelta(seconds=1)), duration_s=999, **answered),
    ]  # fmt: skip


def _small_group(h0: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Two people calling Eupen: fewer than k, withheld."""
    t = h0 + timedelta(minutes=7)
    return [_event("phone", "inbound_call", t, phone(n), envelope={"site": "eupen"},
                   queued_at=_iso(t), answered_at=_iso(t + timedelta(seconds=5)),
                   duration_s=50, wrap_up_s=0, outcome="answered")
            for n in (11, 12)]  # fmt: skip


def _digital(h0: datetime) -> list[tuple[str, dict[str, Any]]]:
    t = h0 + timedelta(minutes=10)
    bot: dict[str, Any] = {
        "envelope": {"service": "chatbot"},
        "started_at": _iso(t),
        "ended_at": _iso(t),
    }
    mail = {"service": "customer_contact"}
    social = {"service": "social_moderation"}
    return [
        # chat: 1 bot only, 1 handed to an agent, 1 agent chat; first answers 2, 4, 6 s
        _event("chat", "chatbot_session", t, phone(21), handed_to_agent=False, agent_id=None,
               first_response_at=_iso(t + timedelta(seconds=2)), **bot),
        _event("chat", "chatbot_session", t, phone(22), handed_to_agent=True,
               first_response_at=_iso(t + timedelta(seconds=4)), **bot),
        _named("chat", "chat_session", t, phone(23), handed_to_agent=False,
               first_response_at=_iso(t + timedelta(seconds=6)), **bot),
        # e-mail (mailbox service@): 3 received; 2 answers, after 1 h and 2 h
        *(_event("email", "email_received", t, phone(n), envelope=mail,
                 mailbox="service@ores.example", in_reply_to=None) for n in (31, 32, 33)),
        _event("email", "email_sent", t, phone(31), envelope=mail, mailbox="service@ores.example",
               in_reply_to="<m31>", replied_to_received_at=_iso(t - timedelta(hours=1))),
        _event("email", "email_sent", t, phone(32), envelope=mail, mailbox="service@ores.example",
               in_reply_to="<m32>", replied_to_received_at=_iso(t - timedelta(hours=2))),
        # complaints by e-mail (mailbox plaintes@): 3, counted per ISO week too
        *(_event("email", "email_received", t, phone(n), envelope={"service": "complaint"},
                 mailbox="plaintes@ores.example", in_reply_to=None) for n in (41, 42, 43)),
        # social: 3 comments, 1 moderated, 1 reply after 30 min
        *(_event("social", "comment_received", t, phone(n), envelope=social)
          for n in (51, 52, 53)),
        _event("social", "moderated", t, phone(51), envelope=social),
        _event("social", "reply_sent", t, phone(52), envelope=social,
               comment_received_at=_iso(t - timedelta(minutes=30))),
        # surveys about phone contacts: scores 10, 8, 3; CSAT 5, 4, 2
        *(_event("survey", "survey_answered", t, phone(n),
                 envelope={"service": "satisfaction_survey"}, score=score, csat=csat,
                 related_channel="phone", survey_type="nps")
          for n, score, csat in ((61, 10, 5), (62, 8, 4), (63, 3, 2))),
    ]  # fmt: skip


def _named(channel: str, kind: str, when: datetime, who: str, **rest: Any) -> Any:
    """An event of a kind the catalog's examples do not show (same payload record)."""
    name, event = _event(channel, "chatbot_session", when, who, **rest)
    event["kind"] = kind
    return name, event


def _subject(container: Any, number: str) -> str:
    pseudonymiser = Pseudonymiser(load_keys(container.settings).pseudonym_key)
    return pseudonymiser.subject_pseudonym(pseudonymiser.identifier_digest(normalise_phone(number)))


def _publish_state(container: Any, number: str, **state: Any) -> None:
    from confluent_kafka import Producer

    subject = _subject(container, number)
    value = {"subject_pseudonym": subject, "restricted": False, "objected_purposes": [],
             "erased": False, "suppressed_from_surveys": False, "updated_at": datetime.now(UTC),
             "request_id": None, **state}  # fmt: skip
    encoded = AvroSerde(container.schemas).serialize(
        value, container.schemas.latest("SubjectState")
    )
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name(PRIVACY_SUBJECT_STATE), encoded, key=subject.encode())
    producer.flush()


def _key(window: Any, group: str) -> str:
    return f"{window.grain}|{window.label}|{group}"


def test_kpis_of_five_channels_match_hand_computed(container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    now = datetime.now(UTC)
    h0 = now.astimezone(BRUSSELS).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    _publish_state(container, RESTRICTED, restricted=True)
    _publish_state(container, OBJECTING, objected_purposes=["reporting"])
    late = now - timedelta(days=8)  # its hour, day and week ended more than 6 h ago
    send_and_route(container, [*_calls(h0), *_small_group(h0), *_digital(h0),
                               _event("phone", "inbound_call", late, phone(1))])  # fmt: skip
    hour, day, week = hour_window(h0), day_window(h0), week_window(h0)
    calls = "phone|gosselies|fr|ores-outage-fr"
    log = tmp_path / "reporting.log"
    with reporting_app(container, log, **ENV):
        wait_until(lambda: _key(hour, calls) in published(container), "the first figures", log)
        wait_until(lambda: len(published(container)) >= 15, "every figure", log)
        first = published(container)
        # a late event still inside the grace period updates its window: P5 answers in 5 s
        t = h0 + timedelta(minutes=50)
        in_grace = _event("phone", "inbound_call", t, phone(5), queued_at=_iso(t),
                          answered_at=_iso(t + timedelta(seconds=5)), duration_s=50,
                          wrap_up_s=0, outcome="answered")  # fmt: skip
        send_and_route(container, [in_grace])
        wait_until(lambda: published(container)[_key(hour, calls)]["revision"] == 5,
                   "the updated figure", log)  # fmt: skip
        since, until = day.start.date() - timedelta(days=9), now.date() + timedelta(days=1)
        verify = run_cli(container, "kpi", "verify", "--from", str(since), "--to", str(until),
                         **ENV)  # fmt: skip
    figures = published(container)

    phone_measures = {"offered": 4, "answered": 3, "abandoned": 1, "answered_in_sl": 2,
                      "answer_wait_ms": 60_000, "handle_ms": 380_000}  # fmt: skip
    assert first[_key(hour, calls)]["measures"] == phone_measures
    assert first[_key(hour, calls)]["revision"] == 4
    updated = {"offered": 5, "answered": 4, "abandoned": 1, "answered_in_sl": 3,
               "answer_wait_ms": 65_000, "handle_ms": 430_000}  # fmt: skip
    for window in (hour, day):
        figure = figures[_key(window, calls)]
        assert figure["measures"] == updated, window.grain
        assert not figure["suppressed"]
        assert not figure["final"]
    expected = {
        "phone|eupen|fr|ores-outage-fr": None,  # two people: withheld
        "chat|gosselies|fr|chatbot": {"conversations": 3, "bot_sessions": 2, "bot_only": 1,
                                      "handed_to_agent": 1, "first_responses": 3,
                                      "first_response_ms": 12_000},
        "email|gosselies|fr|service@ores.example": {"emails_received": 3, "emails_answered": 2,
                                                    "email_responses": 2,
                                                    "email_response_ms": 10_800_000},
        "email|gosselies|fr|plaintes@ores.example": {"emails_received": 3},
        "social|gosselies|fr|social_moderation": {"comments": 3, "moderated": 1, "replies": 1,
                                                  "social_responses": 1,
                                                  "social_response_ms": 1_800_000},
        "phone|gosselies|fr|satisfaction_survey": {"responses": 3, "promoters": 1,
                                                   "passives": 1, "detractors": 1,
                                                   "csat_answers": 3, "csat_sum": 11},
    }  # fmt: skip
    for group, measures in expected.items():
        for window in (hour, day):
            figure = figures[_key(window, group)]
            if measures is None:
                assert figure["suppressed"], group
                assert figure["measures"] == {}, group
            else:
                assert not figure["suppressed"], group
                assert figure["measures"] == measures, (group, window.grain)
    assert figures[_key(week, "email|gosselies|fr|plaintes@ores.example")]["measures"] == {
        "complaints": 3
    }
    assert {k for k in figures if k.startswith("week|")} == {
        _key(week, "email|gosselies|fr|plaintes@ores.example")
    }
    # 2 figures (hour, day) per group above, 1 week figure; nothing of the late event
    assert len(figures) == 2 * (len(expected) + 1) + 1
    late_day = day_window(late.astimezone(BRUSSELS)).label
    assert not [k for k in figures if late_day in k]
    # the restricted person's call is stored flagged, never seen by the reporting
    restricted = read_all(container.settings.kafka_client_config(),
                          container.topics.name(CONTACT_RESTRICTED))  # fmt: skip
    assert len(restricted) == 1
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # no personal data in anything the app published or logged
    kpi_topic = container.topics.name("reporting.kpi.v1")
    messages = read_all(container.settings.kafka_client_config(), kpi_topic)
    published_bytes = b"".join(m.value() or b"" for m in messages)
    for secret in ("+32 471", "+32471", "agent-gos", _subject(container, phone(1))):
        assert secret.encode() not in published_bytes
        assert secret not in log.read_text()
