"""A real Apache Kafka broker (KRaft, combined mode) assembled from Maven Central jars.

The classpath is resolved by Maven from `infra/kafka/pom.xml` into a cache outside the work
tree, and every jar is checked against `infra/kafka/jars.sha256` before it is used: a jar
that is missing, extra or different stops the install. The broker then runs with `java`
as a detached process whose pid, configuration, data and log live under the data
directory, so `up`, `down` and `status` work across CLI invocations. `up(nodes=3)` runs a
three-node KRaft cluster instead (layout and port rule: `streams.ops.cluster`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import BrokerError
from streams.ops.broker_security import (
    BrokerSecurity,
    choose_security,
    load_security,
    prepare_secrets,
)
from streams.ops.cluster import BrokerNode, ClusterLayout, current_layout, layout_for_up
from streams.settings import Settings

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class NodeStatus:
    """One node of a cluster as `broker status` shows it."""

    node_id: int
    pid: int | None
    port: int
    controller_port: int
    answering: bool
    log_file: Path


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    kafka_version: str
    data_dir: Path
    log_file: Path
    topics: int | None = None
    security: str = "plain"
    nodes: tuple[NodeStatus, ...] = ()  # one per node of a cluster; empty for one node


class KafkaDistribution:
    """The pinned broker classpath: which version, where it is cached, is it intact."""

    def __init__(self, settings: Settings) -> None:
        self.infra = settings.infra_dir / "kafka"
        self.version = self._read_version(self.infra / "pom.xml")
        self.libs = settings.cache_dir / "kafka" / self.version / "libs"

    @staticmethod
    def _read_version(pom: Path) -> str:
        match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
        if not match:
            raise BrokerError(f"{pom} declares no <kafka.version>")
        return match.group(1).strip()

    def pinned(self) -> dict[str, str]:
        """Jar file name -> expected SHA-256, from jars.sha256 (sha256sum format)."""
        pins: dict[str, str] = {}
        for line in (self.infra / "jars.sha256").read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                pins[name.lstrip("*")] = digest
        return pins

    def verify(self, libs: Path) -> list[str]:
        """Problems with the jars in `libs` against the pins; empty when intact."""
        pins = self.pinned()
        present = {p.name for p in libs.glob("*.jar")} if libs.is_dir() else set()
        problems = [f"missing {name}" for name in sorted(pins.keys() - present)]
        problems += [f"unpinned {name}" for name in sorted(present - pins.keys())]
        for name in sorted(present & pins.keys()):
            if _sha256(libs / name) != pins[name]:
                problems.append(f"checksum mismatch {name}")
        return problems

    def is_installed(self) -> bool:
        return self.libs.is_dir() and not self.verify(self.libs)

    def install(self, report: Report = _quiet) -> Path:
        """Resolve the jars with Maven into the cache and verify them; idempotent."""
        if self.is_installed():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not installed; it fetches the Kafka jars from Maven Central. "
                "Install it (apt-get install maven) and retry."
            )
        report(f"resolving Apache Kafka {self.version} jars with Maven")
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=self.libs.parent))
        try:
            result = subprocess.run(
                [mvn, "-B", "-q", "-f", str(self.infra / "pom.xml"),
                 "dependency:copy-dependencies", "-DincludeScope=runtime",
                 f"-DoutputDirectory={staging}"],
                capture_output=True, text=True, check=False, timeout=900,
            )  # fmt: skip
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise BrokerError(
                    f"downloading the Kafka {self.version} jars failed (mvn exit "
                    f"{result.returncode}); is Maven Central reachable?\n{tail}"
                )
            problems = self.verify(staging)
            if problems:
                raise BrokerError(
                    "the downloaded Kafka jars do not match infra/kafka/jars.sha256: "
                    + ", ".join(problems)
                )
            if self.libs.exists():
                shutil.rmtree(self.libs)
            staging.rename(self.libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        report(f"verified {len(self.pinned())} jars in {self.libs}")
        return self.libs


class Broker:
    """The local KRaft broker: one broker+controller process, or a cluster of 3 to 5.

    One node is the default. `up(nodes=3)` (or CONTACTFLOW_BROKER_NODES=3) formats a new
    storage as a cluster instead; the layout is then remembered in the data directory
    (see `streams.ops.cluster`), and the `*_node` methods let a fault test stop and restart
    single nodes.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.distribution = KafkaDistribution(settings)
        self.home = settings.broker_dir
        self._nodes_asked: int | None = None
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def layout(self) -> ClusterLayout:
        """The nodes of this broker: the stored cluster, or what the next `up` creates."""
        return current_layout(self.home, self.settings, self._nodes_asked)

    @property
    def bootstrap(self) -> str:
        """Every node's client listener, comma-separated (one address for one node)."""
        return self.layout.bootstrap

    @property
    def data(self) -> Path:
        return self.layout.nodes[0].data

    @property
    def pid_file(self) -> Path:
        return self.layout.nodes[0].pid_file

    @property
    def log_file(self) -> Path:
        return self.layout.nodes[0].log_file

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def security(self) -> BrokerSecurity:
        """How the client listener is protected (plain until a storage says otherwise)."""
        return load_security(self.home) or BrokerSecurity("plain", self.home)

    def admin_client_config(self) -> dict[str, Any]:
        """Client settings of the broker's super user (SCRAM `admin` when secured)."""
        return self.security.admin_client_config(self.bootstrap)

    def up(
        self,
        report: Report = _quiet,
        *,
        secure: bool | None = None,
        tls: bool | None = None,
        nodes: int | None = None,
    ) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers clients.

        `secure`/`tls` choose the mode of a new storage (default: the settings), `nodes`
        its node count (default CONTACTFLOW_BROKER_NODES); an existing storage keeps the
        mode and the nodes it was formatted with, and `up` restarts whichever of its
        nodes are not running. A cluster is plain: `secure`/`tls` are refused for it.
        """
        layout = layout_for_up(self.home, self.settings, nodes)
        self._nodes_asked = len(layout.nodes)
        if layout.is_cluster:
            return self._up_cluster(layout, report, secure, tls)
        security = choose_security(self.home, self.settings, secure, tls)
        if self.pid() is not None and self._answers(timeout=5.0):
            report(f"broker already running (pid {self.pid()})")
            return self.status()
        java = self._java()
        for port in (self.settings.broker_port, self.settings.controller_port):
            if _port_taken(port):
                raise BrokerError(
                    f"port {port} is already in use by another process; stop it or set "
                    "CONTACTFLOW_BROKER_PORT / CONTACTFLOW_CONTROLLER_PORT"
                )
        libs = self.distribution.install(report)
        prepare_secrets(security, self.settings)
        self._write_config(security)
        if not (self.data / "meta.properties").exists():
            report(f"formatting KRaft storage ({security.mode})")
            self._format(java, libs, security)
            security.save()
        report(f"starting Apache Kafka {self.distribution.version} on {self.bootstrap}")
        node = layout.nodes[0]
        self._wait_until_answering([node], {1: self._spawn(node, java, libs)}, report)
        return self.status()

    def down(self, report: Report = _quiet, timeout: float = 30.0) -> bool:
        """Stop every node (SIGTERM, then SIGKILL after `timeout`); False if none ran."""
        layout = self.layout
        running = {n.node_id: pid for n in layout.nodes if (pid := self._node_pid(n))}
        if not running:
            return False
        for node_id, pid in running.items():
            what = f"node {node_id}" if layout.is_cluster else "broker"
            report(f"stopping {what} (pid {pid})")
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a node paused by a fault test (SIGSTOP) too
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in running.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for node_id, pid in running.items():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self._forget(layout.node(node_id))
        return True

    def status(self) -> BrokerStatus:
        layout = self.layout
        pid = self.pid()
        topics = self._topic_count() if pid is not None else None
        return BrokerStatus(
            running=pid is not None and topics is not None,
            pid=pid,
            bootstrap=layout.bootstrap,
            kafka_version=self.distribution.version,
            data_dir=self.home,
            log_file=self.log_file,
            topics=topics,
            security=self.security.mode,
            nodes=tuple(self._node_status(n) for n in layout.nodes) if layout.is_cluster else (),
        )

    def pid(self) -> int | None:
        """The pid of our running broker (a cluster's first running node), or None.

        A stale pid file is removed."""
        return next((pid for pid in self.node_pids().values() if pid is not None), None)

    # -- single nodes (for fault tests) --------------------------------------------------

    def node_ids(self) -> list[int]:
        """The node ids of this broker: [1], or [1, 2, 3] for a three-node cluster."""
        return [node.node_id for node in self.layout.nodes]

    def node_pids(self) -> dict[int, int | None]:
        """Node id -> pid of its running process, or None when it is not running."""
        return {node.node_id: self._node_pid(node) for node in self.layout.nodes}

    def node_bootstrap(self, node_id: int) -> str:
        """The client address of one node only (`127.0.0.1:<port>`)."""
        return self.layout.node(node_id).bootstrap

    def node_answers(self, node_id: int, timeout: float = 2.0) -> bool:
        """Whether that node itself answers a metadata request within `timeout`."""
        node = self.layout.node(node_id)
        return self._node_pid(node) is not None and self._node_answers(node, timeout)

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL, *, wait_s: float = 15.0) -> int:
        """Send `sig` to one node's process and return its pid.

        After SIGKILL, SIGTERM or SIGINT, wait up to `wait_s` until the process is gone
        (BrokerError if it is not) and forget its pid file. Other signals (SIGSTOP,
        SIGCONT) return at once. BrokerError if the node is not running.
        """
        node = self.layout.node(node_id)
        pid = self._node_pid(node)
        if pid is None:
            raise BrokerError(f"node {node_id} is not running")
        os.kill(pid, sig)
        if sig not in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            return pid
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            name = signal.Signals(sig).name
            raise BrokerError(f"node {node_id} (pid {pid}) still runs {wait_s:.0f}s after {name}")
        self._forget(node)
        return pid

    def start_node(self, node_id: int, report: Report = _quiet) -> int:
        """Start one stopped node of a formatted cluster, wait until it answers, return its
        pid (a running node is only waited for). It answers only once a majority of the
        controllers runs (2 of 3, itself included). On a single node this is `up()`."""
        layout = self.layout
        if not layout.is_cluster:
            self.up(report)
            pid = self.pid()
            assert pid is not None  # up() returns only once the broker answers
            return pid
        node = layout.node(node_id)
        if not node.formatted:
            raise BrokerError(f"node {node_id} has no storage yet; run `broker up` first")
        pid = self._node_pid(node)
        if pid is None:
            self._check_free([node])
            java, libs = self._java(), self.distribution.install(report)
            self._write_node_config(layout, node)
            report(f"starting node {node_id} on {node.bootstrap}")
            process = self._spawn(node, java, libs)
            pid = process.pid
            self._wait_until_answering([node], {node_id: process}, report)
        else:
            self._wait_until_answering([node], {}, report)
        return pid

    # -- internals -----------------------------------------------------------------------

    def _up_cluster(
        self, layout: ClusterLayout, report: Report, secure: bool | None, tls: bool | None
    ) -> BrokerStatus:
        if choose_security(self.home, self.settings, secure, tls).secure:
            raise BrokerError(
                "--secure/--tls run on the single-node broker only; a cluster (--nodes N) "
                "is plain: start it without them and without CONTACTFLOW_BROKER_SECURE/TLS"
            )
        missing = [n for n in layout.nodes if self._node_pid(n) is None]
        if not missing and self._answers(timeout=5.0):
            report(f"cluster already running ({len(layout.nodes)} nodes)")
            return self.status()
        java = self._java()
        self._check_free(missing)
        libs = self.distribution.install(report)
        if layout.cluster_id is None:
            layout = layout.with_cluster_id(_kraft_cluster_id())
            layout.save()
        for node in layout.nodes:
            self._write_node_config(layout, node)
        for node in missing:
            if not node.formatted:
                report(f"formatting KRaft storage of node {node.node_id}")
                self._format_node(java, libs, node, layout.cluster_id or "")
        report(
            f"starting Apache Kafka {self.distribution.version} nodes "
            f"{', '.join(str(n.node_id) for n in missing)} of {len(layout.nodes)}"
        )
        started = {n.node_id: self._spawn(n, java, libs) for n in missing}
        self._wait_until_answering(list(layout.nodes), started, report)
        return self.status()

    def _check_free(self, nodes: list[BrokerNode]) -> None:
        for node in nodes:
            for port in (node.port, node.controller_port):
                if _port_taken(port):
                    raise BrokerError(
                        f"port {port} (node {node.node_id}) is already in use by another "
                        "process; stop it or set CONTACTFLOW_BROKER_PORT / "
                        "CONTACTFLOW_CONTROLLER_PORT"
                    )

    def _node_pid(self, node: BrokerNode) -> int | None:
        try:
            pid = int(node.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self._forget(node)
        return None

    def _forget(self, node: BrokerNode) -> None:
        """Drop a stopped node's pid file, and reap it if this process started it."""
        node.pid_file.unlink(missing_ok=True)
        process = self._processes.pop(node.node_id, None)
        if process is not None:
            process.poll()

    def _node_status(self, node: BrokerNode) -> NodeStatus:
        pid = self._node_pid(node)
        return NodeStatus(
            node_id=node.node_id,
            pid=pid,
            port=node.port,
            controller_port=node.controller_port,
            answering=pid is not None and self._node_answers(node, timeout=3.0),
            log_file=node.log_file,
        )

    @staticmethod
    def _java() -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Java is not installed: Apache Kafka needs Java 17 or newer "
                "(apt-get install openjdk-17-jre-headless)."
            )
        probe = subprocess.run(
            [java, "-version"], capture_output=True, text=True, check=False, timeout=60
        )
        match = re.search(r'version "(\d+)', probe.stderr + probe.stdout)
        if match is None or int(match.group(1)) < 17:
            raise BrokerError(f"Apache Kafka 4 needs Java 17 or newer; {java} is older")
        return java

    def _write_config(self, security: BrokerSecurity) -> None:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        template = (s.infra_dir / "kafka" / "server.properties.template").read_text()
        config = self.home / "server.properties"
        config.touch(mode=0o600)  # a secured broker's file holds the admin password
        config.chmod(0o600)
        config.write_text(
            template.format(
                broker_port=s.broker_port,
                controller_port=s.controller_port,
                data_dir=self.data,
                client_listener=security.listener,
                client_protocol=security.protocol,
            )
            + security.server_properties()
        )
        self._write_log_config(self.layout.nodes[0])

    def _write_node_config(self, layout: ClusterLayout, node: BrokerNode) -> None:
        kafka = self.settings.infra_dir / "kafka"
        node.home.mkdir(parents=True, exist_ok=True)
        template = (kafka / "cluster-node.properties.template").read_text()
        node.config_file.write_text(
            template.format(
                node_id=node.node_id,
                voters=layout.voters,
                broker_port=node.port,
                controller_port=node.controller_port,
                data_dir=node.data,
            )
        )
        self._write_log_config(node)

    def _write_log_config(self, node: BrokerNode) -> None:
        template = (self.settings.infra_dir / "kafka" / "log4j2.properties.template").read_text()
        node.log_config.write_text(template.format(log_file=node.log_file))

    def _format(self, java: str, libs: Path, security: BrokerSecurity) -> None:
        cluster_id = _kraft_cluster_id()
        result = subprocess.run(
            [java, "-cp", f"{libs}/*",
             f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
             "kafka.tools.StorageTool", "format", "--standalone",
             f"--cluster-id={cluster_id}", "-c", str(self.home / "server.properties"),
             *security.scram_format_argument()],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            detail = result.stderr.strip()[-800:]
            if security.secure:  # never echo the admin password the tool was given
                detail = detail.replace(security.admin_password().get_secret_value(), "***")
            raise BrokerError(f"formatting Kafka storage failed: {detail}")

    @staticmethod
    def _format_node(java: str, libs: Path, node: BrokerNode, cluster_id: str) -> None:
        """Format one cluster node: same cluster id everywhere, static voters from its
        configuration, so no --standalone (the storage tool refuses both together)."""
        result = subprocess.run(
            [java, "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={node.log_config}",
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
             "-c", str(node.config_file)],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka storage of node {node.node_id} failed: "
                f"{result.stderr.strip()[-800:]}"
            )

    def _spawn(self, node: BrokerNode, java: str, libs: Path) -> subprocess.Popen[bytes]:
        """Start one node's JVM, detached, and write its pid file."""
        heap = self.settings.broker_heap
        node.log_file.parent.mkdir(parents=True, exist_ok=True)
        with (node.home / "logs" / "stdout.log").open("ab") as out:
            process = subprocess.Popen(
                [java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={node.log_config}",
                 "-cp", f"{libs}/*", "kafka.Kafka", str(node.config_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        node.pid_file.write_text(str(process.pid))
        self._processes[node.node_id] = process
        return process

    def _wait_until_answering(
        self,
        nodes: list[BrokerNode],
        started: dict[int, subprocess.Popen[bytes]],
        report: Report,
    ) -> None:
        """Wait until every node in `nodes` answers; a node started here that exits, or
        the deadline, stops the nodes started here and raises BrokerError."""
        cluster = self.layout.is_cluster
        waiting = list(nodes)
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        while waiting and time.monotonic() < deadline:
            for node in list(waiting):
                process = started.get(node.node_id)
                if process is not None and process.poll() is not None:
                    node.pid_file.unlink(missing_ok=True)
                    self._stop_started(started)
                    what = f"node {node.node_id}" if cluster else "the broker"
                    raise BrokerError(
                        f"{what} exited with code {process.returncode} while starting; "
                        f"last lines of {node.log_file}:\n{_tail(node.log_file)}"
                    )
                answers = self._node_answers(node, timeout=2.0) if cluster else self._answers(2.0)
                if answers:
                    waiting.remove(node)
                    if cluster:
                        report(f"node {node.node_id} is up")
            if waiting:
                time.sleep(0.5)
        if not waiting:
            report("cluster is up" if cluster else "broker is up")
            return
        if cluster:
            self._stop_started(started)
            node = waiting[0]
            raise BrokerError(
                f"node {node.node_id} did not answer within "
                f"{self.settings.broker_start_timeout_s:.0f}s; see {node.log_file}:\n"
                f"{_tail(node.log_file)}"
            )
        self.down()
        raise BrokerError(
            f"the broker did not answer within {self.settings.broker_start_timeout_s:.0f}s; "
            f"see {self.log_file}:\n{_tail(self.log_file)}"
        )

    def _stop_started(self, started: dict[int, subprocess.Popen[bytes]]) -> None:
        for node_id, process in started.items():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
            self._forget(self.layout.node(node_id))

    def _answers(self, timeout: float) -> bool:
        return self._topic_count(timeout) is not None

    def _node_answers(self, node: BrokerNode, timeout: float) -> bool:
        return self._topic_count(timeout, bootstrap=node.bootstrap) is not None

    def _topic_count(self, timeout: float = 5.0, bootstrap: str | None = None) -> int | None:
        from confluent_kafka.admin import AdminClient

        try:
            config = self.security.admin_client_config(bootstrap or self.bootstrap)
            admin = AdminClient({**config, "log_level": 0})
            return len(admin.list_topics(timeout=timeout).topics)
        except Exception:  # noqa: BLE001 - any client failure here means "not answering"
            return None


def _kraft_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with `-` (the storage tool would read it as an option: one format in 64 failed so).
    Kafka's own `Uuid.randomUuid` draws again for the same reason."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie left by a parent that has not reaped it is not a running broker
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"
