"""The router's telemetry: metrics of each batch, lag, peak RSS and the subject cache, and
the links from a batch's span to the traces of the events in it. Attributes are channels,
topics, codes: never personal data."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message
from opentelemetry.trace import Link, SpanContext, TraceFlags

from schemas.topic_names import CONTACT_DEADLETTER, CONTACT_QUARANTINE, RETENTION_SIGNALS
from streams.bootstrap import Container
from streams.router.directory import SubjectDirectory
from streams.router.pipeline import CHANNEL_OF_TOPIC, BatchOutcome


def batch_links(messages: list[Message], limit: int = 32) -> list[Link]:
    """Span links to the producers' traces of a batch's first `limit` events."""
    links = []
    for message in messages:
        headers: list[tuple[str, bytes]] = message.headers() or []  # type: ignore[assignment]
        for key, value in headers:
            if key == "traceparent" and isinstance(value, bytes):
                parts = value.decode("ascii", "replace").split("-")
                if len(parts) == 4:
                    try:
                        context = SpanContext(int(parts[1], 16), int(parts[2], 16), True,
                                              TraceFlags(int(parts[3], 16)))  # fmt: skip
                    except ValueError:
                        continue
                    links.append(Link(context))
        if len(links) >= limit:
            break
    return links


# Latency buckets in seconds (the SDK's default ones suit milliseconds).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Where the counts of a batch that are not "out" records went, by logical topic.
_OUT_TOPIC_OF = {"dead_letter": CONTACT_DEADLETTER, "quarantined": CONTACT_QUARANTINE,
                 "hold_signal": RETENTION_SIGNALS}  # fmt: skip


class RouterMetrics:
    """Counters and histograms of the router; attributes are logical topic names,
    partitions, channels, controllers and reason codes. Updated once per batch, never
    per event; the lag gauge is read when the metrics are (a scrape, an export)."""

    def __init__(
        self, container: Container, consumer: Consumer, directory: SubjectDirectory
    ) -> None:
        meter = container.telemetry.meter("contactflow.router")
        self._in = meter.create_counter(
            "contactflow.router.events_in", unit="{event}",
            description="raw events read, by topic and channel",
        )  # fmt: skip
        self._out = meter.create_counter(
            "contactflow.router.events_out", unit="{record}",
            description="records written, by topic (and controller for tagged events)",
        )  # fmt: skip
        self._dead = meter.create_counter(
            "contactflow.router.dead_letters", unit="{event}",
            description="events dead-lettered, by reason code",
        )  # fmt: skip
        self._quarantined = meter.create_counter(
            "contactflow.router.quarantined", unit="{event}",
            description="events no policy rule matched, by channel",
        )  # fmt: skip
        self._dropped = meter.create_counter(
            "contactflow.router.dropped", unit="{event}",
            description="events not produced (duplicates, objected purposes), by reason",
        )  # fmt: skip
        self._signals = meter.create_counter(
            "contactflow.router.hold_signals", unit="{event}",
            description="hold signals sent to retention, by reason",
        )  # fmt: skip
        self._aborts = meter.create_counter(
            "contactflow.router.aborts", unit="{transaction}",
            description="transactions aborted (the batch is read again), by error code",
        )  # fmt: skip
        self._latency = meter.create_histogram(
            "contactflow.router.batch_latency", unit="s",
            description="a batch from routing to its committed transaction",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )  # fmt: skip
        self._transaction = meter.create_histogram(
            "contactflow.router.transaction_latency", unit="s",
            description="a Kafka transaction from begin to commit or abort, by outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )  # fmt: skip
        topics = container.topics
        self._aborts.add(0)  # a series from the start, so that rate() and alerts see 0
        self._topic_of = {c: topics.name(t) for t, c in CHANNEL_OF_TOPIC.items()}
        self._physical = {spec.name: topics.name(spec.name) for spec in topics.specs}
        self._consumer: Consumer | None = consumer
        self._lag: dict[tuple[str, int], int] = {}  # the last sample, read by the gauge
        self._committed: dict[tuple[str, int], int] = {}  # of partitions not read yet
        meter.create_observable_gauge(
            "contactflow.router.lag", callbacks=[self._observe_lag], unit="{event}",
            description="records not yet read, by raw topic and partition (high watermark "
            "minus the consumer's position)",
        )  # fmt: skip
        meter.create_observable_gauge(
            "contactflow.router.peak_rss", callbacks=[_observing(_peak_rss_bytes)], unit="By",
            description="peak resident memory of the router process",
        )  # fmt: skip
        self._directory = directory
        meter.create_observable_gauge(
            "contactflow.router.cache_bytes", unit="By",
            callbacks=[_observing(directory.cache_bytes)],
            description="estimated memory of the subject cache (digests, keys, footprints), "
            "held under CONTACTFLOW_ROUTER_CACHE_MB",
        )  # fmt: skip
        meter.create_observable_gauge(
            "contactflow.router.cache_entries", callbacks=[self._observe_cache_entries],
            unit="{entry}", description="entries in the subject cache, by cache "
            "(digests, keys: unwrapped data keys, footprints)",
        )  # fmt: skip
        meter.create_observable_counter(
            "contactflow.router.cache_evictions", unit="{entry}",
            callbacks=[_observing(lambda: directory.evicted)],
            description="least recently used cache entries evicted to hold the budget",
        )  # fmt: skip
        meter.create_observable_counter(
            "contactflow.router.ledger_round_trips", unit="{transaction}",
            callbacks=[_observing(lambda: directory.ledger_round_trips)],
            description="ledger transactions the router opened (a batch whose subjects and "
            "keys were all cached opens none)",
        )  # fmt: skip

    def record(self, outcome: BatchOutcome, seconds: float) -> None:
        self._latency.record(seconds)
        for key, count in outcome.counts.items():
            kind, *labels = key
            if kind == "in":
                topic = self._topic_of.get(labels[0], "unknown")
                self._in.add(count, {"topic": topic, "channel": labels[0]})
            elif kind == "out":
                topic = self._physical.get(labels[0], labels[0])
                self._out.add(count, {"topic": topic, "controller": labels[1]})
            elif kind == "dead_letter":
                self._dead.add(count, {"reason": labels[0]})
            elif kind == "quarantined":
                self._quarantined.add(count, {"channel": labels[0]})
            elif kind == "hold_signal":
                self._signals.add(count, {"reason": labels[0]})
            else:
                self._dropped.add(count, {"reason": kind})
            if kind in _OUT_TOPIC_OF:
                topic = self._physical.get(_OUT_TOPIC_OF[kind], _OUT_TOPIC_OF[kind])
                self._out.add(count, {"topic": topic, "controller": "none"})

    def transaction(self, seconds: float, committed: bool) -> None:
        self._transaction.record(seconds, {"outcome": "committed" if committed else "aborted"})

    def aborted(self, reason: str) -> None:
        self._aborts.add(1, {"reason": reason})

    def detach(self) -> None:
        """Forget the consumer (before it closes): no lag is reported after this."""
        self._consumer = None
        self._lag = {}

    def sample_lag(self) -> None:
        """Compute the lag per partition, from the worker's own thread (every few seconds):
        a metrics read then takes the last sample and never calls the consumer itself."""
        consumer = self._consumer
        if consumer is None:
            return
        try:
            self._lag = _lag(consumer, self._committed)
        except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed
            self._lag = {}

    def _observe_lag(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [
            Observation(lag, {"topic": topic, "partition": partition})
            for (topic, partition), lag in self._lag.items()
        ]

    def _observe_cache_entries(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        directory = self._directory
        return [
            Observation(directory.cached_digests, {"cache": "digests"}),
            Observation(directory.cached_keys, {"cache": "keys"}),
            Observation(directory.cached_footprints, {"cache": "footprints"}),
        ]


def _observing(read: Callable[[], int]) -> Callable[[Any], list[Any]]:
    """A callback observing `read()` (a len(), an int, getrusage: safe from the scrape's
    thread)."""

    def observe(_options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(read())]

    return observe


def _lag(consumer: Consumer, committed: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Records not read yet per assigned partition: the high watermark the consumer last
    saw minus its position, or minus the committed offset (the log start when none) for a
    partition it has read nothing from since it was assigned (`committed` caches those,
    asked once). Partitions not fetched yet are left out."""
    assigned = consumer.assignment()
    for key in set(committed) - {(tp.topic, tp.partition) for tp in assigned}:
        del committed[key]
    positions = consumer.position(assigned)
    unknown = [t for t in positions if t.offset < 0 and (t.topic, t.partition) not in committed]
    if unknown:
        for tp in consumer.committed(unknown, timeout=5):
            committed[(tp.topic, tp.partition)] = tp.offset
    lag: dict[tuple[str, int], int] = {}
    for tp in positions:
        key = (tp.topic, tp.partition)
        low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
        if tp.offset >= 0:
            committed.pop(key, None)
            start = tp.offset
        else:
            start = committed.get(key, -1)
            start = start if start >= 0 else max(low, 0)
        if high >= 0:
            lag[key] = max(high - start, 0)
    return lag


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
