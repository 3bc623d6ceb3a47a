"""The router on the real broker: routing, pseudonyms, encryption, quarantine, dead letters,
subject state, and no personal data in its telemetry or logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from people import EMAIL, HANDLE, PHONE, TEXT, example, fresh, one_person_on_five_channels

from processors.crypto import KeyUnavailable
from processors.identity import normalise_phone
from processors.pseudonym import Pseudonymiser
from schemas.serde import AvroSerde
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import KeyVault, session_factory, upgrade
from streams.plaintext import open_event, vault_lookup
from streams.router.worker import RouterWorker
from streams.sdk.producer import raw_topic

pytestmark = pytest.mark.integration

_fresh, _example = fresh, example
_one_person_on_five_channels = one_person_on_five_channels


def _route(container) -> RouterWorker:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    worker = RouterWorker(container)
    worker.run(max_idle_s=1.5)
    return worker


def _read(container, logical: str) -> list[Any]:  # type: ignore[no-untyped-def]
    return read_all(container.settings.kafka_client_config(), container.topics.name(logical))


def _decoded(container, logical: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    serde = AvroSerde(container.schemas)
    return [serde.deserialize(m.value())[1] for m in _read(container, logical)]


def test_one_person_across_five_channels(container) -> None:  # type: ignore[no-untyped-def]
    producer = container.producer()
    sent = _one_person_on_five_channels()
    coaching = _fresh(_example("phone", "recording_available"), phone=PHONE)
    coaching["envelope"]["purpose"] = "coaching"
    for channel, event in [*sent, ("phone", coaching)]:
        producer.send(channel, event)
    producer.flush()

    _route(container)

    ores = _decoded(container, "contact.ores.v1")
    comnexio = _decoded(container, "contact.comnexio.v1")
    assert sorted(t["event_id"] for t in ores) == sorted(e["envelope"]["event_id"] for _, e in sent)
    assert [t["event_id"] for t in comnexio] == [coaching["envelope"]["event_id"]]
    pseudonyms = {t["governance"]["subject_pseudonym"] for t in ores + comnexio}
    assert len(pseudonyms) == 1, "one person, one subject across channels"
    for tagged in ores:
        assert tagged["governance"]["controller"] == "ORES"
        assert tagged["governance"]["processor"] == "COMNEXIO"
        assert tagged["governance"]["policy_version"]
    assert comnexio[0]["governance"]["controller"] == "COMNEXIO"
    assert comnexio[0]["governance"]["purpose"] == "coaching"
    messages = _read(container, "contact.ores.v1")
    assert {m.key().decode() for m in messages} == pseudonyms
    # spellings with '+' or spaces cannot occur by chance in hex ids or base64url tokens
    for raw in (b"+32471556677", b"471 55 66 77", b"0032471556677", b"Lambert", b"lambert",
                TEXT.encode()):  # fmt: skip
        assert all(raw not in m.value() and raw not in m.key() for m in messages)
    recordings = _decoded(container, "recordings.standard.v1")
    assert len(recordings) == 3  # the chat transcript, the e-mail body, the coaching audio

    keys = load_keys(container.settings)
    serde = AvroSerde(container.schemas)
    sessions = session_factory(container.ledger_engine)
    with sessions() as session:
        opened = [open_event(serde, t, keys.master_key, vault_lookup(session)) for t in ores]
    by_id = {r["envelope"]["event_id"]: r for r in opened}
    chat_id = sent[1][1]["envelope"]["event_id"]
    assert by_id[chat_id]["envelope"]["subject"]["email"] == EMAIL
    assert by_id[chat_id]["payload"][1]["messages"][0]["text"] == TEXT

    with sessions.begin() as session:
        assert KeyVault(session).shred_subject(pseudonyms.pop(), datetime.now(UTC)) >= 1
    with sessions() as session:
        for tagged in ores + comnexio:
            with pytest.raises(KeyUnavailable):
                open_event(serde, tagged, keys.master_key, vault_lookup(session))


def test_unknown_purpose_or_service_is_quarantined(container) -> None:  # type: ignore[no-untyped-def]
    producer = container.producer()
    marketing = _fresh(_example("phone", "inbound_call"), phone=PHONE)
    marketing["envelope"]["purpose"] = "direct_marketing"
    horoscope = _fresh(_example("email", "email_sent"), email=EMAIL)
    horoscope["envelope"]["service"] = "horoscope"
    producer.send("phone", marketing)
    producer.send("email", horoscope)
    producer.flush()

    worker = _route(container)

    quarantined = _decoded(container, "contact.quarantine.v1")
    assert sorted(q["event_id"] for q in quarantined) == sorted(
        [marketing["envelope"]["event_id"], horoscope["envelope"]["event_id"]]
    )
    assert all(q["reason"].startswith("no policy rule") for q in quarantined)
    assert _read(container, "contact.ores.v1") == []
    assert worker.stats.events_in == 2


def _raw_producer(container) -> Producer:  # type: ignore[no-untyped-def]
    return Producer(container.settings.kafka_client_config())


def test_bad_inputs_become_dead_letters_and_the_worker_keeps_going(container) -> None:  # type: ignore[no-untyped-def]
    sdk = container.producer()
    phone_contract = sdk.contract("phone")
    good = _fresh(_example("phone", "inbound_call"), phone=PHONE)
    _, good_bytes = sdk.encode("phone", good)
    _, chat_bytes = sdk.encode("chat", _fresh(_example("chat", "chatbot_session"), email=EMAIL))
    mail = _fresh(_example("email", "email_received"), email=EMAIL)
    mail["payload"]["body"] = "Bonjour " + "x" * 600_000
    _, oversized = sdk.encode("email", mail)
    text_event = _fresh(_example("email", "email_received"), email=EMAIL)
    text_event["payload"]["subject"] = "Bonjour"
    _, text_bytes = sdk.encode("email", text_event)
    non_utf8 = text_bytes.replace(b"Bonjour", b"\xff\xfeonjour", 1)
    now = datetime.now(UTC)

    def timed(when: datetime) -> dict[str, Any]:
        event = _fresh(_example("phone", "click_to_call"), phone=PHONE)
        event["envelope"]["occurred_at"] = when.isoformat()
        return event

    semantic = {
        "invalid_phone": ("phone", _fresh(_example("phone", "click_to_call"), phone="12")),
        "invalid_email": ("email", _fresh(_example("email", "email_sent"), email="not-an-email")),
        "future": ("phone", timed(now + timedelta(days=30))),
        "before_2000": ("phone", timed(datetime(1999, 12, 31, tzinfo=UTC))),
    }
    raw = _raw_producer(container)
    phone_topic = container.topics.name(raw_topic("phone"))
    expected: dict[bytes, str] = {}

    def send_raw(topic: str, value: bytes, code: str) -> None:
        raw.produce(topic, value, key=b"k")
        expected[value] = code

    send_raw(phone_topic, good_bytes[: len(good_bytes) // 2], "malformed")
    send_raw(phone_topic, good_bytes[:2] + b"\x01" * 8 + good_bytes[10:], "unknown_fingerprint")
    send_raw(phone_topic, chat_bytes, "wrong_contract")
    send_raw(phone_topic, good_bytes[:10] + b"\x00" + good_bytes[10:], "malformed")  # null
    send_raw(container.topics.name(raw_topic("email")), oversized, "oversized")
    send_raw(container.topics.name(raw_topic("email")), non_utf8, "malformed")
    for code, (channel, event) in semantic.items():
        _, value = sdk.encode(channel, event)
        reason = "implausible_time" if code in ("future", "before_2000") else code
        send_raw(container.topics.name(raw_topic(channel)), value, reason)
    raw.produce(phone_topic, good_bytes, key=b"k")  # routed
    raw.produce(phone_topic, good_bytes, key=b"k")  # a retry: dropped
    reused = _fresh(_example("phone", "inbound_call"), phone=PHONE)
    reused["envelope"]["event_id"] = good["envelope"]["event_id"]
    _, reused_bytes = sdk.encode("phone", reused)
    send_raw(phone_topic, reused_bytes, "event_id_reused")
    raw.flush()

    worker = _route(container)

    dead = {bytes(d["original_value"]): d for d in _decoded(container, "contact.deadletter.v1")}
    assert {v: d["reason_code"] for v, d in dead.items()} == expected
    for letter in dead.values():
        assert letter["source_topic"].endswith((".contact.raw.phone.v1", ".contact.raw.email.v1"))
        assert letter["source_offset"] >= 0
        for secret in ("+32 471", "example.org", "Bonjour"):
            assert secret not in letter["reason"]
    routed = _decoded(container, "contact.ores.v1")
    assert [t["event_id"] for t in routed] == [good["envelope"]["event_id"]]
    assert worker.stats.events_in == len(expected) + 2
    assert phone_contract.name.endswith("PhoneContactEvent")


def _publish_state(container, subject: str, **state: Any) -> None:  # type: ignore[no-untyped-def]
    serde = AvroSerde(container.schemas)
    value = {
        "subject_pseudonym": subject, "restricted": False, "objected_purposes": [],
        "erased": False, "suppressed_from_surveys": False, "updated_at": datetime.now(UTC),
        "request_id": None, **state,
    }  # fmt: skip
    producer = _raw_producer(container)
    producer.produce(
        container.topics.name("privacy.subject-state.v1"),
        serde.serialize(value, container.schemas.latest("SubjectState")),
        key=subject.encode(),
    )
    producer.flush()


def _subject_of(container, phone: str) -> str:  # type: ignore[no-untyped-def]
    pseudonymiser = Pseudonymiser(load_keys(container.settings).pseudonym_key)
    return pseudonymiser.subject_pseudonym(pseudonymiser.identifier_digest(normalise_phone(phone)))


def test_restriction_and_objection_follow_the_subject_state(container) -> None:  # type: ignore[no-untyped-def]
    restricted_phone, objecting_phone = "+32 471 11 22 33", "+32 472 44 55 66"
    _publish_state(container, _subject_of(container, restricted_phone), restricted=True)
    _publish_state(
        container, _subject_of(container, objecting_phone), objected_purposes=["coaching"]
    )
    producer = container.producer()
    held = _fresh(_example("phone", "inbound_call"), phone=restricted_phone)
    coaching = _fresh(_example("phone", "recording_available"), phone=objecting_phone)
    coaching["envelope"]["purpose"] = "coaching"
    handled = _fresh(_example("phone", "inbound_call"), phone=objecting_phone)
    for event in (held, coaching, handled):
        producer.send("phone", event)
    producer.flush()

    _route(container)

    restricted = _decoded(container, "contact.restricted.v1")
    assert [r["event_id"] for r in restricted] == [held["envelope"]["event_id"]]
    assert restricted[0]["governance"]["restricted"] is True
    ores_ids = [t["event_id"] for t in _decoded(container, "contact.ores.v1")]
    assert ores_ids == [handled["envelope"]["event_id"]]
    assert _read(container, "contact.comnexio.v1") == [], "objected to coaching: never reaches it"

    _publish_state(container, _subject_of(container, restricted_phone), restricted=False)
    after = _fresh(_example("phone", "inbound_call"), phone=restricted_phone)
    producer.send("phone", after)
    producer.flush()
    _route(container)
    ores_ids = [t["event_id"] for t in _decoded(container, "contact.ores.v1")]
    assert after["envelope"]["event_id"] in ores_ids


def test_no_personal_data_in_logs_spans_or_metrics(
    container,
    telemetry,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    producer = container.producer()
    for channel, event in _one_person_on_five_channels():
        producer.send(channel, event)
    bad = _fresh(_example("phone", "click_to_call"), phone="0471 55 66 7")
    producer.send("phone", bad)
    producer.flush()

    worker = _route(container)

    assert worker.stats.events_in == 6
    captured = caplog.text + "\n" + telemetry.exported_text()
    assert "router batch" in captured
    assert "contactflow.router.events_in" in captured
    for secret in ("+32471556677", "471 55 66 77", "0471 55 66 7", "Lambert", "lambert",
                   "example.org", HANDLE, TEXT, "facture"):  # fmt: skip
        assert secret not in captured, f"personal data leaked: {secret!r}"
