"""The downstream SDK on the real broker: who answers what, holds, re-sends, failures."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from downstream_commands import command, publish, read_acks

from streams.bootstrap import Container
from streams.sdk.downstream.client import Answer, DownstreamConsumer, ReceivedCommand
from streams.sdk.downstream.example import example_answer
from streams.telemetry import Telemetry

pytestmark = pytest.mark.integration

ANSWERED_AT = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


def test_each_consumer_answers_only_its_own_commands_on_both_topics(
    container: Container, telemetry: Telemetry
) -> None:
    mine = {
        "crm": [command("crm", "erase"), command("crm", "restrict")],
        "recording_store": [command("recording_store", "erase"),
                            command("recording_store", "stop_purpose")],
    }  # fmt: skip
    unserved = command("survey_tool", "suppress")
    publish(container, [*mine["crm"], *mine["recording_store"], unserved])

    for name in mine:
        with DownstreamConsumer(container, name, clock=lambda: ANSWERED_AT) as consumer:
            stats = consumer.serve(example_answer, max_idle_s=2)
        assert (stats.received, stats.answered["done"], stats.ignored) == (2, 2, 3)
        assert stats.unreadable == stats.handler_errors == 0

    acks = read_acks(container)
    expected = {c["command_id"]: (c["request_id"], name) for name, cs in mine.items() for c in cs}
    assert {a["command_id"]: (a["request_id"], a["consumer"]) for _, a in acks} == expected
    assert all(key == a["request_id"].encode() for key, a in acks)
    assert {(a["outcome"], a["reason"], a["acknowledged_at"]) for _, a in acks} == {
        ("done", None, ANSWERED_AT)
    }

    spans = [s for s in telemetry.span_exporter.get_finished_spans()  # type: ignore[union-attr]
             if s.name == "downstream.command"]  # fmt: skip
    assert sorted((s.attributes["downstream.consumer"], s.attributes["downstream.command"],
                   s.attributes["downstream.outcome"], s.attributes["downstream.attempt"])
                  for s in spans) == [  # type: ignore[index]
        ("crm", "erase", "done", 1), ("crm", "restrict", "done", 1),
        ("recording_store", "erase", "done", 1), ("recording_store", "stop_purpose", "done", 1),
    ]  # fmt: skip
    from opentelemetry.trace import SpanKind

    erasure = container.topics.name("privacy.erasure.v1")
    for span in spans:
        assert span.kind is SpanKind.CONSUMER
    erase = next(s for s in spans if s.attributes["downstream.command"] == "erase")  # type: ignore[index]
    messaging = {k: v for k, v in erase.attributes.items() if k.startswith("messaging.")}  # type: ignore[union-attr]
    assert str(messaging.pop("messaging.destination.partition.id")).isdigit()
    assert isinstance(messaging.pop("messaging.kafka.offset"), int)
    assert messaging == {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": erasure,
        "messaging.consumer.group.name":
            container.settings.scoped(  # type: ignore[index]
                f"contactflow-downstream-{erase.attributes['downstream.consumer']}"
            ),
    }  # fmt: skip
    sends = [s for s in telemetry.span_exporter.get_finished_spans()  # type: ignore[union-attr]
             if s.kind is SpanKind.PRODUCER]  # fmt: skip
    assert {s.name for s in sends} == {f"send {container.topics.name('privacy.acks.v1')}"}
    exported = telemetry.exported_text()
    assert "contactflow.downstream.answers" in exported
    for record in [*mine["crm"], *mine["recording_store"], unserved]:
        assert record["subject_pseudonym"] not in exported


def test_skipped_commands_are_committed_so_a_new_instance_starts_after_them(
    container: Container,
) -> None:
    publish(container, [command("crm"), command("coaching_tool"), command("ores_systems")])
    with DownstreamConsumer(container, "crm") as consumer:
        assert consumer.serve(example_answer, max_idle_s=2).received == 1
    with DownstreamConsumer(container, "crm") as again:
        stats = again.serve(example_answer, max_idle_s=2)
    assert (stats.received, stats.ignored, stats.unreadable) == (0, 0, 0)


def test_erase_with_held_recordings_is_retained_under_hold(container: Container) -> None:
    held = command("recording_store", "erase", held=["rec-000123", "rec-000124"])
    plain = command("recording_store", "erase")
    publish(container, [held, plain])
    with DownstreamConsumer(container, "recording_store") as consumer:
        stats = consumer.serve(example_answer, max_idle_s=2)
    assert dict(stats.answered) == {"retained_under_hold": 1, "done": 1}
    outcomes = {a["command_id"]: (a["outcome"], a["reason"]) for _, a in read_acks(container)}
    assert outcomes == {
        held["command_id"]: ("retained_under_hold", "kept under legal hold"),
        plain["command_id"]: ("done", None),
    }


def test_a_resent_command_is_answered_again(container: Container) -> None:
    first = command("crm", "restrict")
    resent = {**first, "attempt": 2}
    seen: list[ReceivedCommand] = []

    def remember(received: ReceivedCommand) -> Answer:
        seen.append(received)
        return Answer("done")

    publish(container, [first, resent])
    with DownstreamConsumer(container, "crm") as consumer:
        stats = consumer.serve(remember, max_idle_s=2)
    assert stats.received == 2
    assert [(c.command_id, c.attempt) for c in seen] == [(first["command_id"], 1),
                                                         (first["command_id"], 2)]  # fmt: skip
    assert [a["command_id"] for _, a in read_acks(container)] == [first["command_id"]] * 2


def test_a_handler_exception_answers_failed_with_its_type_and_serving_goes_on(
    container: Container, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = command("crm", "rectify"), command("crm", "rectify")

    def handler(received: ReceivedCommand) -> Answer:
        if received.command_id == broken["command_id"]:
            raise LookupError(f"no customer for {received.subject_pseudonym}")
        return Answer("done")

    publish(container, [broken, fine])
    caplog.set_level(logging.INFO)
    with DownstreamConsumer(container, "crm") as consumer:
        stats = consumer.serve(handler, max_idle_s=2)
    assert (stats.received, stats.handler_errors, dict(stats.answered)) == (
        2, 1, {"failed": 1, "done": 1}
    )  # fmt: skip
    answers = {a["command_id"]: (a["outcome"], a["reason"]) for _, a in read_acks(container)}
    assert answers == {broken["command_id"]: ("failed", "LookupError"),
                       fine["command_id"]: ("done", None)}  # fmt: skip
    assert broken["subject_pseudonym"] not in caplog.text
    assert broken["subject_pseudonym"] not in telemetry.exported_text()
    assert "LookupError" in caplog.text


def test_an_injected_error_policy_decides_the_answer(container: Container) -> None:
    target = command("survey_tool", "suppress")
    publish(container, [target])

    def missing(received: ReceivedCommand) -> Answer:
        raise KeyError(received.command_id)

    with DownstreamConsumer(container, "survey_tool") as consumer:
        stats = consumer.serve(missing, max_idle_s=2, on_error=lambda error, _: Answer("not_found"))
    assert dict(stats.answered) == {"not_found": 1}
    assert [a["outcome"] for _, a in read_acks(container)] == ["not_found"]


def test_max_commands_leaves_the_rest_for_the_next_serve(container: Container) -> None:
    commands = [command("crm", "restrict") for _ in range(3)]
    publish(container, commands)
    with DownstreamConsumer(container, "crm") as consumer:
        assert consumer.serve(example_answer, max_commands=2).received == 2
        assert consumer.serve(example_answer, max_idle_s=2).received == 1
    answered = sorted(a["command_id"] for _, a in read_acks(container))
    assert answered == sorted(c["command_id"] for c in commands)


def test_the_command_span_continues_the_trace_of_the_command(
    container: Container, telemetry: Telemetry
) -> None:
    from confluent_kafka import Producer

    from schemas.serde import AvroSerde
    from streams.telemetry import inject_context

    sent = command("crm", "restrict")
    value = AvroSerde(container.schemas).serialize(
        sent, container.schemas.latest("DownstreamCommand")
    )
    with telemetry.tracer("test.privacy-app").start_as_current_span("privacy.send") as parent:
        headers = inject_context([])
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name("privacy.restriction.v1"), value, b"k",
                     headers=headers)  # type: ignore[arg-type]  # fmt: skip
    assert producer.flush(30) == 0

    with DownstreamConsumer(container, "crm") as consumer:
        assert consumer.serve(example_answer, max_idle_s=2).received == 1
    (span,) = [s for s in telemetry.span_exporter.get_finished_spans()  # type: ignore[union-attr]
               if s.name == "downstream.command"]  # fmt: skip
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


def test_an_error_policy_that_raises_stops_serving_and_leaves_the_command_uncommitted(
    container: Container, telemetry: Telemetry
) -> None:
    from opentelemetry.trace import StatusCode

    sent = command("crm", "erase")
    publish(container, [sent])

    def broken(received: ReceivedCommand) -> Answer:
        raise ValueError(f"bad subject {received.subject_pseudonym}")

    def reraise(error: Exception, _: ReceivedCommand) -> Answer:
        raise error

    with (
        DownstreamConsumer(container, "crm") as consumer,
        pytest.raises(ValueError, match="bad subject"),
    ):
        consumer.serve(broken, max_idle_s=2, on_error=reraise)
    (span,) = [s for s in telemetry.span_exporter.get_finished_spans()  # type: ignore[union-attr]
               if s.name == "downstream.command"]  # fmt: skip
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "ValueError")
    assert not span.events  # no exception event, whose message would quote the pseudonym

    with DownstreamConsumer(container, "crm") as again:
        assert again.serve(example_answer, max_idle_s=2).answered == {"done": 1}
    assert [a["command_id"] for _, a in read_acks(container)] == [sent["command_id"]]
