"""The control plane's per-record telemetry: a CONSUMER span per input record (a child of
the producer's trace when its headers carry one), records in by topic, dead letters by
topic and reason. Topic names, partitions, offsets and reason codes only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind

from streams.telemetry import Telemetry, extract_context, kafka_span_attributes


class ControlInstruments:
    def __init__(self, telemetry: Telemetry, group: str) -> None:
        self._group = group
        self._tracer = telemetry.tracer("contactflow.control")
        meter = telemetry.meter("contactflow.control")
        self._in = meter.create_counter(
            "contactflow.control.events_in", unit="{record}",
            description="records the privacy app took from its input topics, by topic",
        )  # fmt: skip
        self._dead = meter.create_counter(
            "contactflow.control.dead_letters", unit="{record}",
            description="input records the privacy app dead-lettered, by topic and reason",
        )  # fmt: skip

    @contextmanager
    def consumed(self, message: Any) -> Iterator[None]:
        """Around the handling of one faust message (its `event.message`)."""
        topic = str(message.topic)
        attributes = kafka_span_attributes(
            "process", destination=topic, partition=int(message.partition),
            group=self._group, offset=int(message.offset),
        )  # fmt: skip
        headers = message.headers
        carrier = list(headers.items()) if isinstance(headers, dict) else headers
        with self._tracer.start_as_current_span(
            f"process {topic}", context=extract_context(carrier), kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):  # fmt: skip
            yield
        self._in.add(1, {"topic": topic})

    def dead_lettered(self, topic: str, reason: str) -> None:
        self._dead.add(1, {"topic": topic, "reason": reason})
