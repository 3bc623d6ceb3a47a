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


def test_prometheus_text_renders_otel_names_on_a_registry_of_its_own() -> None:
    first = configure_telemetry("a", {}, prometheus=True)
    second = configure_telemetry("b", {}, prometheus=True)
    meter = first.meter("contactflow.router")
    meter.create_counter("contactflow.router.events_in", unit="{event}").add(2, {"topic": "t"})
    meter.create_histogram(
        "contactflow.router.batch_latency", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1]
    ).record(0.05)
    text = first.prometheus_text().decode()
    assert 'contactflow_router_events_in_total{otel_scope_name="contactflow.router"' in text
    assert 'contactflow_router_batch_latency_seconds_bucket{le="0.1"' in text
    assert "contactflow_router" not in second.prometheus_text().decode()  # no global registry
    with pytest.raises(ContactflowError, match="without prometheus=True"):
        configure_telemetry("c", {}).prometheus_text()


def test_otlp_is_an_optional_extra_and_prometheus_a_port() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        with pytest.raises(ContactflowError, match=r"pip install 'contactflow\[otlp\]'"):
            configure_telemetry("x", {"OTEL_TRACES_EXPORTER": "otlp"})
    else:
        configure_telemetry("x", {"OTEL_TRACES_EXPORTER": "otlp"}).shutdown()
    with pytest.raises(ContactflowError, match="CONTACTFLOW_HTTP_PORT"):
        configure_telemetry("x", {"OTEL_METRICS_EXPORTER": "prometheus"})


def test_kafka_span_attributes_follow_the_messaging_conventions() -> None:
    from streams.telemetry import kafka_span_attributes

    assert kafka_span_attributes("process", destination="contact.raw.phone.v1", partition=3,
                                 group="contactflow-router", batch=10, offset=7) == {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "contact.raw.phone.v1",
        "messaging.destination.partition.id": "3",
        "messaging.consumer.group.name": "contactflow-router",
        "messaging.batch.message_count": 10, "messaging.kafka.offset": 7,
    }  # fmt: skip
    assert kafka_span_attributes("send") == {"messaging.system": "kafka",
                                             "messaging.operation.type": "send",
                                             "messaging.operation.name": "send"}  # fmt: skip
