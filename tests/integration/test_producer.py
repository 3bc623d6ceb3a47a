"""The producer SDK and `contactflow produce` against the real broker."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.validation import ContractViolation
from streams.cli import app
from streams.kafka.readback import read_all
from streams.sdk.producer import CHANNELS, SCHEMA_HEADER, raw_topic

pytestmark = pytest.mark.integration

PII_SAMPLES = ("+32 471", "0471", "@example.org")


def _read(container, channel: str):  # type: ignore[no-untyped-def]
    topic = container.topics.name(raw_topic(channel))
    return read_all(container.settings.kafka_client_config(), topic)


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_round_trips_keyed_by_contact_id(container, channel: str) -> None:  # type: ignore[no-untyped-def]
    producer = container.producer()
    events = example_events(channel)
    for event in events:
        producer.send(channel, event)
    assert producer.flush().delivered == len(events)

    messages = _read(container, channel)
    serde = AvroSerde(container.schemas)
    assert sorted(m.key().decode() for m in messages) == sorted(
        e["envelope"]["contact_id"] for e in events
    )
    decoded = [serde.deserialize(m.value())[1] for m in messages]
    assert sorted(r["envelope"]["event_id"] for r in decoded) == sorted(
        e["envelope"]["event_id"] for e in events
    )
    for message in messages:
        headers = dict(message.headers())
        assert headers[SCHEMA_HEADER].startswith(b"be.comnexio.contactflow.")
        assert "traceparent" in headers


def test_trace_context_in_headers_is_the_producer_span(container, telemetry) -> None:  # type: ignore[no-untyped-def]
    producer = container.producer()
    producer.send("phone", example_events("phone")[0])
    producer.flush()
    (message,) = _read(container, "phone")
    traceparent = dict(message.headers())["traceparent"].decode()
    (span,) = [
        s for s in telemetry.span_exporter.get_finished_spans() if s.name == "produce contact event"
    ]
    assert traceparent.split("-")[1] == f"{span.context.trace_id:032x}"
    assert traceparent.split("-")[2] == f"{span.context.span_id:016x}"


def test_invalid_event_raises_and_sends_nothing(container) -> None:  # type: ignore[no-untyped-def]
    producer = container.producer()
    bad = copy.deepcopy(example_events("survey")[-1])
    bad["payload"]["score"] = 11
    with pytest.raises(ContractViolation, match="score"):
        producer.send("survey", bad)
    producer.flush()
    assert _read(container, "survey") == []


def test_produce_cli_sends_valid_lines_and_reports_bad_ones(  # type: ignore[no-untyped-def]
    container, tmp_path: Path
) -> None:
    valid = example_events("phone")[0]
    missing = copy.deepcopy(valid)
    del missing["envelope"]["contact_id"]
    bad_enum = copy.deepcopy(valid)
    bad_enum["kind"] = "carrier_pigeon"
    bad_time = copy.deepcopy(valid)
    bad_time["envelope"]["occurred_at"] = "yesterday at noon"
    lines = [json.dumps(e) for e in (valid, missing, bad_enum, bad_time)] + ["{not json"]
    path = tmp_path / "phone.jsonl"
    path.write_text("\n".join(lines) + "\n")

    env = {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": container.settings.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": container.settings.topic_prefix,
        "CONTACTFLOW_DATA_DIR": str(container.settings.data_dir),
    }
    result = CliRunner().invoke(app, ["produce", "--channel", "phone", str(path)], env=env)

    assert result.exit_code == 1
    output = result.output
    assert "phone.jsonl:2: " in output
    assert "envelope.contact_id" in output
    assert "phone.jsonl:3: " in output
    assert "kind" in output
    assert "phone.jsonl:4: " in output
    assert "envelope.occurred_at" in output
    assert "phone.jsonl:5: not valid JSON" in output
    assert "sent 1 event(s)" in output
    assert "rejected 4 line(s)" in output
    for sample in PII_SAMPLES:
        assert sample not in output
    (message,) = _read(container, "phone")
    assert message.key().decode() == valid["envelope"]["contact_id"]
