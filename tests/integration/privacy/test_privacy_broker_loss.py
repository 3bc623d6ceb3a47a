"""The privacy app (`contactflow run privacy`, faust) under a broker that goes away.

On a broker of the test's own: a request is taken in, the broker is stopped or SIGKILLed
for 20 s, and a request sent after its return must be taken in within 60 s. The app must
stay up (or restart itself in place), say what happens in a few lines, never a traceback.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from appproc import app_env, running_privacy_app
from endpoints import free_port, get, wait_for_status
from flow import publish, restriction_request, route_person, taken_in

from streams.bootstrap import Container
from streams.control.privacy.config import load_privacy_config
from streams.control.privacy.service import PrivacyService
from streams.ops.broker import Broker

pytestmark = pytest.mark.integration
OUTAGE_S = 20.0
RESUME_WITHIN_S = 60.0


def _wait(condition, timeout: float, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}\n"
                                 f"{log.read_text()[-4000:]}")  # fmt: skip
        time.sleep(0.5)


@pytest.mark.parametrize("fault", ["stop", "sigkill"])
def test_privacy_app_rides_out_a_broker_outage(
    fault: str, own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    route_person(container, datetime.now(UTC))
    privacy = PrivacyService.from_container(container, load_privacy_config(container), actor="test")
    log = tmp_path / "privacy-app.log"
    try:
        with running_privacy_app(app_env(container, CONTACTFLOW_LOG_LEVEL="INFO"), log) as app:
            publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-before",
                    restriction_request("dsr-before"))  # fmt: skip
            _wait(lambda: taken_in(privacy, "dsr-before"), 90, "the first request", log)
            if fault == "stop":
                own_broker.down()
            else:
                own_broker.kill_node(1, signal.SIGKILL)
            time.sleep(OUTAGE_S)  # the outage itself: wall time the app must ride out
            assert app.poll() is None, f"the app died while the broker was away\n{log.read_text()}"
            own_broker.up()
            back = time.monotonic()
            publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-after",
                    restriction_request("dsr-after"))  # fmt: skip
            _wait(lambda: taken_in(privacy, "dsr-after"), RESUME_WITHIN_S - 2,
                  "the request sent after the broker's return", log)  # fmt: skip
            print(f"taken in {time.monotonic() - back:.1f}s after the broker's return")
            assert app.poll() is None, log.read_text()
            _wait(lambda: "back after" in log.read_text(), 15, "the app to say so", log)
    finally:
        privacy.close()
    said = log.read_text()
    loud = [line for line in said.splitlines() if "[WARNING]" in line or "[ERROR]" in line]
    print("\n".join(loud))
    assert "Traceback" not in said
    assert any("unreachable" in line and "waiting for it" in line for line in loud), said
    assert any("back after" in line for line in loud), said
    assert len(loud) <= 15, "a few lines for the outage, not one per client retry"


def test_privacy_app_started_before_the_broker_waits_for_it(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    """One line saying it waits, alive but not ready meanwhile; then it takes requests in
    by itself and turns ready."""
    container = own_broker_container
    privacy = PrivacyService.from_container(container, load_privacy_config(container), actor="test")
    port = free_port()
    log = tmp_path / "privacy-app.log"
    env = app_env(container, CONTACTFLOW_LOG_LEVEL="INFO", CONTACTFLOW_HTTP_PORT=str(port))
    try:
        own_broker.down()
        with running_privacy_app(env, log) as app:
            _wait(lambda: "waiting for" in log.read_text(), 30, "the app to say it waits", log)
            assert app.poll() is None, log.read_text()
            assert get(port, "/healthz")[0] == 200, "alive while it waits"
            assert get(port, "/readyz")[0] == 503
            own_broker.up()
            publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-early",
                    restriction_request("dsr-early"))  # fmt: skip
            _wait(lambda: taken_in(privacy, "dsr-early"), RESUME_WITHIN_S,
                  "the request sent once the broker is up", log)  # fmt: skip
            wait_for_status(port, "/readyz", 200, 60, log.read_text)
    finally:
        privacy.close()
    said = log.read_text()
    assert "Traceback" not in said
    waits = [line for line in said.splitlines() if "waiting for" in line]
    assert len(waits) == 1, said
