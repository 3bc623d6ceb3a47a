"""The retention catch-up (the demo's and the tests' `apply_retention_topics`) resumes where
it left off: a record it could not use is dead-lettered once, not again on each run, and
a run applies only what came since the last."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from schemas.examples import example_events
from schemas.topic_names import CONTACT_DEADLETTER, RETENTION_SIGNALS
from streams.control.retention.catchup import apply_retention_topics
from streams.control.retention.service import RetentionService
from streams.kafka.readback import read_all
from streams.ledger import upgrade
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration


def _call_with_recording(now: datetime) -> dict:  # type: ignore[type-arg]
    call = copy.deepcopy(
        next(e for e in example_events("phone") if e["kind"] == "recording_available")
    )
    call["envelope"] |= {"event_id": str(uuid.uuid4()), "purpose": "contact_handling",
                         "occurred_at": (now - timedelta(days=1)).isoformat()}  # fmt: skip
    call["payload"] |= {"recording_id": f"rec-{uuid.uuid4().hex[:10]}",
                        "started_at": (now - timedelta(days=1, minutes=5)).isoformat(),
                        "ended_at": (now - timedelta(days=1)).isoformat()}  # fmt: skip
    return call


def test_a_second_catch_up_applies_only_what_came_since_and_dead_letters_nothing_twice(
    container,  # type: ignore[no-untyped-def]
) -> None:
    upgrade(container.settings.resolved_database_url())
    now = datetime.now(UTC)
    producer = container.producer()
    producer.send("phone", _call_with_recording(now))
    producer.flush()
    RouterWorker(container).run(max_idle_s=1.5)
    raw = Producer(container.settings.kafka_client_config())
    raw.produce(container.topics.name(RETENTION_SIGNALS), b"not a hold signal", b"bad-1")
    raw.flush(10)
    config = container.settings.kafka_client_config()
    dead_letters = container.topics.name(CONTACT_DEADLETTER)
    service = RetentionService.from_container(container, actor="test", grace_days=7)
    try:
        first = apply_retention_topics(container, service, now)
        assert (first.registered, first.dead_lettered) == (1, 1)
        assert len(read_all(config, dead_letters)) == 1

        again = apply_retention_topics(container, service, now)
        assert (again.registered, again.dead_lettered) == (0, 0), "read from where it left off"
        assert len(read_all(config, dead_letters)) == 1, "the bad record is not dead-lettered twice"

        producer.send("phone", _call_with_recording(now))
        producer.flush()
        RouterWorker(container).run(max_idle_s=1.5)
        later = apply_retention_topics(container, service, now)
        assert (later.registered, later.dead_lettered) == (1, 0)
    finally:
        service.close()
