from __future__ import annotations

import pytest

from streams.errors import ContactflowError
from streams.telemetry import Telemetry, configure_telemetry, extract_context, inject_context


def test_trace_context_round_trips_through_kafka_headers() -> None:
    telemetry = Telemetry.in_memory()
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("produce") as producer_span:
        headers = inject_context([("other", b"x")])
    assert [k for k, _ in headers] == ["other", "traceparent"]
    with tracer.start_as_current_span("consume", context=extract_context(headers)) as child:
        pass
    produced = producer_span.get_span_context()
    assert child.get_span_context().trace_id == produced.trace_id
    finished = {s.name: s for s in telemetry.span_exporter.get_finished_spans()}
    assert finished["consume"].parent.span_id == produced.span_id


def test_extract_without_headers_starts_a_new_trace() -> None:
    telemetry = Telemetry.in_memory()
    with telemetry.tracer("t").start_as_current_span("s", context=extract_context(None)) as span:
        assert span.get_span_context().is_valid
    assert telemetry.span_exporter.get_finished_spans()[0].parent is None


def test_injecting_twice_keeps_one_traceparent() -> None:
    telemetry = Telemetry.in_memory()
    with telemetry.tracer("t").start_as_current_span("s"):
        headers = inject_context(inject_context([]))
    assert [k for k, _ in headers] == ["traceparent"]


def test_service_name_and_exporters_come_from_otel_variables() -> None:
    telemetry = configure_telemetry("x", {"OTEL_SERVICE_NAME": "router-1"})
    assert telemetry.tracer_provider.resource.attributes["service.name"] == "router-1"
    with pytest.raises(ContactflowError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        configure_telemetry("x", {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_in_memory_metrics_are_readable() -> None:
    telemetry = Telemetry.in_memory()
    telemetry.meter("m").create_counter("contactflow.test").add(3, {"channel": "phone"})
    assert "contactflow.test" in telemetry.exported_text()
    assert "channel=phone" in telemetry.exported_text()
