"""An erasure drops the subject's key in every router of the group, at once.

Two routers (in-process workers, so the test can look into their caches) split the raw
partitions; one person's calls reach partitions of both, so both hold the person's
unwrapped data key. The privacy app's erasure (keys shredded and the subject stamped
erased in the ledger, then the erased state on `privacy.subject-state.v1`) must empty
both caches within seconds, with no further event of the person. The person's later
calls are refused by both, and no router makes the erased subject a new key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from people import PHONE, example, fresh

from processors.identity import normalise_phone
from processors.pseudonym import Pseudonymiser
from schemas.serde import AvroSerde
from streams.bootstrap import Container, bootstrap
from streams.dev.bench.routers import wait_for
from streams.dev.bench.verdict import GroupProbe
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import KeyVault, SubjectIndex, create_ledger_engine, session_factory
from streams.router.worker import RouterWorker
from streams.sdk.producer import raw_topic
from streams.telemetry import Telemetry

pytestmark = pytest.mark.integration

SPLIT_TIMEOUT_S = 90.0
DROP_TIMEOUT_S = 5.0  # "within a few seconds": the state is read between batches


class _Running:
    """A router worker on a thread of this process; what it raised, if anything."""

    def __init__(self, worker: RouterWorker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="router", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - asserted on by the fixture
            self.error = exc

    def stop(self) -> None:
        self.worker.stop()
        self._thread.join(60)


@pytest.fixture
def two_routers(router_ready_container: Container) -> Iterator[list[_Running]]:
    first = router_ready_container
    settings = first.settings.model_copy(update={"router_instance": "keys-2"})
    second = bootstrap(settings, telemetry=Telemetry.in_memory())
    running: list[_Running] = []
    try:
        for container in (first, second):
            running.append(_Running(RouterWorker(container, helper=False)))
        yield running
    finally:
        for router in running:
            router.stop()
    assert [r.error for r in running] == [None, None]


def _publish_erased(container: Container, subject: str) -> None:
    serde = AvroSerde(container.schemas)
    value = {
        "subject_pseudonym": subject, "restricted": True, "objected_purposes": [],
        "erased": True, "suppressed_from_surveys": False, "updated_at": datetime.now(UTC),
        "request_id": None,
    }  # fmt: skip
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(
        container.topics.name("privacy.subject-state.v1"),
        serde.serialize(value, container.schemas.latest("SubjectState")),
        key=subject.encode(),
    )
    producer.flush()


def _call_on_every_partition(container: Container) -> int:
    """One call of the person on each partition of the phone topic; how many."""
    sdk = container.producer()
    topic = container.topics.name(raw_topic("phone"))
    partitions = container.topics.spec(raw_topic("phone")).partitions
    producer = Producer(container.settings.kafka_client_config())
    for partition in range(partitions):
        key, value = sdk.encode("phone", fresh(example("phone", "inbound_call"), phone=PHONE))
        producer.produce(topic, value, key=key.encode(), partition=partition)
    producer.flush()
    return partitions


def _erase_in_ledger(container: Container, subject: str) -> None:
    engine = create_ledger_engine(container.settings.resolved_database_url())
    try:
        with session_factory(engine).begin() as session:
            KeyVault(session).shred_subject(subject, datetime.now(UTC))
            SubjectIndex(session).mark_erased(subject, datetime.now(UTC))
    finally:
        engine.dispose()


def _keys_of(container: Container, subject: str) -> list[Any]:
    engine = create_ledger_engine(container.settings.resolved_database_url())
    try:
        with session_factory(engine)() as session:
            return KeyVault(session).keys_for(subject)
    finally:
        engine.dispose()


def _erased_letters(container: Container) -> int:
    serde = AvroSerde(container.schemas)
    topic = container.topics.name("contact.deadletter.v1")
    letters = [serde.deserialize(m.value())[1] for m in read_all(
        container.settings.kafka_client_config(), topic)]  # fmt: skip
    return sum(1 for letter in letters if letter["reason_code"] == "subject_erased")


def test_an_erasure_drops_the_key_in_both_routers_within_seconds(
    router_ready_container: Container, two_routers: list[_Running], group_probe: GroupProbe
) -> None:
    container = router_ready_container
    workers = [router.worker for router in two_routers]
    pseudonymiser = Pseudonymiser(load_keys(container.settings).pseudonym_key)
    subject = pseudonymiser.subject_pseudonym(
        pseudonymiser.identifier_digest(normalise_phone(PHONE))
    )
    everything = frozenset((tp.topic, tp.partition) for tp in group_probe.partitions)

    def split() -> bool:
        owned = list(group_probe.members().values())
        return len(owned) == 2 and all(owned) and owned[0] | owned[1] == everything

    def report() -> str:
        held = [w.directory.holds_key(subject) for w in workers]
        stats = [(w.stats.events_in, w.stats.batches, w.stats.aborted) for w in workers]
        members = {m[-6:]: len(p) for m, p in group_probe.members().items()}
        return (f"errors: {[r.error for r in two_routers]!r}; keys held: {held}; "
                f"(events, batches, aborted): {stats}; partitions: {members}")  # fmt: skip

    wait_for(split, SPLIT_TIMEOUT_S, "two routers to split the raw partitions", report)
    sent = _call_on_every_partition(container)
    wait_for(lambda: group_probe.backlog() == 0, 60, "the calls to be routed", report)
    assert all(w.directory.holds_key(subject) for w in workers), report()
    keys = _keys_of(container, subject)
    assert len(keys) == 1, f"{len(keys)} keys; {report()}"

    _erase_in_ledger(container, subject)
    _publish_erased(container, subject)
    wait_for(lambda: not any(w.directory.holds_key(subject) for w in workers), DROP_TIMEOUT_S,
             "both routers to drop the erased subject's key", report, interval=0.05)  # fmt: skip

    _call_on_every_partition(container)  # the person calls again, on both routers
    wait_for(lambda: group_probe.backlog() == 0, 60, "the later calls to be handled", report)
    assert _erased_letters(container) == sent, report()
    assert not any(w.directory.holds_key(subject) for w in workers)
    assert [(k.key_id, k.shredded) for k in _keys_of(container, subject)] == [
        (keys[0].key_id, True)  # shredded, and no new key made
    ]
