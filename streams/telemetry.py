"""OpenTelemetry set-up and W3C trace context over Kafka headers.

`configure_telemetry` builds a tracer and a meter from the standard `OTEL_*` variables
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` and
`OTEL_METRICS_EXPORTER` = `none` | `console` | `otlp`, `OTEL_METRIC_EXPORT_INTERVAL`, and
the `OTEL_EXPORTER_OTLP_*` ones, read by the OTLP/HTTP exporter when `contactflow[otlp]` is
installed). With `prometheus=True` the meter is also read by a Prometheus reader on a
registry of its own, which `prometheus_text()` renders for a worker's `/metrics`.
`Telemetry.in_memory()` keeps every span and metric in memory for tests. Providers are
owned by the returned object, never installed as process globals, so two workers in one
test process do not see each other's data.

Attributes must never carry personal data: only ids, pseudonyms, counts, topic names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

from streams.errors import ContactflowError

Headers = list[tuple[str, bytes]]
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass
class Telemetry:
    """The tracer and meter handed to every component by the composition root."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: InMemorySpanExporter | None = None
    metric_reader: InMemoryMetricReader | None = None
    prometheus_registry: CollectorRegistry | None = None

    def tracer(self, name: str) -> Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> Meter:
        return self.meter_provider.get_meter(name)

    def prometheus_text(self) -> bytes:
        """Every metric in the Prometheus text format (observable gauges are read now)."""
        if self.prometheus_registry is None:
            raise ContactflowError("telemetry was configured without prometheus=True")
        from prometheus_client import generate_latest

        return generate_latest(self.prometheus_registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    @classmethod
    def in_memory(cls, service_name: str = "contactflow-test") -> Telemetry:
        """Spans and metrics kept in memory, for tests that inspect what was emitted."""
        exporter = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        resource = Resource.create({"service.name": service_name})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        return cls(tracer_provider, meter_provider, exporter, reader)

    def exported_text(self) -> str:
        """Every span (name, attributes, events) and metric point as text, for leak checks."""
        parts: list[str] = []
        if self.span_exporter is not None:
            for span in self.span_exporter.get_finished_spans():
                parts.append(span.name)
                parts.extend(f"{k}={v!s}" for k, v in (span.attributes or {}).items())
                for event in span.events:
                    parts.append(event.name)
                    parts.extend(f"{k}={v!s}" for k, v in (event.attributes or {}).items())
        if self.metric_reader is not None:
            data = self.metric_reader.get_metrics_data()
            for resource_metrics in data.resource_metrics if data else []:
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        parts.append(metric.name)
                        for point in metric.data.data_points:
                            attributes = point.attributes or {}
                            parts.extend(f"{k}={v!s}" for k, v in attributes.items())
        return "\n".join(parts)


def configure_telemetry(
    service_name: str, environ: Mapping[str, str] | None = None, *, prometheus: bool = False
) -> Telemetry:
    """Tracer and meter from the standard OTEL_* variables; `none` exporters by default.
    `prometheus`: also keep the metrics for `Telemetry.prometheus_text` (a worker's
    `/metrics`), on a registry of this object's own, not prometheus_client's global one."""
    env = os.environ if environ is None else environ
    attributes: dict[str, Any] = {"service.name": env.get("OTEL_SERVICE_NAME", service_name)}
    resource = Resource.create(attributes)
    tracer_provider = TracerProvider(resource=resource)
    for processor in _span_processors(env.get("OTEL_TRACES_EXPORTER", "none")):
        tracer_provider.add_span_processor(processor)
    interval = float(env.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
    readers = list(_metric_readers(env.get("OTEL_METRICS_EXPORTER", "none"), interval))
    registry = None
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        registry = CollectorRegistry(auto_describe=False)
        readers.append(PrometheusMetricReader(registry=registry))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider, meter_provider, prometheus_registry=registry)


def _names(value: str) -> Iterator[str]:
    return (part.strip() for part in value.split(",") if part.strip() not in ("", "none"))


def _span_processors(value: str) -> list[SpanProcessor]:
    exporters: list[SpanExporter] = []
    for name in _names(value):
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp("trace_exporter", "OTLPSpanExporter")())
        else:
            raise ContactflowError(
                f"OTEL_TRACES_EXPORTER={name!r} is not available; use 'console', 'otlp' or 'none'"
            )
    return [SimpleSpanProcessor(exporter) for exporter in exporters]


def _metric_readers(value: str, interval_ms: float) -> Sequence[MetricReader]:
    readers: list[MetricReader] = []
    for name in _names(value):
        if name == "console":
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(), export_interval_millis=interval_ms
                )
            )
        elif name == "otlp":
            exporter = _otlp("metric_exporter", "OTLPMetricExporter")()
            readers.append(
                PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
            )
        elif name == "prometheus":
            raise ContactflowError(
                "OTEL_METRICS_EXPORTER='prometheus': a worker serves its metrics on "
                "/metrics when CONTACTFLOW_HTTP_PORT is set; use 'console', 'otlp' or 'none'"
            )
        else:
            raise ContactflowError(
                f"OTEL_METRICS_EXPORTER={name!r} is not available; use 'console', 'otlp' or 'none'"
            )
    return readers


def _otlp(module: str, name: str) -> Any:
    """The OTLP/HTTP exporter class (protobuf over HTTP, no gRPC), an optional extra."""
    import importlib

    try:
        found = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module}")
    except ImportError:
        raise ContactflowError(
            "the OTLP exporter is not installed: pip install 'contactflow[otlp]' "
            "(OTLP over HTTP/protobuf)"
        ) from None
    return getattr(found, name)


def kafka_span_attributes(
    operation: str,
    *,
    destination: str | None = None,
    partition: int | None = None,
    group: str | None = None,
    batch: int | None = None,
    offset: int | None = None,
) -> dict[str, str | int]:
    """The OpenTelemetry messaging attributes of a Kafka span (`operation`: `process`,
    `send`, `receive`); a destination or partition is left out when a batch spans several.
    Topic names, partitions, offsets and group names only: never personal data."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }
    if destination is not None:
        attributes["messaging.destination.name"] = destination
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if batch is not None:
        attributes["messaging.batch.message_count"] = batch
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    return attributes


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("ascii")))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]] | None]):
    def get(self, carrier: Sequence[tuple[str, bytes]] | None, key: str) -> list[str] | None:
        values = [v.decode("ascii", "replace") for k, v in carrier or () if k == key and v]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes]] | None) -> list[str]:
        return [k for k, _ in carrier or ()]


def inject_context(headers: Headers, context: Context | None = None) -> Headers:
    """Add the W3C `traceparent`/`tracestate` of `context` (default: current) to headers."""
    _PROPAGATOR.inject(headers, context=context, setter=_HeaderSetter())
    return headers


def extract_context(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    """The trace context carried by Kafka headers, to start a consumer span as its child."""
    return _PROPAGATOR.extract(headers, context=otel_context.Context(), getter=_HeaderGetter())
