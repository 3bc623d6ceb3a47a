"""The promises of issue #6, one role at a time, on the secured real broker."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr
from secureclients import read_outcomes

from schemas.examples import example_events
from schemas.serde import AvroSerde
from streams.control.privacy.catchup import apply_privacy_topics
from streams.control.privacy.config import load_privacy_config
from streams.control.privacy.service import PrivacyService
from streams.errors import ContactflowError
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import AuditLog, session_factory, upgrade
from streams.ops.acl.apply import authenticates
from streams.ops.deadletters import PURGED_ACTION, REPLAY_HEADER, DeadLetters
from streams.sdk.producer import CHANNELS, DeliveryError

pytestmark = pytest.mark.integration
TAGGED = ("contact.ores.v1", "contact.comnexio.v1", "contact.restricted.v1")


def _event(channel: str) -> dict:  # type: ignore[type-arg]
    event = copy.deepcopy(example_events(channel)[0])
    event["envelope"]["event_id"] = str(uuid.uuid4())
    return event


def _group_offsets_allowed(admin: AdminClient, group: str) -> bool:
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
    except KafkaException as exc:
        code = exc.args[0].code()
    else:
        return True
    assert code == KafkaError.GROUP_AUTHORIZATION_FAILED, code
    return False


def _all_topics(root) -> list[str]:  # type: ignore[no-untyped-def]
    return [root.topics.name(spec.name) for spec in root.topics.specs]


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_channel_producer_reads_nothing_and_writes_only_its_own_topic(  # type: ignore[no-untyped-def]
    as_role, channel: str
) -> None:
    root = as_role(f"producer-{channel}")
    outcomes = read_outcomes(root.settings.kafka_client_config(), _all_topics(root))
    assert {topic for topic, got in outcomes.items() if got is not None} == set()

    producer = root.producer()
    producer.send(channel, _event(channel))
    assert producer.flush().delivered == 1, "its own raw topic takes its events"
    other = next(c for c in CHANNELS if c != channel)
    for _ in range(2):  # the second time, librdkafka already knows and refuses at enqueue
        producer.send(other, _event(other))
        with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
            producer.flush()


def test_coaching_tool_reads_comnexio_but_never_ores_nor_restricted(as_role) -> None:  # type: ignore[no-untyped-def]
    root = as_role("coaching-tool")
    names = {t: root.topics.name(t) for t in TAGGED}
    outcomes = read_outcomes(root.settings.kafka_client_config(), names.values())
    assert outcomes[names["contact.comnexio.v1"]] is not None
    assert outcomes[names["contact.ores.v1"]] is None
    assert outcomes[names["contact.restricted.v1"]] is None, "restricted subjects never reach it"


def test_wrong_password_and_unknown_user_are_refused(secure, as_role) -> None:  # type: ignore[no-untyped-def]
    settings = as_role("router").settings
    right = secure.passwords["router"]
    assert authenticates(settings, "router", right, timeout=10)
    assert not authenticates(settings, "router", SecretStr("not-" + right.get_secret_value()), 10)
    assert not authenticates(settings, "nobody-of-ours", right, timeout=10)

    errors: list[KafkaError] = []
    producer = Producer(
        {**settings.kafka_client_config(), "sasl.username": "nobody-of-ours",
         "message.timeout.ms": 1500, "error_cb": errors.append}
    )  # fmt: skip
    delivered: list[KafkaError | None] = []
    producer.produce(as_role("router").topics.name("contact.ores.v1"), b"x",
                     on_delivery=lambda err, _m: delivered.append(err))  # fmt: skip
    producer.flush(10)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)
    assert delivered, "the delivery was reported"
    assert delivered[0] is not None, "nothing is written without a valid login"


def test_data_engineer_sees_metadata_and_dead_letters_never_payloads(as_role) -> None:  # type: ignore[no-untyped-def]
    root = as_role("data-engineer")
    config = root.settings.kafka_client_config()
    every = _all_topics(root)
    outcomes = read_outcomes(config, every)
    readable = {topic for topic, got in outcomes.items() if got is not None}
    assert readable == {root.topics.name("contact.deadletter.v1")}
    for topic in TAGGED + tuple(f"contact.raw.{c}.v1" for c in CHANNELS):
        assert outcomes[root.topics.name(topic)] is None, topic

    admin = AdminClient(config)
    described = admin.list_topics(timeout=10).topics
    assert set(every) <= set(described), "it describes every topic (operations, lag)"
    assert _group_offsets_allowed(admin, "contactflow-router"), "it may watch a group's lag"
    coaching = AdminClient(as_role("coaching-tool").settings.kafka_client_config())
    assert not _group_offsets_allowed(coaching, "contactflow-router")
    create = admin.create_topics([NewTopic(root.topics.name("contact.ores.v1") + "x", 1, 1)],
                                 validate_only=True)  # fmt: skip
    with pytest.raises(Exception, match="AUTHORIZATION_FAILED"):
        next(iter(create.values())).result()


def test_only_the_replayer_sends_dead_letters_back(as_role) -> None:  # type: ignore[no-untyped-def]
    """The data engineer reads dead letters but writes nowhere; `deadletters replay` runs
    as `deadletter-replayer`, which may write back to the topics they came from."""
    router = as_role("router")
    code = f"test-{uuid.uuid4().hex[:8]}"  # this test's dead letter among the session's
    source = router.topics.name("contact.raw.phone.v1")
    letter = {
        "source_topic": source, "source_partition": 0, "source_offset": 3, "stage": "decode",
        "reason_code": code, "reason": "not Avro", "original_key": b"contact-9",
        "original_value": b"\x00\x01", "original_headers": {},
        "failed_at": datetime.now(UTC),
    }  # fmt: skip
    producer = Producer(router.settings.kafka_client_config())
    value = AvroSerde(router.schemas).serialize(letter, router.schemas.latest("DeadLetter"))
    producer.produce(router.topics.name("contact.deadletter.v1"), value)
    assert producer.flush(30) == 0

    engineer = as_role("data-engineer")
    upgrade(engineer.settings.resolved_database_url())
    with pytest.raises(ContactflowError, match="TOPIC_AUTHORIZATION_FAILED"):
        DeadLetters(engineer).replay(code, datetime.now(UTC))

    replayer = as_role("deadletter-replayer")
    upgrade(replayer.settings.resolved_database_url())
    outcome = DeadLetters(replayer).replay(code, datetime.now(UTC))
    assert (outcome.sent, outcome.by_topic) == (1, {source: 1})
    landed = read_all(router.settings.kafka_client_config(), source)
    assert [m.value() for m in landed if dict(m.headers() or []).get(REPLAY_HEADER)].count(
        b"\x00\x01"
    ) == 1


def test_no_role_may_purge_dead_letters(as_role) -> None:  # type: ignore[no-untyped-def]
    """DeleteRecords needs the topic's DELETE permission, which no role has on the dead
    letters (it would let the role delete the whole topic; only the privacy app has it, on
    privacy.requests.v1): a purge by the data engineer cuts and records nothing."""
    router = as_role("router")
    topic = router.topics.name("contact.deadletter.v1")
    letter = {
        "source_topic": router.topics.name("contact.raw.chat.v1"), "source_partition": 0,
        "source_offset": 5, "stage": "decode", "reason_code": "malformed", "reason": "not Avro",
        "original_key": None, "original_value": b"\x00", "original_headers": {},
        "failed_at": datetime.now(UTC),
    }  # fmt: skip
    producer = Producer(router.settings.kafka_client_config())
    producer.produce(topic, AvroSerde(router.schemas).serialize(
        letter, router.schemas.latest("DeadLetter")))  # fmt: skip
    assert producer.flush(30) == 0
    engineer = as_role("data-engineer")  # reads dead letters: the purge gets to DeleteRecords
    upgrade(engineer.settings.resolved_database_url())
    before = len(read_all(engineer.settings.kafka_client_config(), topic))

    now = datetime.now(UTC)
    with pytest.raises(ContactflowError, match="TOPIC_AUTHORIZATION_FAILED") as refused:
        DeadLetters(engineer).purge(now, now)
    assert "purge incomplete: 0 of" in str(refused.value)
    assert "run it as the admin principal" in str(refused.value)
    assert len(read_all(engineer.settings.kafka_client_config(), topic)) == before
    with session_factory(engineer.ledger_engine)() as session:
        assert AuditLog(session).entries(action=PURGED_ACTION) == []


def test_only_the_privacy_app_cuts_requests_and_only_what_it_took_in(as_role) -> None:  # type: ignore[no-untyped-def]
    """DELETE on privacy.requests.v1 is the privacy app's alone: it cuts the request
    records its ledger took in; the privacy office, which writes them, cannot cut them,
    and the privacy app cannot cut any other topic."""
    office = as_role("privacy-office")
    requests = office.topics.name("privacy.requests.v1")
    request = {
        "request_id": "dsr-secure-cut", "request_type": "access",
        "identifiers": [{"kind": "phone", "value": "+32 471 98 76 54"}], "purpose": None,
        "received_at": datetime.now(UTC), "verified_by": None,
        "submitted_by": "privacy-office", "reason": None,
    }  # fmt: skip
    producer = Producer(office.settings.kafka_client_config())
    producer.produce(requests, AvroSerde(office.schemas).serialize(
        request, office.schemas.latest("PrivacyRequest")), b"dsr-secure-cut")  # fmt: skip
    assert producer.flush(30) == 0
    (record,) = read_all(office.settings.kafka_client_config(), requests)
    admin = office.admin()  # held until it answers
    (refused,) = admin.delete_records(
        [TopicPartition(requests, record.partition() or 0, (record.offset() or 0) + 1)],
        request_timeout=30,
    ).values()  # fmt: skip
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        refused.result(timeout=60)

    app = as_role("privacy-app")
    upgrade(app.settings.resolved_database_url())
    load_keys(app.settings)
    service = PrivacyService.from_container(app, load_privacy_config(app), actor="privacy-app")
    try:
        drained = apply_privacy_topics(app, service, datetime.now(UTC))
    finally:
        service.close()
    cut = drained.requests_cut
    assert (cut.removed, cut.refused) == (1, {})
    assert read_all(office.settings.kafka_client_config(), requests) == []
    for logical in ("privacy.instructions.v1", "privacy.audit.v1", "contact.deadletter.v1"):
        admin = app.admin()
        (future,) = admin.delete_records([TopicPartition(app.topics.name(logical), 0, 0)],
                                         request_timeout=30).values()  # fmt: skip
        with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
            future.result(timeout=60)
