"""The layout of a local cluster (`broker up --nodes 3`): port rule, stored layout, refusals.

No JVM is started here; tests/integration/cluster runs the real cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.ops.broker import Broker
from streams.ops.cluster import current_layout, layout_for_up, planned_cluster, stored_cluster
from streams.settings import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_nodes_get_ports_one_hundred_apart(tmp_path: Path) -> None:
    settings = _settings(tmp_path, broker_port=9092, controller_port=9093)
    layout = planned_cluster(settings.broker_dir, settings, 3)
    assert [(n.node_id, n.port, n.controller_port) for n in layout.nodes] == [
        (1, 9092, 9093), (2, 9192, 9193), (3, 9292, 9293),
    ]  # fmt: skip
    assert layout.bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    assert layout.voters == "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    assert layout.nodes[1].pid_file == tmp_path / "kafka" / "node-2" / "broker.pid"


def test_the_default_is_one_node_where_it_always_was(tmp_path: Path) -> None:
    broker = Broker(_settings(tmp_path))
    assert broker.node_ids() == [1]
    assert broker.bootstrap == "127.0.0.1:9092"
    assert broker.pid_file == tmp_path / "kafka" / "broker.pid"
    assert broker.data == tmp_path / "kafka" / "data"
    assert broker.status().nodes == ()


def test_a_stored_cluster_wins_over_the_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, broker_port=20000, controller_port=20001)
    planned_cluster(settings.broker_dir, settings, 3).with_cluster_id("abc").save()
    moved = _settings(tmp_path, broker_port=30000, controller_port=30001)
    stored = stored_cluster(moved.broker_dir)
    assert stored is not None
    assert stored.cluster_id == "abc"
    assert current_layout(moved.broker_dir, moved) == stored
    assert layout_for_up(moved.broker_dir, moved, None) == stored  # `up` restarts it
    assert Broker(moved).bootstrap.split(",")[2] == "127.0.0.1:20200"
    with pytest.raises(BrokerError, match="holds a 3-node cluster, not 1 node"):
        layout_for_up(moved.broker_dir, moved, 1)


def test_a_single_node_storage_is_not_turned_into_a_cluster(tmp_path: Path) -> None:
    settings = _settings(tmp_path, broker_nodes=3)
    (settings.broker_dir / "data").mkdir(parents=True)
    (settings.broker_dir / "data" / "meta.properties").write_text("node.id=1\n")
    assert len(current_layout(settings.broker_dir, settings).nodes) == 1
    with pytest.raises(BrokerError, match="holds one node, not 3 node"):
        layout_for_up(settings.broker_dir, settings, None)


@pytest.mark.parametrize("nodes", [0, 2, 6])
def test_node_counts_other_than_one_or_three_to_five_are_refused(
    tmp_path: Path, nodes: int
) -> None:
    with pytest.raises(BrokerError, match=f"not {nodes} "):
        layout_for_up(tmp_path / "kafka", _settings(tmp_path), nodes)


def test_overlapping_ports_are_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, broker_port=9092, controller_port=9192)
    with pytest.raises(BrokerError, match="ports overlap"):
        layout_for_up(settings.broker_dir, settings, 3)
    high = _settings(tmp_path, broker_port=65400, controller_port=9093)
    with pytest.raises(BrokerError, match="65600"):
        layout_for_up(high.broker_dir, high, 3)


def test_a_secured_cluster_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    broker = Broker(_settings(tmp_path))
    with pytest.raises(BrokerError, match="single-node broker only"):
        broker.up(secure=True, nodes=3)
    assert not (tmp_path / "kafka" / "cluster.json").exists()


def test_a_damaged_layout_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text('{"nodes": [{"id": 1}]}')
    with pytest.raises(BrokerError, match=r"cluster\.json is not a cluster layout"):
        Broker(_settings(tmp_path)).status()


def test_a_stopped_cluster_reports_each_node(tmp_path: Path) -> None:
    broker = Broker(_settings(tmp_path, broker_nodes=3))
    state = broker.status()
    assert not state.running
    assert [(n.node_id, n.pid, n.answering) for n in state.nodes] == [
        (1, None, False), (2, None, False), (3, None, False),
    ]  # fmt: skip
    assert broker.node_pids() == {1: None, 2: None, 3: None}
    assert broker.down() is False
    with pytest.raises(BrokerError, match="node 2 is not running"):
        broker.kill_node(2)
    with pytest.raises(BrokerError, match="no node 4"):
        broker.node_bootstrap(4)
    with pytest.raises(BrokerError, match="no storage yet"):
        broker.start_node(2)


def test_clients_of_a_local_cluster_are_given_every_node(tmp_path: Path) -> None:
    """Without CONTACTFLOW_BOOTSTRAP_SERVERS a client of a local cluster knows all three
    nodes: one started while node 1 is down still finds the cluster."""
    settings = _settings(tmp_path, broker_port=9092, controller_port=9093)
    assert settings.bootstrap == "127.0.0.1:9092"
    planned_cluster(settings.broker_dir, settings, 3).with_cluster_id("abc").save()
    assert settings.bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    chosen = _settings(tmp_path, bootstrap_servers="kafka.example:9092")
    assert chosen.bootstrap == "kafka.example:9092"
