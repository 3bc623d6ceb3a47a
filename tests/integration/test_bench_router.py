"""`contactflow bench router` on a small workload: every system, the real router included,
handles every event exactly once, and the summary line has the promised form."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Consumer, Producer

from streams.bootstrap import Container
from streams.dev.bench.harness import GroupProgress
from streams.dev.bench.router_bench import run_router_bench
from streams.dev.bench.router_runner import run_real_router
from streams.dev.bench.workload import generate_workload

pytestmark = pytest.mark.integration

EVENTS = 2000
SUMMARY = re.compile(
    r"router_vs_limit=\d+\.\d{2} router_vs_faust=\d+\.\d{2} router_vs_quix=\d+\.\d{2}"
)


def test_bench_measures_every_system_on_the_same_workload(container: Container) -> None:
    progress: list[str] = []

    result = run_router_bench(container, EVENTS, progress.append, router=run_real_router)

    for run in (result.limit, result.quix, result.faust, result.router):
        assert run.events == EVENTS
        assert run.outputs == EVENTS, run.name  # every event processed exactly once
        assert run.events_per_s > 0
        assert run.peak_rss_bytes > 0
    assert SUMMARY.fullmatch(result.summary_line())
    assert result.report_lines()[-1] == result.summary_line()
    leftovers = [
        name
        for name in container.admin().list_topics(timeout=30).topics
        if name.startswith(f"{container.settings.topic_prefix}bench-")
    ]
    assert leftovers == []
    assert any("limit done" in line for line in progress)
    text = "\n".join(progress).casefold()  # progress shows counts and rates, never PII
    for item in generate_workload(EVENTS, 20251126):
        subject = item.event["envelope"]["subject"]
        for value in (subject.get("phone"), subject.get("email"), subject.get("customer_ref")):
            assert value is None or value.casefold() not in text


def test_group_progress_counts_committed_input_offsets(container: Container) -> None:
    """What a RouterRunner can poll: exact progress of a transactional loop's group."""
    config = container.settings.kafka_client_config()
    topic = container.topics.name("contact.raw.survey.v1")
    producer = Producer(config)
    for i in range(30):
        producer.produce(topic, b"x", str(i).encode())
    assert producer.flush(30) == 0
    group = f"{container.settings.topic_prefix}progress"
    progress = GroupProgress(container.admin(), group, [topic])
    assert progress.count() == 0
    consumer = Consumer(
        {**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        while seen < 30:
            seen += len(consumer.consume(30, 1.0))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert progress.count() == 30
