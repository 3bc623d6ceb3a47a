"""Where the nodes of the local broker live: one node, or a KRaft cluster of 3 to 5.

A single node (the default) keeps its configuration, pid, data and log directly under
`$CONTACTFLOW_DATA_DIR/kafka`, as it always has. A cluster gives node N its own
`kafka/node-N/` with the same files inside, and remembers its cluster id and ports in
`kafka/cluster.json`, so `up`, `status` and `down` find every node across invocations
whatever the settings say later.

Port rule of a new cluster: node N listens for clients on `CONTACTFLOW_BROKER_PORT +
100*(N-1)` and for its controller quorum on `CONTACTFLOW_CONTROLLER_PORT + 100*(N-1)`
(defaults: 9092/9093, 9192/9193, 9292/9293).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from streams.errors import BrokerError
from streams.settings import Settings

PORT_STEP = 100
LAYOUT_FILE = "cluster.json"


@dataclass(frozen=True)
class BrokerNode:
    """One Kafka process (broker and controller), its ports and its files."""

    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_config(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").exists()


@dataclass(frozen=True)
class ClusterLayout:
    """The nodes of the local broker; `cluster_id` is set once a cluster was formatted."""

    home: Path
    nodes: tuple[BrokerNode, ...]
    cluster_id: str | None = None

    @property
    def is_cluster(self) -> bool:
        return len(self.nodes) > 1

    @property
    def bootstrap(self) -> str:
        """Every node's client listener, the string clients should be given."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def voters(self) -> str:
        """The static `controller.quorum.voters` value: `1@127.0.0.1:9093,2@...`."""
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)

    def node(self, node_id: int) -> BrokerNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        known = ", ".join(str(n.node_id) for n in self.nodes)
        raise BrokerError(f"there is no node {node_id} in the local broker (nodes: {known})")

    def with_cluster_id(self, cluster_id: str) -> ClusterLayout:
        return replace(self, cluster_id=cluster_id)

    def check_ports(self) -> None:
        """Refuse a layout whose ports overlap or leave the valid range."""
        ports = [p for n in self.nodes for p in (n.port, n.controller_port)]
        if max(ports) > 65535:
            raise BrokerError(
                f"node {len(self.nodes)} would listen on port {max(ports)} (> 65535): lower "
                "CONTACTFLOW_BROKER_PORT / CONTACTFLOW_CONTROLLER_PORT"
            )
        if len(set(ports)) != len(ports):
            raise BrokerError(
                f"the {len(self.nodes)} nodes' ports overlap ({', '.join(map(str, ports))}): "
                f"node N uses CONTACTFLOW_BROKER_PORT and CONTACTFLOW_CONTROLLER_PORT + "
                f"{PORT_STEP}*(N-1); choose ports that differ by something else than a "
                f"multiple of {PORT_STEP}"
            )

    def save(self) -> None:
        """Remember the cluster in `kafka/cluster.json` (a single node writes nothing)."""
        if not self.is_cluster or self.cluster_id is None:
            raise BrokerError("only a formatted cluster has a layout file")
        self.home.mkdir(parents=True, exist_ok=True)
        body = {
            "cluster_id": self.cluster_id,
            "nodes": [
                {"id": n.node_id, "port": n.port, "controller_port": n.controller_port}
                for n in self.nodes
            ],
        }
        (self.home / LAYOUT_FILE).write_text(json.dumps(body, indent=2) + "\n")


def single_node(home: Path, settings: Settings) -> ClusterLayout:
    """The default broker: node 1 directly under `home`, on the configured ports."""
    node = BrokerNode(1, settings.broker_port, settings.controller_port, home)
    return ClusterLayout(home, (node,))


def planned_cluster(home: Path, settings: Settings, count: int) -> ClusterLayout:
    """A new cluster of `count` nodes under `home`, on ports chosen by the port rule."""
    nodes = tuple(
        BrokerNode(
            i,
            settings.broker_port + PORT_STEP * (i - 1),
            settings.controller_port + PORT_STEP * (i - 1),
            home / f"node-{i}",
        )
        for i in range(1, count + 1)
    )
    return ClusterLayout(home, nodes)


def stored_cluster(home: Path) -> ClusterLayout | None:
    """The cluster formatted under `home`, or None when there is none."""
    path = home / LAYOUT_FILE
    try:
        body = json.loads(path.read_text())
        nodes = tuple(
            BrokerNode(int(n["id"]), int(n["port"]), int(n["controller_port"]),
                       home / f"node-{int(n['id'])}")
            for n in body["nodes"]
        )  # fmt: skip
        return ClusterLayout(home, nodes, str(body["cluster_id"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise BrokerError(f"{path} is not a cluster layout written by contactflow: {exc}") from exc


def current_layout(home: Path, settings: Settings, nodes: int | None = None) -> ClusterLayout:
    """The layout `up` would use: the stored cluster, the single-node storage, or a new one
    of `nodes` (default CONTACTFLOW_BROKER_NODES). Never raises on a mismatch: see
    `layout_for_up`."""
    stored = stored_cluster(home)
    if stored is not None:
        return stored
    count = settings.broker_nodes if nodes is None else nodes
    if count == 1 or (home / "data" / "meta.properties").exists():
        return single_node(home, settings)
    return planned_cluster(home, settings, count)


def layout_for_up(home: Path, settings: Settings, nodes: int | None) -> ClusterLayout:
    """The layout for this `up`, refusing a node count the existing storage does not have."""
    count = settings.broker_nodes if nodes is None else nodes
    if count == 2 or not 1 <= count <= 5:
        raise BrokerError(
            f"a local broker has 1 node or a cluster of 3 to 5, not {count} (two KRaft "
            "controllers stop as soon as either one stops)"
        )
    layout = current_layout(home, settings, count)
    asked = nodes is not None or settings.broker_nodes != 1
    if asked and len(layout.nodes) != count:
        have = "one node" if len(layout.nodes) == 1 else f"a {len(layout.nodes)}-node cluster"
        raise BrokerError(
            f"the broker storage in {home} holds {have}, not {count} node(s); use "
            "another CONTACTFLOW_DATA_DIR (or remove this one) to change it"
        )
    if layout.cluster_id is None and layout.is_cluster:
        layout.check_ports()
    return layout


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_cluster_ports(nodes: int, attempts: int = 100) -> tuple[int, int]:
    """Node 1's client and controller ports such that every node's ports, by the port rule,
    are free on loopback now: for a throwaway cluster (tests, `bench faults`)."""
    for _ in range(attempts):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            port, controller = int(a.getsockname()[1]), int(b.getsockname()[1])
        ports = [base + PORT_STEP * i for base in (port, controller) for i in range(nodes)]
        usable = max(ports) <= 65535 and len(set(ports)) == len(ports)
        if usable and not any(_taken(p) for p in ports):
            return port, controller
    raise BrokerError(f"found no free loopback ports for a {nodes}-node cluster")
