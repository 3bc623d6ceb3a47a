"""The reporting app under a broker that goes away for 20 s: it stays up, says so in a few
lines (never a traceback), and counts what is routed after the broker's return."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reporting_flow import (
    at,
    example,
    phone,
    reporting_app,
    send_and_route,
    wait_until,
)

from streams.bootstrap import Container
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.ops.broker import Broker
from streams.reporting.figures import published

pytestmark = pytest.mark.integration
OUTAGE_S = 20.0


def _calls(first: int, when: datetime) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [("phone", at(example("phone", "inbound_call"), when, phone=phone(n)))
            for n in range(first, first + 6)]  # fmt: skip


def _offered(container: Container) -> int:
    return sum(f["measures"].get("offered", 0) for k, f in published(container).items()
               if k.startswith("day|"))  # fmt: skip


def test_reporting_app_rides_out_a_broker_outage(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    when = datetime.now(UTC) - timedelta(minutes=20)
    send_and_route(container, _calls(0, when))
    log = tmp_path / "reporting.log"
    with reporting_app(container, log, CONTACTFLOW_LOG_LEVEL="INFO",
                       CONTACTFLOW_KPI_PUBLISH_INTERVAL_S="0.5") as app:  # fmt: skip
        wait_until(lambda: _offered(container) == 6, "the first figures", log)
        own_broker.down()
        time.sleep(OUTAGE_S)  # the outage itself: wall time the app must ride out
        assert app.poll() is None, f"the app died while the broker was away\n{log.read_text()}"
        own_broker.up()
        send_and_route(container, _calls(100, when))
        wait_until(lambda: _offered(container) == 12, "the calls routed after the return", log,
                   timeout=90)  # fmt: skip
        assert app.poll() is None, log.read_text()
        wait_until(lambda: "back after" in log.read_text(), "the app to say so", log, timeout=15)
    said = log.read_text()
    assert "Traceback" not in said
    assert any("unreachable" in line for line in said.splitlines()), said
