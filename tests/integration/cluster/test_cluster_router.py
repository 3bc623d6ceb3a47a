"""The router on the three-node cluster (production profile: replication 3, min ISR 2)
while broker nodes are SIGKILLed and restarted, the leader of the partitions in use first.

A steady flow goes on throughout (acks=all); every acknowledged event must be routed
exactly once, and the router must never stop.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cluster import _free_ports, _java_processes_in

from streams.bootstrap import Container, bootstrap
from streams.dev.bench.flow import fresh_events
from streams.dev.bench.routers import RouterFleet, wait_for
from streams.dev.bench.verdict import (
    GroupProbe,
    exactly_once_problems,
    expected_routes,
    read_outputs,
)
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.ops.broker import Broker
from streams.settings import KAFKA_CLIENT_LOGGER, Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, plan

pytestmark = pytest.mark.integration
FLOW_PER_SECOND = 40.0
DOWN_S = 12.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Broker]:
    port, controller = _free_ports()
    broker = Broker(
        Settings(data_dir=tmp_path / "cluster", broker_port=port, controller_port=controller,
                 broker_heap="384m", broker_nodes=3)
    )  # fmt: skip
    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # the test's own clients retry against a dead node
    try:
        broker.up()
        yield broker
    finally:
        logger.setLevel(level)
        broker.down()
        for pid in _java_processes_in(broker.settings.data_dir):
            os.kill(pid, signal.SIGKILL)


def _leader(container: Container, logical: str) -> int:
    topic = container.topics.name(logical)
    metadata = container.admin().list_topics(topic, timeout=10)
    return int(metadata.topics[topic].partitions[0].leader)


def test_router_loses_and_duplicates_nothing_while_nodes_die(
    cluster: Broker, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_servers=cluster.bootstrap,
                        topic_prefix="c.", topic_profile="production")  # fmt: skip
    container = bootstrap(settings, telemetry=Telemetry.in_memory())
    admin = container.admin()
    apply_plan(admin, plan(admin, container.topics).changes)
    upgrade(settings.resolved_database_url())
    load_keys(settings)
    fleet = RouterFleet(container, tmp_path / "routers")
    probe = GroupProbe(container)
    timeline: list[str] = []
    started = time.monotonic()

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    def report() -> str:
        return "\n".join([*timeline, fleet.report()])

    try:
        router = fleet.router("cluster-1").start()
        router.wait_ready()
        flow = fleet.start_flow(fresh_events(100_000), FLOW_PER_SECOND)
        for victim in (_leader(container, "contact.raw.phone.v1"), None):
            if victim is None:  # then another node: the leader of a tagged topic's partition
                victim = _leader(container, "contact.ores.v1")
            before = sum(probe.committed().values())
            wait_for(lambda b=before: sum(probe.committed().values()) > b, 90,
                     "the router to commit", report)  # fmt: skip
            cluster.kill_node(victim, signal.SIGKILL)
            note(f"node {victim} SIGKILLed ({flow.sent} sent)")
            time.sleep(DOWN_S)  # wall time with two nodes of three
            assert router.alive, report()
            cluster.start_node(victim)
            note(f"node {victim} back")
        events = flow.finish()
        note(f"flow finished: {len(events)} events acknowledged")
        wait_for(lambda: probe.backlog() == 0, 120, "the router to catch up", report)
        note("caught up")
        assert router.stop(timeout=60) == 0, report()
    finally:
        probe.close()
        fleet.close()

    routed = read_outputs(container)
    problems = exactly_once_problems(expected_routes(container, events), routed)
    assert not problems, "\n".join([*problems, report()])
    assert len(routed.topics_of_event) == len(events)
    assert "Traceback" not in router.stdout() + router.stderr()
    print(report())
