"""The router's telemetry: metrics of each batch, lag and peak RSS, and the links from a
batch's span to the traces of the events in it. Attributes are channels, topics, codes:
never personal data."""

from __future__ import annotations

import resource
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message
from opentelemetry.trace import Link, SpanContext, TraceFlags

from streams.bootstrap import Container
from streams.router.pipeline import BatchOutcome


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


class RouterMetrics:
    """Counters and histograms of the router; attributes are channels, topics, codes."""

    def __init__(self, container: Container, consumer: Consumer) -> None:
        meter = container.telemetry.meter("contactflow.router")
        self._in = meter.create_counter("contactflow.router.events_in", unit="{event}")
        self._out = meter.create_counter("contactflow.router.events_out", unit="{event}")
        self._dead = meter.create_counter("contactflow.router.dead_letters", unit="{event}")
        self._quarantined = meter.create_counter("contactflow.router.quarantined", unit="{event}")
        self._dropped = meter.create_counter("contactflow.router.dropped", unit="{event}")
        self._signals = meter.create_counter("contactflow.router.hold_signals", unit="{event}")
        self._latency = meter.create_histogram("contactflow.router.batch_latency", unit="s")
        self._consumer = consumer
        meter.create_observable_gauge(
            "contactflow.router.lag", callbacks=[self._observe_lag], unit="{event}"
        )
        meter.create_observable_gauge(
            "contactflow.router.peak_rss", callbacks=[_observe_rss], unit="By"
        )

    def record(self, outcome: BatchOutcome, seconds: float) -> None:
        self._latency.record(seconds)
        for key, count in outcome.counts.items():
            kind, *labels = key
            if kind == "in":
                self._in.add(count, {"channel": labels[0]})
            elif kind == "out":
                self._out.add(count, {"topic": labels[0], "controller": labels[1]})
            elif kind == "dead_letter":
                self._dead.add(count, {"reason": labels[0]})
            elif kind == "quarantined":
                self._quarantined.add(count, {"channel": labels[0]})
            elif kind == "hold_signal":
                self._signals.add(count, {"reason": labels[0]})
            else:
                self._dropped.add(count, {"reason": kind})

    def _observe_lag(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        consumer = self._consumer
        observations = []
        try:
            for tp in consumer.position(consumer.assignment()):
                _, high = consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
                if tp.offset >= 0:
                    observations.append(
                        Observation(
                            max(high - tp.offset, 0), {"topic": tp.topic, "partition": tp.partition}
                        )
                    )
        except KafkaException:
            return []
        return observations


def _observe_rss(_options: Any) -> list[Any]:
    from opentelemetry.metrics import Observation

    return [Observation(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)]
