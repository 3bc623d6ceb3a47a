"""How large a record each output topic accepts, read from the broker at start-up.

The broker refuses a record batch over the topic's `max.message.bytes`, and librdkafka
refuses locally a message over the producer's `message.max.bytes`; either way the whole
transaction fails, and re-reading the batch fails the same way. So the router checks every
record before producing it, against the smaller of the two, less a margin for the record
and batch framing.

The check is on the *uncompressed* size: whether a record fits after compression depends
on its codec and on its neighbours in the batch, and the same record must meet the same
fate every time it is read (after an abort, a replay, a rebalance). A record that fits
only compressed is still refused, and goes to the dead letters as a reference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

log = logging.getLogger(__name__)

BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's `message.max.bytes` default, the limit of a topic that does not set its own."""
FRAMING_MARGIN = 1024
"""Bytes left for the batch header (61), the record's varints and the trace header."""


@dataclass(frozen=True)
class OutputLimits:
    """The largest key + value + headers, in bytes, each output topic takes."""

    by_topic: Mapping[str, int]
    default: int

    def __getitem__(self, topic: str) -> int:
        return self.by_topic.get(topic, self.default)

    @classmethod
    def fixed(cls, max_message_bytes: int = BROKER_DEFAULT_MAX_MESSAGE_BYTES) -> OutputLimits:
        """One `max.message.bytes` for every topic (for tests; workers read each topic's)."""
        return cls({}, max_message_bytes - FRAMING_MARGIN)


def read_output_limits(
    admin: AdminClient,
    topics: Iterable[str],
    *,
    producer_max_bytes: int,
    declared: Mapping[str, int],
    timeout_s: float,
) -> OutputLimits:
    """Each topic's `max.message.bytes` from the broker, capped by the producer's limit.

    A broker that refuses to describe a topic's configs (an ACL without DescribeConfigs)
    leaves the value declared in `infra/topics.yaml`, or the broker default, with a
    warning: the router still starts, and the broker still has the last word.
    """
    topics = sorted(set(topics))
    resources = {name: ConfigResource(ResourceType.TOPIC, name) for name in topics}
    futures = admin.describe_configs(list(resources.values()), request_timeout=timeout_s)
    limits: dict[str, int] = {}
    for name, resource in resources.items():
        try:
            entry = futures[resource].result().get("max.message.bytes")
            broker_limit = int(entry.value) if entry is not None and entry.value else None
        except KafkaException as exc:
            log.warning(
                "cannot read max.message.bytes of %s (%s); using the declared limit",
                name,
                exc.args[0].name(),
            )
            broker_limit = None
        topic_limit = broker_limit or declared.get(name, BROKER_DEFAULT_MAX_MESSAGE_BYTES)
        limits[name] = min(topic_limit, producer_max_bytes) - FRAMING_MARGIN
    default = min(BROKER_DEFAULT_MAX_MESSAGE_BYTES, producer_max_bytes) - FRAMING_MARGIN
    return OutputLimits(limits, default)


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> int:
    """Bytes a record takes in a batch, less the framing `FRAMING_MARGIN` covers."""
    size = len(key or b"") + len(value or b"")
    for name, header in headers:
        size += len(name) + len(header or b"")
    return size
