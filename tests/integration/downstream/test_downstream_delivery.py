"""Delivery guarantees of the downstream SDK: unreadable records, at least once, errors."""

from __future__ import annotations

import logging

import pytest
from downstream_commands import command, poll_until, publish, publish_raw, read_acks

from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.sdk.downstream.client import Answer, DownstreamConsumer, DownstreamError
from streams.sdk.downstream.example import example_answer

pytestmark = pytest.mark.integration


def test_unreadable_records_are_skipped_counted_committed_and_serving_goes_on(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = command("crm"), command("crm", "restrict")
    ack = {"command_id": "c-1", "request_id": "r-1", "consumer": "crm", "outcome": "done",
           "reason": None, "acknowledged_at": before["issued_at"]}  # fmt: skip
    not_a_command = AvroSerde(container.schemas).serialize(
        ack, container.schemas.latest("Acknowledgement")
    )
    publish(container, [before])
    publish_raw(container, [
        ("privacy.erasure.v1", b"k1", b"not avro at all: secret-value"),
        ("privacy.erasure.v1", b"k2", None),
        ("privacy.restriction.v1", b"k3", not_a_command),
        ("privacy.restriction.v1", b"k4", b"\xc3\x01" + b"\x00" * 8 + b"body"),
    ])  # fmt: skip
    publish(container, [after])
    caplog.set_level(logging.WARNING)

    with DownstreamConsumer(container, "crm") as consumer:
        stats = consumer.serve(example_answer, max_idle_s=2)
    assert (stats.received, stats.unreadable, dict(stats.answered)) == (2, 4, {"done": 2})
    assert sorted(a["command_id"] for _, a in read_acks(container)) == sorted(
        [before["command_id"], after["command_id"]]
    )
    for code in ("malformed", "tombstone", "not_a_command", "unknown_writer"):
        assert code in caplog.text
    assert "secret-value" not in caplog.text

    with DownstreamConsumer(container, "crm") as again:  # everything was committed
        stats = again.serve(example_answer, max_idle_s=2)
    assert (stats.received, stats.unreadable) == (0, 0)


def test_a_command_not_acknowledged_before_close_is_delivered_again(
    container: Container,
) -> None:
    wanted = command("coaching_tool", "restrict")
    publish(container, [command("crm"), wanted])

    with DownstreamConsumer(container, "coaching_tool") as first:
        (received,) = poll_until(first, 1)
        assert received.command_id == wanted["command_id"]
    # closed without acknowledging: a "crash" before the commit

    with DownstreamConsumer(container, "coaching_tool") as second:
        (again,) = poll_until(second, 1)
        assert (again.command_id, again.topic, again.partition, again.offset) == (
            received.command_id, received.topic, received.partition, received.offset
        )  # fmt: skip
        second.acknowledge(again, Answer("done"))

    with DownstreamConsumer(container, "coaching_tool") as third:
        assert third.serve(example_answer, max_idle_s=2).received == 0
    assert [(a["command_id"], a["outcome"]) for _, a in read_acks(container)] == [
        (wanted["command_id"], "done")
    ]


def test_received_command_carries_every_field(container: Container) -> None:
    sent = command("reporting_warehouse", "erase", held=["rec-9"])
    publish(container, [sent])
    with DownstreamConsumer(container, "reporting_warehouse", group_id="g-fields") as consumer:
        (received,) = poll_until(consumer, 1)
        consumer.acknowledge(received, Answer("retained_under_hold", "kept under legal hold"))
    assert received.topic == container.topics.name("privacy.erasure.v1")
    assert (received.command_id, received.request_id, received.command, received.consumer,
            received.subject_pseudonym, received.controller, received.purpose,
            received.issued_at, received.answer_by, received.attempt,
            received.held_recordings, received.rectified_kinds) == (
        sent["command_id"], sent["request_id"], "erase", "reporting_warehouse",
        sent["subject_pseudonym"], "ORES", None, sent["issued_at"], sent["answer_by"], 1,
        ("rec-9",), (),
    )  # fmt: skip


def test_missing_topics_are_a_clear_error(settings_factory) -> None:  # type: ignore[no-untyped-def]
    from streams.bootstrap import bootstrap

    root = bootstrap(settings_factory(topic_prefix="never-applied."))
    with pytest.raises(DownstreamError, match=r"never-applied\.privacy\.erasure\.v1 is missing"):
        DownstreamConsumer(root, "crm")


def test_a_v1_command_is_read_with_the_v2_defaults(container: Container) -> None:
    sent = command("crm", "restrict")
    v1 = {k: v for k, v in sent.items()
          if k not in ("controller", "held_recordings", "rectified_kinds")}  # fmt: skip
    value = AvroSerde(container.schemas).serialize(
        v1, container.schemas.get("DownstreamCommand", 1)
    )
    publish_raw(container, [("privacy.restriction.v1", b"k", value)])
    with DownstreamConsumer(container, "crm") as consumer:
        (received,) = poll_until(consumer, 1)
        consumer.acknowledge(received, Answer("done"))
    assert (received.command_id, received.controller, received.held_recordings,
            received.rectified_kinds) == (sent["command_id"], None, (), ())  # fmt: skip
    assert [a["command_id"] for _, a in read_acks(container)] == [sent["command_id"]]


def test_two_instances_of_one_consumer_answer_everything_between_them(
    container: Container,
) -> None:
    """Scale-out: two members of one group (rebalancing as the second joins) lose nothing."""
    import threading

    from streams.sdk.downstream.client import ServeStats

    commands = [command("ores_systems", kind) for kind in ("erase", "suppress") for _ in range(20)]
    publish(container, commands)
    results: dict[int, ServeStats] = {}

    def serve(index: int) -> None:
        # each closes as soon as it is idle: a member that stops polling without leaving
        # would hold up the group's next rebalance
        with DownstreamConsumer(container, "ores_systems") as instance:
            results[index] = instance.serve(example_answer, max_idle_s=3)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == [0, 1]
    assert sum(stats.received for stats in results.values()) >= len(commands)
    acked = {a["command_id"] for _, a in read_acks(container)}
    assert acked == {c["command_id"] for c in commands}
