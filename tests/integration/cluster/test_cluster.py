"""`broker up --nodes 3`: a three-node KRaft cluster on one machine, the production topic
profile on it, and what an acks=all producer sees when one node, then two, are lost.

The tests run in file order on one cluster (module fixture): each leaves the cluster in
the state the next one starts from.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from typer.testing import CliRunner

from streams.bootstrap import bootstrap
from streams.cli import app
from streams.ops.broker import Broker
from streams.ops.cluster import PORT_STEP, free_cluster_ports
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, plan

pytestmark = pytest.mark.integration

NODES = 3
TOPIC = "contact.raw.phone.v1"  # 6 partitions; replication 3 in the production profile


def _free_ports() -> tuple[int, int]:
    return free_cluster_ports(NODES)


@dataclass
class Delivery:
    delivered: int = 0
    errors: list[KafkaError] = field(default_factory=list)
    seconds: float = 0.0


def _produce(bootstrap_servers: str, topic: str, count: int, timeout_s: float) -> Delivery:
    """Send `count` records with acks=all and wait for every delivery report."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": int(timeout_s * 1000),
            "log_level": 0,
        }
    )
    result = Delivery()

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is None:
            result.delivered += 1
        else:
            result.errors.append(error)

    started = time.monotonic()
    for i in range(count):
        producer.produce(topic, key=f"k{i}".encode(), value=b"x" * 100, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(timeout_s + 15)
    result.seconds = time.monotonic() - started
    assert remaining == 0, f"{remaining} records got no delivery report at all"
    return result


def _isrs(admin: AdminClient, topic: str) -> dict[int, list[int]]:
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return {p: sorted(meta.isrs) for p, meta in partitions.items()}


def _java_processes_in(data_dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions `data_dir` (our nodes only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "kafka.Kafka" in cmdline and str(data_dir) in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    port, controller = _free_ports()
    broker = Broker(
        Settings(
            data_dir=tmp_path_factory.mktemp("cluster"), broker_port=port,
            controller_port=controller, broker_heap="384m", broker_nodes=NODES,
        )
    )  # fmt: skip
    try:
        broker.up()
        yield broker
    finally:
        broker.down()
        for pid in _java_processes_in(broker.settings.data_dir):  # a failed test's leftovers
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def topic(cluster: Broker) -> str:
    """infra/topics.yaml applied with the production profile; the name of one topic."""
    settings = Settings(
        data_dir=cluster.settings.data_dir / "client",
        bootstrap_servers=cluster.bootstrap,
        topic_profile="production",
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
    )
    root = bootstrap(settings, telemetry=Telemetry.in_memory())
    admin = root.admin()
    applied = apply_plan(admin, plan(admin, root.topics).changes)
    assert len(applied) == len(root.topics.specs)
    assert plan(admin, root.topics).empty  # a second apply has nothing to do
    return root.topics.name(TOPIC)


def _admin(cluster: Broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 0})


def test_three_nodes_answer(cluster: Broker) -> None:
    state = cluster.status()
    assert state.running
    assert [n.node_id for n in state.nodes] == [1, 2, 3]
    assert all(n.answering for n in state.nodes), state.nodes
    assert len({n.pid for n in state.nodes}) == NODES
    port, controller = cluster.settings.broker_port, cluster.settings.controller_port
    assert [(n.port, n.controller_port) for n in state.nodes] == [
        (port + PORT_STEP * i, controller + PORT_STEP * i) for i in range(NODES)
    ]
    assert state.bootstrap == ",".join(f"127.0.0.1:{n.port}" for n in state.nodes)
    assert sorted(_admin(cluster).list_topics(timeout=10).brokers) == [1, 2, 3]
    for node_id in (1, 2, 3):
        assert (cluster.home / f"node-{node_id}" / "data" / "meta.properties").exists()

    env = {
        "CONTACTFLOW_DATA_DIR": str(cluster.settings.data_dir),
        "CONTACTFLOW_BROKER_PORT": str(port),
        "CONTACTFLOW_CONTROLLER_PORT": str(controller),
    }
    shown = CliRunner().invoke(app, ["broker", "status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("answering") == NODES, shown.output
    refused = CliRunner().invoke(app, ["broker", "up", "--secure"], env=env)
    assert refused.exit_code != 0
    assert "single-node broker only" in f"{refused.exception} {refused.output}"


def test_production_profile_replicates_on_three_nodes(cluster: Broker, topic: str) -> None:
    admin = _admin(cluster)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    assert len(partitions) == 6
    assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions.values())
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["min.insync.replicas"].value == "2"
    node = ConfigResource(ResourceType.BROKER, "1")
    broker_configs = admin.describe_configs([node])[node].result()
    assert broker_configs["offsets.topic.replication.factor"].value == "3"
    assert broker_configs["transaction.state.log.min.isr"].value == "2"
    assert broker_configs["min.insync.replicas"].value == "2"


def test_one_node_lost_is_survived_two_are_not(cluster: Broker, topic: str) -> None:
    first = _produce(cluster.bootstrap, topic, 300, timeout_s=30)
    assert (first.delivered, first.errors) == (300, [])

    victim = 3
    pid = cluster.kill_node(victim, signal.SIGKILL)
    assert cluster.node_pids()[victim] is None
    assert not _alive_pid(pid)
    degraded = cluster.status()
    assert degraded.running
    assert [n.answering for n in degraded.nodes] == [True, True, False]

    # The partitions it led move once the controller fences it (broker session, ~9 s).
    second = _produce(cluster.bootstrap, topic, 300, timeout_s=60)
    assert (second.delivered, second.errors) == (300, []), second.errors[:3]
    admin = _admin(cluster)
    assert all(victim not in isr for isr in _isrs(admin, topic).values())

    restarted = cluster.start_node(victim)
    assert cluster.node_pids()[victim] == restarted != pid
    assert cluster.node_answers(victim)
    deadline = time.monotonic() + 90
    while any(isr != [1, 2, 3] for isr in _isrs(admin, topic).values()):
        assert time.monotonic() < deadline, f"node {victim} never rejoined: {_isrs(admin, topic)}"
        time.sleep(1)

    # Two nodes lost: no write is acknowledged (and the controller quorum is gone too, so
    # the ISR cannot shrink: the leader waits for a dead follower, the client times out).
    cluster.kill_node(2)
    cluster.kill_node(3)
    assert cluster.node_pids() == {1: cluster.node_pids()[1], 2: None, 3: None}
    third = _produce(cluster.bootstrap, topic, 50, timeout_s=15)
    assert third.delivered == 0
    assert third.seconds < 40
    refusals = {
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.REQUEST_TIMED_OUT,
    }
    assert {e.code() for e in third.errors} <= refusals, third.errors[:3]
    assert len(third.errors) == 50


def test_up_restarts_the_missing_nodes_and_down_stops_all(cluster: Broker, topic: str) -> None:
    before = cluster.node_pids()
    assert before[1] is not None
    assert (before[2], before[3]) == (None, None)
    state = cluster.up()
    assert all(n.answering for n in state.nodes), state.nodes
    assert cluster.node_pids()[1] == before[1]  # the running node was left alone
    again = _produce(cluster.bootstrap, topic, 100, timeout_s=60)
    assert (again.delivered, again.errors) == (100, []), again.errors[:3]

    started = time.monotonic()
    assert cluster.down()
    assert time.monotonic() - started < 45
    assert cluster.node_pids() == {1: None, 2: None, 3: None}
    assert _java_processes_in(cluster.settings.data_dir) == []
    assert not cluster.status().running
    assert cluster.down() is False


def _alive_pid(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
