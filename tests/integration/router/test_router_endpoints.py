"""`contactflow run router` with CONTACTFLOW_HTTP_PORT: /healthz, /readyz and /metrics of a
real router subprocess, on a broker of the test's own that the test stops (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer
from endpoints import free_port, get, personal_data_in, wait_for_metrics, wait_for_status
from people import one_person_on_five_channels

from streams.bootstrap import Container
from streams.ops.broker import Broker
from streams.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

ROUTER_METRICS = (
    "contactflow_router_events_in_total{",
    "contactflow_router_events_out_total{",
    "contactflow_router_dead_letters_total{",
    "contactflow_router_batch_latency_seconds_bucket{",
    "contactflow_router_transaction_latency_seconds_bucket{",
    "contactflow_router_aborts_total{",
    "contactflow_router_lag{",
    'contactflow_router_cache_entries{cache="digests"',
    "contactflow_router_cache_bytes{",
    "contactflow_router_cache_evictions_total{",
    "contactflow_router_ledger_round_trips_total{",
)


def _value(metrics: str, prefix: str) -> float:
    """The value of the first sample whose line starts with `prefix`."""
    line = next(line for line in metrics.splitlines() if line.startswith(prefix))
    return float(line.rsplit(" ", 1)[1])


def test_router_answers_health_readiness_and_metrics(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    settings = container.settings
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")}
    env |= {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
        "CONTACTFLOW_HTTP_PORT": str(port),
        "CONTACTFLOW_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    out = tmp_path / "router.out"
    with out.open("wb") as log:
        router = subprocess.Popen(
            [str(Path(sys.executable).parent / "contactflow"), "run", "router"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def report() -> str:
        state = "running" if router.poll() is None else f"exit {router.returncode}"
        return f"--- router ({state})\n{out.read_text(errors='replace')[-4000:]}"

    try:
        wait_for_status(port, "/healthz", 200, 60, report)
        wait_for_status(port, "/readyz", 200, 90, report)
        producer = container.producer()
        for channel, event in one_person_on_five_channels():
            producer.send(channel, event)
        producer.flush()
        raw = Producer(settings.kafka_client_config())
        raw.produce(container.topics.name("contact.raw.phone.v1"), b"not avro at all", b"c-1")
        raw.flush(10)
        metrics = wait_for_metrics(port, ROUTER_METRICS, 60, report)
        assert 'reason="malformed' in metrics or "dead_letters_total{reason=" in metrics
        assert f'topic="{container.topics.name("contact.ores.v1")}"' in metrics
        assert 'partition="0"' in metrics
        # the person's identifiers, key and footprints are cached; the ledger was asked
        assert _value(metrics, 'contactflow_router_cache_entries{cache="digests"') >= 1
        assert _value(metrics, 'contactflow_router_cache_entries{cache="keys"') >= 1
        assert _value(metrics, "contactflow_router_cache_bytes{") > 0
        assert _value(metrics, "contactflow_router_ledger_round_trips_total{") >= 1
        said = [metrics, get(port, "/healthz")[1], get(port, "/readyz")[1]]

        own_broker.down()
        unready = wait_for_status(port, "/readyz", 503, 60, report)
        assert "broker" in unready, unready
        assert get(port, "/healthz")[0] == 200, "waiting for the broker is being alive"
        said += [unready, get(port, "/metrics")[1]]
        own_broker.up()
        wait_for_status(port, "/readyz", 200, 90, report)
    finally:
        if router.poll() is None:
            router.send_signal(signal.SIGTERM)
        try:
            assert router.wait(60) == 0, report()
        finally:
            if router.poll() is None:
                router.kill()
    text = "\n".join(said)
    assert not personal_data_in(text), personal_data_in(text)
    assert "Traceback" not in out.read_text(), report()
    assert f"health, readiness and metrics on http://127.0.0.1:{port}" in out.read_text()
