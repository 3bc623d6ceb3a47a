"""A broker that goes away under a running router, and comes back.

The router (`contactflow run router`, a real subprocess) routes a steady flow on a broker
of the test's own; the broker is stopped (SIGTERM) or SIGKILLed and started again. The
router must resume by itself within 60 s of the broker's return, lose nothing, duplicate
nothing, say what happened in a few lines (never a traceback, never librdkafka's own
retry lines), and still stop cleanly on SIGTERM.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from endpoints import free_port, get, wait_for_status

from streams.bootstrap import Container
from streams.dev.bench.flow import fresh_events
from streams.dev.bench.routers import RouterFleet, wait_for
from streams.dev.bench.verdict import (
    GroupProbe,
    exactly_once_problems,
    expected_routes,
    read_outputs,
)
from streams.ops.broker import Broker

pytestmark = pytest.mark.integration

FLOW_PER_SECOND = 40.0
OUTAGE_S = 20.0
RESUME_WITHIN_S = 60.0


@pytest.mark.parametrize("fault", ["stop", "sigkill"])
def test_router_rides_out_a_broker_outage(
    fault: str, own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    fleet = RouterFleet(container, tmp_path / "routers")
    probe = GroupProbe(container)
    timeline: list[str] = []
    started = time.monotonic()

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    def report() -> str:
        return "\n".join([*timeline, fleet.report()])

    try:
        router = fleet.router("outage-1").start()
        router.wait_ready()
        flow = fleet.start_flow(fresh_events(100_000), FLOW_PER_SECOND)
        wait_for(lambda: sum(probe.committed().values()) > 0, 60, "a first commit", report)
        note(f"routing: {sum(probe.committed().values())} committed")
        probe.close()

        if fault == "stop":
            own_broker.down()
        else:
            own_broker.kill_node(1, signal.SIGKILL)
        note(f"broker {fault}: {flow.sent} sent")
        time.sleep(OUTAGE_S)  # the outage itself: wall time the router must ride out
        assert router.alive, f"the router died while the broker was away\n{report()}"
        own_broker.up()
        back = time.monotonic()
        note("broker back")

        events = flow.finish()
        note(f"flow finished: {len(events)} events acknowledged")
        probe = GroupProbe(container)
        remaining = RESUME_WITHIN_S - (time.monotonic() - back)
        wait_for(lambda: probe.backlog() == 0, remaining,
                 "the router to route everything within 60 s of the broker's return",
                 report)  # fmt: skip
        note(f"router caught up {time.monotonic() - back:.1f}s after the broker's return")
        assert router.stop(timeout=60) == 0, report()
    finally:
        probe.close()
        fleet.close()

    routed = read_outputs(container)
    problems = exactly_once_problems(expected_routes(container, events), routed)
    assert not problems, "\n".join([*problems, report()])
    assert len(routed.topics_of_event) == len(events)
    said = router.stdout() + router.stderr()
    assert "Traceback" not in said, report()
    assert "rdkafka" not in said, "librdkafka's own lines show only at DEBUG"
    print(report())


def test_router_started_before_the_broker_waits_for_it(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    """One line saying it waits (and where, and what to do), alive but not ready on its
    endpoints meanwhile, then it starts by itself and turns ready."""
    fleet = RouterFleet(own_broker_container, tmp_path / "routers")
    port = free_port()
    try:
        own_broker.down()
        router = fleet.router("early-1")
        router.env["CONTACTFLOW_HTTP_PORT"] = str(port)
        router.start()
        wait_for(lambda: "waiting for the broker" in router.stderr(), 30,
                 "the router to say it waits for the broker", fleet.report)  # fmt: skip
        time.sleep(3)  # wall time of the wait itself: no retry flood meanwhile
        said = router.stderr().strip().splitlines()
        waiting = [line for line in said if "health, readiness and metrics" not in line]
        assert len(waiting) == 1, fleet.report()
        assert own_broker.bootstrap in waiting[0]
        assert "contactflow broker up" in waiting[0]
        assert router.alive
        assert "router ready" not in router.stdout()
        assert get(port, "/healthz")[0] == 200, "alive while it waits"
        status, body = get(port, "/readyz")
        assert status == 503, body
        own_broker.up()
        router.wait_ready(timeout=60)
        wait_for_status(port, "/readyz", 200, 60, fleet.report)
        assert router.stop(timeout=60) == 0, fleet.report()
    finally:
        fleet.close()
    assert "Traceback" not in router.stdout() + router.stderr()
