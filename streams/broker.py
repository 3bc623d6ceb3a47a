"""A real Apache Kafka broker (KRaft, combined mode) assembled from Maven Central jars.

The classpath is resolved by Maven from `infra/kafka/pom.xml` into a cache outside the work
tree, and every jar is checked against `infra/kafka/jars.sha256` before it is used: a jar
that is missing, extra or different stops the install. The broker then runs with `java`
as a detached process whose pid, configuration, data and log live under the data
directory, so `up`, `down` and `status` work across CLI invocations.
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

from streams.broker_security import (
    BrokerSecurity,
    choose_security,
    load_security,
    prepare_secrets,
)
from streams.errors import BrokerError
from streams.settings import Settings

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


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
    """One local KRaft broker+controller described by the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.distribution = KafkaDistribution(settings)
        self.home = settings.broker_dir
        self.data = self.home / "data"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "logs" / "server.log"
        self.bootstrap = f"127.0.0.1:{settings.broker_port}"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def security(self) -> BrokerSecurity:
        """How the client listener is protected (plain until a storage says otherwise)."""
        return load_security(self.home) or BrokerSecurity("plain", self.home)

    def admin_client_config(self) -> dict[str, Any]:
        """Client settings of the broker's super user (SCRAM `admin` when secured)."""
        return self.security.admin_client_config(self.bootstrap)

    def up(
        self, report: Report = _quiet, *, secure: bool | None = None, tls: bool | None = None
    ) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers clients.

        `secure`/`tls` choose the mode of a new storage (default: the settings); an
        existing storage keeps the mode it was formatted with.
        """
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
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with (self.home / "logs" / "stdout.log").open("ab") as out:
            process = subprocess.Popen(
                [java, f"-Xmx{self.settings.broker_heap}", f"-Xms{self.settings.broker_heap}",
                 "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                 "-cp", f"{libs}/*", "kafka.Kafka", str(self.home / "server.properties")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(process.pid))
        self._wait_until_answering(process, report)
        return self.status()

    def down(self, report: Report = _quiet, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout`); False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        report(f"stopping broker (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self.pid()
        topics = self._topic_count() if pid is not None else None
        return BrokerStatus(
            running=pid is not None and topics is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            kafka_version=self.distribution.version,
            data_dir=self.home,
            log_file=self.log_file,
            topics=topics,
            security=self.security.mode,
        )

    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    # -- internals -----------------------------------------------------------------------

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
        log_template = (s.infra_dir / "kafka" / "log4j2.properties.template").read_text()
        (self.home / "log4j2.properties").write_text(log_template.format(log_file=self.log_file))

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

    def _wait_until_answering(self, process: subprocess.Popen[bytes], report: Report) -> None:
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {process.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{_tail(self.log_file)}"
                )
            if self._answers(timeout=2.0):
                report("broker is up")
                return
            time.sleep(0.5)
        self.down()
        raise BrokerError(
            f"the broker did not answer within {self.settings.broker_start_timeout_s:.0f}s; "
            f"see {self.log_file}:\n{_tail(self.log_file)}"
        )

    def _answers(self, timeout: float) -> bool:
        return self._topic_count(timeout) is not None

    def _topic_count(self, timeout: float = 5.0) -> int | None:
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({**self.admin_client_config(), "log_level": 0})
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
