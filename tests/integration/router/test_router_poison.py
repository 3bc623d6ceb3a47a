"""Poison records on the real broker: no single record may block its partition.

Each case puts one bad record in front of valid events on the same partition. The record
fits the raw topic (compressed by its producer), but what the router would write for it
does not fit the topic it goes to: the dead letter of an event too large to route (its
original bytes), or the tagged output of a valid event that grows when encrypted. The
router must stay up, write a dead-letter *reference* (size and SHA-256, no bytes) and
route the valid events behind it exactly once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from people import EMAIL, PHONE, example, fresh
from topicconfig import set_max_message_bytes

from processors.identity import normalise_phone
from processors.pseudonym import Pseudonymiser
from schemas.serde import AvroSerde
from streams.bootstrap import bootstrap
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ops.deadletters import DeadLetters
from streams.router.worker import RouterWorker
from streams.sdk.producer import raw_topic

pytestmark = pytest.mark.integration
_VALID_BEHIND = 15


def _text(size: int, seed: int, vocabulary: int = 4) -> str:
    """Words drawn from a small vocabulary: zstd packs megabytes of it under the raw
    topic's 1 MB, and encryption makes it incompressible."""
    rng = random.Random(seed)
    choices = [f"mot{i}" for i in range(vocabulary)]
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(choices)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _oversized_chat(size: int) -> dict[str, Any]:
    chat = fresh(example("chat", "transcript_available"), phone=PHONE, email=EMAIL)
    chat["payload"]["messages"][0]["text"] = _text(size, size)
    return chat


def _route_with_poison(container, poison: dict[str, Any]) -> tuple[RouterWorker, bytes, list[str]]:  # type: ignore[no-untyped-def]
    """One poison record, then valid chats, all on partition 0 of the raw chat topic."""
    sdk = container.producer()
    _, poison_bytes = sdk.encode("chat", poison)
    valid = [fresh(example("chat", "chatbot_session"), email=EMAIL) for _ in range(_VALID_BEHIND)]
    topic = container.topics.name(raw_topic("chat"))
    producer = Producer(
        {
            **container.settings.kafka_client_config(),
            "compression.type": "zstd",
            "message.max.bytes": 16 * 1024 * 1024,
            "enable.idempotence": True,
        }
    )
    failed: list[object] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failed.append(error)

    producer.produce(topic, poison_bytes, key=b"poison", partition=0, on_delivery=delivered)
    for event in valid:
        producer.produce(topic, sdk.encode("chat", event)[1], key=b"valid", partition=0)
    assert producer.flush(30) == 0
    assert failed == [], "the poison record must fit the raw topic (compressed)"
    worker = RouterWorker(container)
    worker.run(max_idle_s=2.0)  # returns: the worker neither died nor hung
    return worker, poison_bytes, [e["envelope"]["event_id"] for e in valid]


def _decoded(container, logical: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    serde = AvroSerde(container.schemas)
    messages = read_all(container.settings.kafka_client_config(), container.topics.name(logical))
    return [serde.deserialize(m.value())[1] for m in messages]


def _assert_reference(container, poison_bytes: bytes, stage: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    letters = _decoded(container, "contact.deadletter.v1")
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter["reason_code"] == "too_large"
    assert letter["stage"] == stage
    assert letter["original_value"] is None, "a reference holds no bytes"
    assert letter["original_size"] == len(poison_bytes)
    assert letter["original_sha256"] == hashlib.sha256(poison_bytes).hexdigest()
    assert letter["source_topic"] == container.topics.name(raw_topic("chat"))
    assert (letter["source_partition"], letter["source_offset"]) == (0, 0)
    assert EMAIL not in letter["reason"]
    assert "mot1" not in letter["reason"]
    return letter


def _assert_routed_once(container, valid_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    routed = Counter(t["event_id"] for t in _decoded(container, "contact.ores.v1"))
    assert routed == Counter(valid_ids), "every valid event behind the poison, exactly once"


@pytest.mark.parametrize(
    ("size", "why"),
    [
        (6_000_000, "its dead letter exceeds the router producer's 4 MB message limit"),
        (3_000_000, "its dead letter exceeds the dead-letter topic's 2 MB limit"),
    ],
)
def test_an_event_too_large_to_route_becomes_a_dead_letter_reference(
    router_ready_container,  # type: ignore[no-untyped-def]
    size: int,
    why: str,
) -> None:
    container = router_ready_container
    worker, poison_bytes, valid_ids = _route_with_poison(container, _oversized_chat(size))

    letter = _assert_reference(container, poison_bytes, "decode")
    assert "oversized" in letter["reason"], why
    _assert_routed_once(container, valid_ids)
    replay = DeadLetters(container, actor="test").replay("too_large", datetime.now(UTC))
    assert (replay.matched, replay.sent, replay.references) == (1, 0, 1), "no bytes to replay"
    assert worker.stats.aborted == 0, "refused before producing, not by the broker"


def test_a_valid_event_whose_output_outgrows_its_topic_becomes_a_reference(
    router_ready_container,  # type: ignore[no-untyped-def]
) -> None:
    """A 490 KB chat of many short messages is under the router's 512 KB event limit, but
    each message grows by its encryption: the tagged event passes the 1 MB of its topic."""
    container = router_ready_container
    chat = fresh(example("chat", "transcript_available"), phone=PHONE, email=EMAIL)
    first = chat["payload"]["messages"][0]
    chat["payload"]["messages"] = [{**first, "text": _text(8, n, 64)} for n in range(32_000)]
    worker, poison_bytes, valid_ids = _route_with_poison(container, chat)

    assert 400_000 < len(poison_bytes) < 524_288
    letter = _assert_reference(container, poison_bytes, "produce")
    assert "contact.ores.v1 record would be" in letter["reason"]
    _assert_routed_once(container, valid_ids)
    assert worker.stats.aborted == 0, "refused before producing, not by the broker"


@pytest.mark.parametrize(
    "batch_size",
    [
        pytest.param(2000, id="one-batch"),
        # the refused batch's commit fails in the commit thread while the next is routed
        pytest.param(4, id="overlapping-commits"),
    ],
)
def test_a_record_the_broker_refuses_is_isolated_and_the_rest_committed(
    router_ready_container,  # type: ignore[no-untyped-def]
    batch_size: int,
) -> None:
    """The backstop: contact.ores.v1's limit is lowered after the router read it, so the
    broker refuses a 20 KB chat's output. The router bisects its batch, dead-letters that
    record with the broker's error code and commits the events around it."""
    container = router_ready_container
    if batch_size != container.settings.router_batch_size:
        settings = container.settings.model_copy(update={"router_batch_size": batch_size})
        container = bootstrap(settings, telemetry=container.telemetry)
    sdk = container.producer()
    topic = container.topics.name(raw_topic("chat"))
    before = [fresh(example("chat", "chatbot_session"), email=EMAIL) for _ in range(7)]
    chat = fresh(example("chat", "transcript_available"), phone=PHONE, email=EMAIL)
    chat["payload"]["messages"][0]["text"] = _text(20_000, 3, 64)
    after = [fresh(example("chat", "chatbot_session"), email=EMAIL) for _ in range(_VALID_BEHIND)]
    producer = Producer(container.settings.kafka_client_config())
    for event in [*before, chat, *after]:
        producer.produce(topic, sdk.encode("chat", event)[1], key=b"k", partition=0)
    assert producer.flush(30) == 0
    worker = RouterWorker(container)
    set_max_message_bytes(container, "contact.ores.v1", 8000)
    time.sleep(1)  # not a clock: the brokers' config propagation (KRaft) before the first batch

    worker.run(max_idle_s=2.0)

    letters = _decoded(container, "contact.deadletter.v1")
    assert [(d["reason_code"], d["source_offset"]) for d in letters] == [("too_large", 7)]
    assert "MSG_SIZE_TOO_LARGE" in letters[0]["reason"]
    assert letters[0]["original_value"] is None
    _assert_routed_once(container, [e["envelope"]["event_id"] for e in [*before, *after]])
    assert worker.stats.aborted >= 2, "the whole batch, then at least one half, refused"


def test_unreadable_subject_states_are_skipped_and_the_router_runs(
    router_ready_container,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key that is not UTF-8 (tombstone and state) and a value that is not a SubjectState
    on the compacted topic: logged by position and skipped; the states around them apply."""
    container = router_ready_container
    restricted_phone = "+32 471 11 22 33"
    pseudonymiser = Pseudonymiser(load_keys(container.settings).pseudonym_key)
    subject = pseudonymiser.subject_pseudonym(
        pseudonymiser.identifier_digest(normalise_phone(restricted_phone))
    )
    serde = AvroSerde(container.schemas)
    state = {
        "subject_pseudonym": subject, "restricted": True, "objected_purposes": [],
        "erased": False, "suppressed_from_surveys": False, "updated_at": datetime.now(UTC),
        "request_id": None,
    }  # fmt: skip
    topic = container.topics.name("privacy.subject-state.v1")
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(topic, None, key=b"\xff\xfe not utf-8", partition=0)
    producer.produce(topic, b"\x00garbage", key=b"\xff\xfe", partition=0)
    producer.produce(topic, b"\xc3\x01" + b"\x01" * 8 + b"x", key=b"unknown-fingerprint")
    producer.produce(topic, serde.serialize(state, container.schemas.latest("SubjectState")),
                     key=subject.encode(), partition=0)  # fmt: skip
    assert producer.flush(30) == 0
    held = fresh(example("phone", "inbound_call"), phone=restricted_phone)
    other = fresh(example("phone", "inbound_call"), phone=PHONE)
    sdk = container.producer()
    for event in (held, other):
        sdk.send("phone", event)
    sdk.flush()

    worker = RouterWorker(container)
    worker.run(max_idle_s=1.5)

    assert worker.stats.events_in == 2
    restricted = _decoded(container, "contact.restricted.v1")
    assert [r["event_id"] for r in restricted] == [held["envelope"]["event_id"]]
    assert [t["event_id"] for t in _decoded(container, "contact.ores.v1")] == [
        other["envelope"]["event_id"]
    ]
    skipped = [r for r in caplog.records if "unreadable subject state skipped" in r.getMessage()]
    assert len(skipped) == 3
    assert all(f"{topic} partition" in r.getMessage() for r in skipped)
