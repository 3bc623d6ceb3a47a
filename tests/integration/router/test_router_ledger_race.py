"""A batch's ledger rows are written in the commit thread, just before its Kafka commit.
When another writer put the same new person in the ledger first (a second router, on
another partition), that write fails: the batch must abort, be read again, and resolve
to what the ledger holds. On the real broker and ledger: nothing lost, nothing twice, and
one key for the person, the one the other writer made."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from people import PHONE, example, fresh
from sqlalchemy import select

from processors.identity import normalise_phone
from processors.pseudonym import Pseudonymiser
from schemas.serde import AvroSerde
from streams.bootstrap import bootstrap
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import session_factory
from streams.ledger.models import SubjectKey
from streams.router.directory import LedgerWrite, SubjectDirectory
from streams.router.worker import RouterWorker
from streams.sdk.producer import raw_topic

pytestmark = pytest.mark.integration


def _tagged(container) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    serde = AvroSerde(container.schemas)
    messages = read_all(
        container.settings.kafka_client_config(), container.topics.name("contact.ores.v1")
    )
    return [serde.deserialize(m.value())[1] for m in messages]


def test_a_batch_whose_ledger_rows_lost_a_race_is_read_again_and_nothing_is_lost(
    router_ready_container,  # type: ignore[no-untyped-def]
) -> None:
    settings = router_ready_container.settings.model_copy(update={"router_batch_size": 4})
    container = bootstrap(settings, telemetry=router_ready_container.telemetry)
    keys = load_keys(settings)
    pseudonymiser = Pseudonymiser(keys.pseudonym_key)
    person = normalise_phone(PHONE)
    subject = pseudonymiser.subject_pseudonym(pseudonymiser.identifier_digest(person))
    others = [f"+32 471 00 00 {n:02d}" for n in range(10)]
    events = [fresh(example("phone", "inbound_call"), phone=PHONE)]
    events += [fresh(example("phone", "inbound_call"), phone=p) for p in others]
    events += [fresh(example("phone", "inbound_call"), phone=PHONE) for _ in range(3)]
    sdk = container.producer()
    producer = Producer(settings.kafka_client_config())
    topic = container.topics.name(raw_topic("phone"))
    for event in events:  # one partition: the person's first event is in the first batch
        producer.produce(topic, sdk.encode("phone", event)[1], key=b"k", partition=0)
    assert producer.flush(30) == 0

    sessions = session_factory(container.ledger_engine)
    rival = SubjectDirectory(sessions, pseudonymiser, keys.master_key)  # writes at once
    worker = RouterWorker(container)
    write = worker.directory.write
    raced: list[str] = []

    def lose_the_first_race(ledger_write: LedgerWrite) -> None:
        """Just before the router's first write: the rival writes the same person."""
        if not raced:
            [made] = rival.resolve([rival.digests([person])], datetime.now(UTC))
            raced.append(rival.cipher(made).key_id)
        write(ledger_write)

    worker.directory.write = lose_the_first_race  # type: ignore[method-assign]
    worker.run(max_idle_s=2.0)

    assert raced, "the router wrote its ledger rows through `write`"
    assert worker.stats.aborted >= 1, "the batch whose rows lost the race aborted"
    tagged = _tagged(container)
    assert Counter(t["event_id"] for t in tagged) == Counter(
        e["envelope"]["event_id"] for e in events
    ), "every event routed, exactly once"
    with sessions() as session:
        person_keys = session.scalars(
            select(SubjectKey.key_id).where(SubjectKey.subject_pseudonym == subject)
        ).all()
    assert person_keys == raced, "one key for the person: the rival's"
    of_person = [t for t in tagged if t["governance"]["subject_pseudonym"] == subject]
    assert len(of_person) == 4
    assert {t["key_id"] for t in of_person} == set(raced), "encrypted with the rival's key"
