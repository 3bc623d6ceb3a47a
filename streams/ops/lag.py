"""Consumer lag of contactflow's own consumer groups, from the broker alone.

A group's lag on a partition is how far its committed offset trails the partition's end
(the last stable offset: what a `read_committed` consumer can read). A partition the group
never committed on counts from its first offset still on the log, as every contactflow
consumer starts there (`auto.offset.reset=earliest`), so a router that never ran shows
the whole raw backlog. On topics written in transactions each commit marker takes an
offset, and a faust app commits the offset after its last record, which is the marker's:
a small difference (up to `MARKER_CHECK_MAX`) is therefore read, `read_committed`, and
only the records found count (they are counted, never looked at). Only this deployment's
topics count (its `CONTACTFLOW_TOPIC_PREFIX`): another deployment sharing the broker and
the group ids is not mixed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from schemas.topic_names import (
    CONTACT_COMNEXIO,
    CONTACT_ORES,
    PRIVACY_ACKS,
    PRIVACY_INSTRUCTIONS,
    PRIVACY_REQUESTS,
    RECORDINGS_STANDARD,
    REPORTING_FACTS,
    RETENTION_SIGNALS,
)
from streams.bootstrap import Container

ADMIN_TIMEOUT_S = 30.0
MARKER_CHECK_MAX = 100  # a partition this few offsets behind is read to tell records from markers
MARKER_CHECK_S = 5.0  # at most this long for all of them; one not read in time keeps its figure
_NO_OFFSET = 0  # librdkafka's "no committed offset" is negative (-1001)
_RETRIED = {  # the group coordinator is still loading or just moved: ask again shortly
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}
T = TypeVar("T")


@dataclass(frozen=True)
class ConsumerGroupRef:
    """A consumer group contactflow runs: its id, its role, the logical topics it reads.

    `optional` groups (the one `dsr process` uses) are shown only once they committed."""

    group_id: str
    role: str
    topics: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int
    lag: int


@dataclass(frozen=True)
class TopicLag:
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class GroupLag:
    """One group as the broker sees it: state, members and lag per topic."""

    group_id: str
    role: str
    state: str
    members: int
    topics: tuple[TopicLag, ...]

    @property
    def lag(self) -> int:
        return sum(t.lag for t in self.topics)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group_id,
            "role": self.role,
            "state": self.state,
            "members": self.members,
            "lag": self.lag,
            "topics": [
                {
                    "topic": t.topic,
                    "lag": t.lag,
                    "partitions": [
                        {
                            "partition": p.partition,
                            "committed": p.committed,
                            "end": p.end,
                            "lag": p.lag,
                        }
                        for p in t.partitions
                    ],
                }
                for t in self.topics
            ],
        }


def known_groups(container: Container) -> list[ConsumerGroupRef]:
    """The router's group, the privacy app's, the reporting app's (optional: not every
    deployment runs it), one per consumer registered in `infra/consumers.yaml`, and
    (optional) the one `contactflow dsr process` commits with."""
    from streams.control.app import APP_ID
    from streams.control.drain import CATCHUP_GROUP
    from streams.reporting.app import APP_ID as REPORTING_APP_ID
    from streams.router.pipeline import CHANNEL_OF_TOPIC
    from streams.router.worker import GROUP_ID
    from streams.sdk.downstream.client import COMMAND_TOPICS
    from streams.sdk.downstream.model import load_registry

    privacy = (PRIVACY_REQUESTS, PRIVACY_INSTRUCTIONS, PRIVACY_ACKS)
    scoped = container.settings.scoped
    groups = [
        ConsumerGroupRef(scoped(GROUP_ID), "router", tuple(sorted(CHANNEL_OF_TOPIC))),
        ConsumerGroupRef(
            scoped(APP_ID), "privacy-app", (RECORDINGS_STANDARD, RETENTION_SIGNALS, *privacy)
        ),
        ConsumerGroupRef(scoped(REPORTING_APP_ID), "reporting-app",
                         (CONTACT_ORES, CONTACT_COMNEXIO, REPORTING_FACTS), optional=True),
    ]  # fmt: skip
    for name in sorted(load_registry(container).consumers):
        groups.append(
            ConsumerGroupRef(scoped(f"contactflow-downstream-{name}"), f"downstream:{name}",
                             tuple(COMMAND_TOPICS))
        )  # fmt: skip
    groups.append(ConsumerGroupRef(scoped(CATCHUP_GROUP), "dsr-process", privacy, optional=True))
    return groups


def consumer_lag(
    container: Container,
    groups: Sequence[ConsumerGroupRef] | None = None,
    *,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[GroupLag]:
    """Lag of `groups` (default: `known_groups`) on this deployment's topics, in order.

    Raises KafkaException when the broker does not answer within `timeout_s`."""
    refs = list(groups) if groups is not None else known_groups(container)
    admin = container.admin()
    catalog = container.topics
    declared = {catalog.prefix + spec.name for spec in catalog.specs}
    listed = admin.list_topics(timeout=timeout_s).topics
    partitions_of = {
        name: sorted(listed[name].partitions) for name in declared if name in listed
    }  # a declared topic missing on the broker is drift, reported by `topics check`
    committed = {ref.group_id: _committed(admin, ref.group_id, timeout_s) for ref in refs}
    wanted: dict[str, set[TopicPartition]] = {}
    for ref in refs:
        mine = {(tp.topic, tp.partition) for tp in committed[ref.group_id] if tp.topic in declared}
        if ref.optional and not mine:
            continue
        mine |= {
            (catalog.prefix + logical, p)
            for logical in ref.topics
            for p in partitions_of.get(catalog.prefix + logical, ())
        }
        wanted[ref.group_id] = {TopicPartition(t, p) for t, p in mine if t in partitions_of}
    every = {(tp.topic, tp.partition) for tps in wanted.values() for tp in tps}
    ends = _offsets(admin, every, OffsetSpec.latest(), timeout_s)  # type: ignore[no-untyped-call]
    starts = _offsets(admin, every, OffsetSpec.earliest(), timeout_s)  # type: ignore[no-untyped-call]
    described = _describe(admin, list(wanted), timeout_s)
    result = []
    rows_of: dict[str, list[PartitionLag]] = {}
    for ref in refs:
        if ref.group_id not in wanted:
            continue
        offsets = {
            (tp.topic, tp.partition): tp.offset
            for tp in committed[ref.group_id]
            if tp.offset >= _NO_OFFSET
        }
        rows = [
            _partition_lag(t, p, offsets.get((t, p)), starts[t, p], ends[t, p])
            for t, p in sorted((tp.topic, tp.partition) for tp in wanted[ref.group_id])
        ]
        rows_of[ref.group_id] = rows
    small = {
        (row.topic, row.partition, row.end - row.lag): row.end
        for rows in rows_of.values()
        for row in rows
        if 0 < row.lag <= MARKER_CHECK_MAX
    }
    waiting = _records_waiting(container.settings.kafka_client_config(), small)
    for ref in refs:
        if ref.group_id not in wanted:
            continue
        state, members = described[ref.group_id]
        rows = [
            replace(row, lag=waiting.get((row.topic, row.partition, row.end - row.lag), row.lag))
            for row in rows_of[ref.group_id]
        ]
        by_topic: dict[str, list[PartitionLag]] = {}
        for row in rows:
            by_topic.setdefault(row.topic, []).append(row)
        topics = tuple(TopicLag(t, tuple(ps)) for t, ps in by_topic.items())
        result.append(GroupLag(ref.group_id, ref.role, state, members, topics))
    return result


def _partition_lag(
    topic: str, partition: int, committed: int | None, start: int, end: int
) -> PartitionLag:
    """Lag from the committed offset, or from the log start (never before it: records
    deleted by retention or a cut are not waiting for anyone)."""
    position = start if committed is None else max(committed, start)
    return PartitionLag(topic, partition, committed, end, max(0, end - position))


def _records_waiting(
    config: dict[str, Any], small: dict[tuple[str, int, int], int]
) -> dict[tuple[str, int, int], int]:
    """(topic, partition, position) -> records a `read_committed` consumer finds from the
    position to the end offset given: transaction markers and aborted records take offsets
    but are not records. Only partitions read to their end within `MARKER_CHECK_S` are
    answered (one the caller may not read, or a slow broker, keeps its offset difference).
    Records are counted by offset; nothing of them is kept or shown."""
    if not small:
        return {}
    ranges: dict[tuple[str, int], tuple[int, int]] = {}  # from the lowest position asked
    for (topic, partition, position), end in small.items():
        low, _ = ranges.get((topic, partition), (position, end))
        ranges[topic, partition] = (min(low, position), end)
    found: dict[tuple[str, int], list[int]] = {where: [] for where in ranges}
    unread = dict(ranges)
    consumer = Consumer(
        {
            **config,
            "group.id": "contactflow-lag-check",  # assigned, never joined, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, low) for (t, p), (low, _) in ranges.items()])
        deadline = time.monotonic() + MARKER_CHECK_S
        while unread and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.2):
                where = (message.topic() or "", message.partition() or 0)
                if where not in unread:
                    continue
                if message.error() is not None:
                    del unread[where]  # not readable here: the offset difference stands
                    found.pop(where, None)
                elif (message.offset() or 0) < unread[where][1]:
                    found[where].append(message.offset() or 0)
            for tp in consumer.position([TopicPartition(t, p) for t, p in unread]):
                if tp.offset >= unread[tp.topic, tp.partition][1]:  # past the markers too
                    del unread[tp.topic, tp.partition]
    except KafkaException:
        return {}
    finally:
        consumer.close()
    return {
        (t, p, position): sum(1 for offset in found[t, p] if position <= offset < end)
        for (t, p, position), end in small.items()
        if (t, p) in found and (t, p) not in unread
    }


def _committed(admin: AdminClient, group_id: str, timeout_s: float) -> list[TopicPartition]:
    request = [ConsumerGroupTopicPartitions(group_id)]

    def ask() -> list[TopicPartition]:
        futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
        found = next(iter(futures.values())).result().topic_partitions
        return list(found or [])

    return _retrying(ask, timeout_s)


def _describe(
    admin: AdminClient, group_ids: list[str], timeout_s: float
) -> dict[str, tuple[str, int]]:
    """Group id -> (state, members); a group that never ran is `dead` with 0 members."""
    if not group_ids:
        return {}

    def ask() -> dict[str, tuple[str, int]]:
        futures = admin.describe_consumer_groups(group_ids, request_timeout=timeout_s)
        described = {}
        for group_id, future in futures.items():
            description = future.result()
            state = getattr(description.state, "name", str(description.state)).lower()
            described[group_id] = (state, len(description.members))
        return described

    return _retrying(ask, timeout_s)


def _offsets(
    admin: AdminClient, partitions: Iterable[tuple[str, int]], spec: Any, timeout_s: float
) -> dict[tuple[str, int], int]:
    requests = {TopicPartition(t, p): spec for t, p in partitions}
    if not requests:
        return {}

    def ask() -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            requests, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s
        )
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}

    return _retrying(ask, timeout_s)


def _retrying(ask: Callable[[], T], timeout_s: float) -> T:
    """`ask()`, again while the coordinator or a leader is not ready yet (a fresh broker
    answers NOT_COORDINATOR for a moment); any other error is raised at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask()
        except KafkaException as exc:
            error = exc.args[0]
            retriable = error.code() in _RETRIED or error.retriable()
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
