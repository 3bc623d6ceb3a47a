"""`contactflow run privacy` with CONTACTFLOW_HTTP_PORT: /healthz, /readyz and /metrics of
the real faust app, on a broker of the test's own that the test stops (issue 12)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from appproc import app_env, running_privacy_app, wait_for
from endpoints import free_port, get, personal_data_in, wait_for_metrics, wait_for_status
from flow import publish, restriction_request, route_person, taken_in
from people import PHONE

from streams.bootstrap import Container
from streams.control.privacy.service import PrivacyService
from streams.ops.broker import Broker

pytestmark = pytest.mark.integration

PRIVACY_METRICS = (
    'contactflow_privacy_requests{otel_scope_name="contactflow.privacy"',
    'status="open"',
    'status="overdue"',
    "contactflow_control_events_in_total{",
    "contactflow_privacy_transitions_total{",
)


def test_privacy_app_answers_health_readiness_and_metrics(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    route_person(container, datetime.now(UTC))
    port = free_port()
    log = tmp_path / "privacy-app.log"
    env = app_env(container, CONTACTFLOW_HTTP_PORT=str(port), CONTACTFLOW_LOG_LEVEL="INFO")

    def report() -> str:
        return log.read_text(errors="replace")[-4000:]

    with running_privacy_app(env, log):
        wait_for_status(port, "/healthz", 200, 60, report)
        wait_for_status(port, "/readyz", 200, 90, report)
        request = {
            "request_id": "dsr-endpoints", "request_type": "restriction",
            "identifiers": [{"kind": "phone", "value": PHONE}], "purpose": None,
            "received_at": datetime.now(UTC), "verified_by": "id_card_copy",
            "submitted_by": "intake-portal", "reason": None,
        }  # fmt: skip
        publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-endpoints", request)
        metrics = wait_for_metrics(port, PRIVACY_METRICS, 60, report)
        requests_topic = container.topics.name("privacy.requests.v1")
        assert f'topic="{requests_topic}"' in metrics
        said = [metrics, get(port, "/healthz")[1], get(port, "/readyz")[1]]

        own_broker.down()
        unready = wait_for_status(port, "/readyz", 503, 60, report)
        assert "broker" in unready, unready
        assert get(port, "/healthz")[0] == 200, "the event loop still turns"
        said += [unready, get(port, "/metrics")[1]]
        own_broker.up()  # and the app stops cleanly (faust's stop waits for the broker)
        wait_for_status(port, "/readyz", 200, 90, report)
    text = "\n".join(said)
    assert not personal_data_in(text), personal_data_in(text)
    assert "Traceback" not in log.read_text()


def test_healthz_fails_while_a_ledger_call_hangs_and_recovers_when_it_returns(
    container: Container, privacy: PrivacyService, tmp_path: Path
) -> None:
    """The event loop turns while a ledger call waits (it runs in the ledger thread), so
    the heartbeat alone said healthy while no record moved. Here another process holds the
    ledger's write lock (an admin's open transaction, a stuck migration): the app's call
    waits on it past CONTACTFLOW_LEDGER_CALL_STALE_S, /healthz says so, and once the lock
    is let go the request is taken in and /healthz is 200 again."""
    route_person(container, datetime.now(UTC))
    port = free_port()
    log = tmp_path / "privacy-app.log"
    env = app_env(container, CONTACTFLOW_HTTP_PORT=str(port), CONTACTFLOW_LOG_LEVEL="INFO",
                  CONTACTFLOW_LEDGER_CALL_STALE_S="2")  # fmt: skip
    ledger_file = container.settings.resolved_database_url().removeprefix("sqlite:///")

    def report() -> str:
        return log.read_text(errors="replace")[-4000:]

    lock = sqlite3.connect(ledger_file, isolation_level=None, timeout=30)
    try:
        with running_privacy_app(env, log):
            wait_for_status(port, "/readyz", 200, 90, report)
            lock.execute("BEGIN IMMEDIATE")  # the ledger's one writer, until released
            publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-locked",
                    restriction_request("dsr-locked"))  # fmt: skip
            hung = wait_for_status(port, "/healthz", 503, 25, report)
            assert "ledger call attempt (privacy.requests.v1) running for" in hung, hung
            lock.execute("ROLLBACK")
            wait_for_status(port, "/healthz", 200, 30, report)
            wait_for(lambda: taken_in(privacy, "dsr-locked"), "the request", log)
    finally:
        lock.close()
    assert not personal_data_in(hung)
