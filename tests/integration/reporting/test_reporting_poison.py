"""A record the reporting app cannot read is dead-lettered with its bytes and the reason;
the app goes on counting the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from reporting_flow import (
    at,
    example,
    phone,
    reporting_app,
    send_and_route,
    wait_until,
)

from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_DEADLETTER, CONTACT_ORES
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.reporting.figures import published

pytestmark = pytest.mark.integration
POISON = b"\xc3\x01 not an Avro record"


def test_unreadable_tagged_event_is_dead_lettered_and_counting_goes_on(  # type: ignore[no-untyped-def]
    container, tmp_path: Path
) -> None:
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    producer = Producer(container.settings.kafka_client_config())
    producer.produce(container.topics.name(CONTACT_ORES), POISON, key=b"k", partition=0)
    producer.flush()
    when = datetime.now(UTC) - timedelta(minutes=30)
    calls = [("phone", at(example("phone", "inbound_call"), when, phone=phone(n)))
             for n in range(6)]  # fmt: skip
    send_and_route(container, calls)
    log = tmp_path / "reporting.log"
    with reporting_app(container, log, CONTACTFLOW_KPI_PUBLISH_INTERVAL_S="0.5") as app:
        day = wait_until(lambda: _day_phone(container), "the day's figure", log)
        assert app.poll() is None, "the app is still running"
    assert sum(f["measures"].get("offered", 0) for f in day) == 6
    serde = AvroSerde(container.schemas)
    topic = container.topics.name(CONTACT_DEADLETTER)
    messages = read_all(container.settings.kafka_client_config(), topic)
    letters = [serde.deserialize(m.value() or b"")[1] for m in messages]
    mine = [x for x in letters if x["stage"] == "reporting-extract"]
    assert len(mine) == 1
    assert mine[0]["original_value"] == POISON
    assert mine[0]["source_topic"] == container.topics.name(CONTACT_ORES)
    assert mine[0]["reason_code"]
    assert "reporting-extract failed at" in log.read_text()


def _day_phone(container) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    figures = published(container)
    return [f for k, f in figures.items() if k.startswith("day|") and f["channel"] == "phone"]
