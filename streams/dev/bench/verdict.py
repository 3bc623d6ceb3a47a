"""What the routers did, read back from Kafka: the consumer group's offsets and members,
the routed outputs, and the exactly-once verdict against what each event should give."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processors.policy import ContactFacts, attribute_controller, hold_signal_of
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CHANNELS,
    CONTACT_DEADLETTER,
    CONTACT_QUARANTINE,
    CONTACT_RESTRICTED,
    CONTROLLER_TOPICS,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
)
from streams.bootstrap import Container
from streams.dev.bench.flow import RawEvent
from streams.kafka.readback import read_all
from streams.router.worker import GROUP_ID, load_policy
from streams.sdk.producer import raw_topic

TAGGED_TOPICS = (*CONTROLLER_TOPICS.values(), CONTACT_RESTRICTED, CONTACT_QUARANTINE)


class GroupProbe:
    """Committed offsets, end offsets and members of `contactflow-router`, for this test."""

    def __init__(self, container: Container) -> None:
        client = container.settings.kafka_client_config()
        self._prefix = container.settings.topic_prefix
        self._group = container.settings.scoped(GROUP_ID)
        # Never subscribes, so never joins the group: it only reads the group's offsets.
        # read_uncommitted: offsets of a dead router's pending transaction do not block it.
        self._consumer = Consumer(
            {
                **client,
                "group.id": self._group,
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self._admin = AdminClient(client)
        ores = container.topics.name(CONTROLLER_TOPICS["ORES"])
        self._output_partitions = [
            TopicPartition(ores, p)
            for p in range(container.topics.spec(CONTROLLER_TOPICS["ORES"]).partitions)
        ]
        self.partitions = [
            TopicPartition(container.topics.name(raw_topic(channel)), partition)
            for channel in CHANNELS
            for partition in range(container.topics.spec(raw_topic(channel)).partitions)
        ]

    def committed(self) -> dict[tuple[str, int], int]:
        """The router group's committed offset per raw partition (0 when none yet)."""
        return {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in self._consumer.committed(self.partitions, timeout=15)
        }

    def ends(self) -> dict[tuple[str, int], int]:
        ends = {}
        for tp in self.partitions:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=15)
            ends[tp.topic, tp.partition] = high
        return ends

    def backlog(self) -> int:
        """Raw records not yet committed by the group: 0 means every one was routed."""
        ends, committed = self.ends(), self.committed()
        return sum(max(end - committed[tp], 0) for tp, end in ends.items())

    def transaction_open(self) -> bool:
        """True while a router transaction holds records on contact.ores.v1 uncommitted."""
        return bool(self.open_transactions())

    def open_transactions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) -> (last stable offset, end offset), for the partitions of
        contact.ores.v1 where a transaction holds records uncommitted: the last stable
        offset (what read_committed readers may see), read after the end offset, lags it.
        The records between the two are the open transaction's (and its markers')."""
        ends = self._end_offsets()
        stable = self._end_offsets(IsolationLevel.READ_COMMITTED)
        return {tp: (stable[tp], end) for tp, end in ends.items() if end > stable[tp]}

    def _end_offsets(
        self, isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED
    ) -> dict[tuple[str, int], int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets(
            dict.fromkeys(self._output_partitions, latest),
            isolation_level=isolation,
            request_timeout=15,
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def members(self) -> dict[str, frozenset[tuple[str, int]]]:
        """member id -> the raw partitions of this test it owns (members owning none omitted)."""
        group = self._group
        future = self._admin.describe_consumer_groups([group], request_timeout=15)[group]
        description = future.result()
        owned = {}
        for member in description.members:
            mine = frozenset(
                (tp.topic, tp.partition)
                for tp in member.assignment.topic_partitions
                if tp.topic.startswith(self._prefix)
            )
            if mine:
                owned[member.member_id] = mine
        return owned

    def close(self) -> None:
        self._consumer.close()


# -- what the routers wrote ----------------------------------------------------------------


@dataclass
class RoutedOutputs:
    """Every committed output record of the router, by what the assertions need."""

    topics_of_event: dict[str, list[str]]  # event id -> logical topic of each copy
    recordings: Counter[str]  # recording id -> records on recordings.standard.v1
    signals: Counter[str]  # event id -> hold signals on retention.signals.v1
    dead_letters: list[dict[str, Any]]

    def duplicated(self) -> dict[str, int]:
        return {e: len(t) for e, t in self.topics_of_event.items() if len(t) > 1}


def read_outputs(container: Container) -> RoutedOutputs:
    client = container.settings.kafka_client_config()
    serde = AvroSerde(container.schemas)
    topics_of_event: dict[str, list[str]] = {}
    for logical in TAGGED_TOPICS:
        for message in read_all(client, container.topics.name(logical), timeout=60):
            event_id = serde.deserialize(message.value() or b"")[1]["event_id"]
            topics_of_event.setdefault(event_id, []).append(logical)
    recordings = Counter(  # the router's records; a tombstone is the retention service's
        (m.key() or b"").decode()  # (a recording moved to the hold topic, or expired)
        for m in read_all(client, container.topics.name(RECORDINGS_STANDARD), timeout=60)
        if m.value() is not None
    )
    signals = Counter(
        serde.deserialize(m.value() or b"")[1]["signal_id"]
        for m in read_all(client, container.topics.name(RETENTION_SIGNALS), timeout=60)
    )
    dead = [
        serde.deserialize(m.value() or b"")[1]
        for m in read_all(client, container.topics.name(CONTACT_DEADLETTER), timeout=60)
    ]
    return RoutedOutputs(topics_of_event, recordings, signals, dead)


@dataclass(frozen=True)
class Expected:
    topic_of_event: dict[str, str]  # event id -> the logical topic policy sends it to
    recordings: frozenset[str]  # recording ids that must each have one retention record
    signals: frozenset[str]  # event ids that must each signal one legal hold


def expected_routes(container: Container, events: Iterable[RawEvent]) -> Expected:
    """Where each event must land (no subject here is restricted or has objected)."""
    policy = load_policy(container)
    topic_of_event: dict[str, str] = {}
    recordings: set[str] = set()
    signals: set[str] = set()
    for item in events:
        envelope = item.event["envelope"]
        facts = ContactFacts(
            envelope["client"], envelope["service"], envelope.get("purpose", "contact_handling"),
            item.channel, item.event["kind"],
        )  # fmt: skip
        attribution = attribute_controller(policy, facts)
        if attribution is None:
            topic_of_event[item.event_id] = CONTACT_QUARANTINE
            continue
        topic_of_event[item.event_id] = CONTROLLER_TOPICS[attribution.controller]
        period = policy.retention_classes[attribution.retention_class].recording_period_days
        if item.recording_id is not None and period is not None:
            recordings.add(item.recording_id)
        if hold_signal_of(policy, facts) is not None:
            signals.add(item.event_id)
    return Expected(topic_of_event, frozenset(recordings), frozenset(signals))


def exactly_once_problems(expected: Expected, routed: RoutedOutputs) -> list[str]:
    """Each broken promise in words (lost, duplicated, foreign, misrouted); [] when kept."""
    problems = []
    seen = routed.topics_of_event
    lost = sorted(expected.topic_of_event.keys() - seen.keys())
    foreign = sorted(seen.keys() - expected.topic_of_event.keys())
    duplicated = routed.duplicated()
    misrouted = {
        e: (expected.topic_of_event[e], t)
        for e, t in seen.items()
        if e in expected.topic_of_event and set(t) != {expected.topic_of_event[e]}
    }
    if lost:
        problems.append(f"{len(lost)} event(s) lost, e.g. {lost[:3]}")
    if duplicated:
        problems.append(
            f"{len(duplicated)} event(s) duplicated, e.g. {list(duplicated.items())[:3]}"
        )
    if foreign:
        problems.append(f"{len(foreign)} unknown event id(s) on the outputs, e.g. {foreign[:3]}")
    if misrouted:
        problems.append(f"{len(misrouted)} misrouted (expected, got), e.g. "
                        f"{list(misrouted.items())[:3]}")  # fmt: skip
    recordings = routed.recordings
    missing = sorted(expected.recordings - recordings.keys())
    extra = {r: n for r, n in recordings.items() if r not in expected.recordings or n != 1}
    if missing:
        problems.append(
            f"{len(missing)} recording(s) without a retention record, e.g. {missing[:3]}"
        )
    if extra:
        problems.append(f"{len(extra)} recording id(s) not exactly once, e.g. "
                        f"{list(extra.items())[:3]}")  # fmt: skip
    if routed.signals != Counter(expected.signals):
        wrong = (routed.signals - Counter(expected.signals)) + (
            Counter(expected.signals) - routed.signals
        )
        problems.append(f"{len(wrong)} event(s) without exactly one hold signal, e.g. "
                        f"{list(wrong)[:3]}")  # fmt: skip
    if routed.dead_letters:
        codes = Counter(d["reason_code"] for d in routed.dead_letters)
        problems.append(f"dead letters for valid input: {dict(codes)}")
    return problems
