"""`/healthz`, `/readyz` and `/metrics` of a long-running worker, on CONTACTFLOW_HTTP_PORT.

A worker names its checks: liveness ones (its loop's `Heartbeat`) and readiness ones
(partitions assigned, and the broker and ledger, probed by `Probes` in a thread of their
own so that a request never waits on Kafka or the database). A check returns None when
all is well, else a short reason: codes and counts, never personal data. The server is a
stdlib `ThreadingHTTPServer` in a daemon thread; nothing here runs per event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from streams.errors import ContactflowError
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.bootstrap import Container

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""None when fine, else why not, in a few words."""
Clock = Callable[[], float]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Heartbeat:
    """Beaten by a worker's loop; unhealthy once silent for more than `stale_after_s`.

    A beat is one clock read and one store: cheap enough for every turn of a hot loop."""

    def __init__(self, stale_after_s: float, clock: Clock = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def sleep(self, seconds: float) -> None:
        """`time.sleep` that beats first: for a wait that is the loop's work."""
        self.beat()
        time.sleep(seconds)

    def check(self) -> str | None:
        silent = self._clock() - self._last
        if silent > self.stale_after_s:
            return f"loop silent for {silent:.0f} s (limit {self.stale_after_s:.0f} s)"
        return None


class Probes:
    """Slow checks (a broker metadata request, a ledger `SELECT 1`) run one after the other
    every `interval_s` in a daemon thread; `check(name)` reads the last answer. A probe
    that has not answered for `stale_after_s` (it hangs) fails too."""

    def __init__(
        self,
        probes: Mapping[str, Check],
        *,
        interval_s: float = 2.0,
        stale_after_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._probes = dict(probes)
        self._interval_s = interval_s
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._started = clock()
        self._answers: dict[str, tuple[str | None, float]] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probes", daemon=True)

    def start(self) -> Probes:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()

    def run_once(self) -> None:
        for name, probe in self._probes.items():
            try:
                answer = probe()
            except Exception as exc:  # noqa: BLE001 - a failing probe is an answer
                answer = f"probe failed ({type(exc).__name__})"
            self._answers[name] = (answer, self._clock())

    def check(self, name: str) -> Check:
        def read() -> str | None:
            answer, at = self._answers.get(name, ("not probed yet", self._started))
            silent = self._clock() - at
            if silent > self._stale_after_s:
                return f"no answer from the {name} probe for {silent:.0f} s"
            return answer

        return read

    def _run(self) -> None:
        while not self._closed.is_set():
            self.run_once()
            self._closed.wait(self._interval_s)


def broker_probe(settings: Settings, timeout_s: float = 2.0) -> Check:
    """The broker answers a metadata request (quietly: no librdkafka lines)."""
    from streams.kafka.reachability import broker_answers

    def probe() -> str | None:
        problem = broker_answers(settings, timeout_s)
        return None if problem is None else f"unreachable ({problem})"

    return probe


def ledger_probe(engine: Any) -> Check:
    """The ledger's database answers `SELECT 1`."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    def probe() -> str | None:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"unreachable ({type(exc).__name__})"
        return None

    return probe


class Health:
    """What the endpoints answer: named liveness and readiness checks, and the metrics.
    Checks may be added while the server runs (a worker registers its partitions check
    once its consumer exists); until then `starting` says why it is not ready."""

    def __init__(self, metrics: Callable[[], bytes] | None = None) -> None:
        self._live: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}
        self._metrics = metrics

    def live(self, name: str, check: Check) -> None:
        self._live = {**self._live, name: check}

    def ready(self, name: str, check: Check) -> None:
        self._ready = {**self._ready, name: check}

    def unready(self, name: str) -> None:
        self._ready = {k: v for k, v in self._ready.items() if k != name}

    def liveness(self) -> dict[str, str]:
        return _failing(self._live)

    def readiness(self) -> dict[str, str]:
        return _failing(self._ready)

    def metrics(self) -> bytes | None:
        return None if self._metrics is None else self._metrics()


def _failing(checks: Mapping[str, Check]) -> dict[str, str]:
    failing = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failing check
            problem = f"check failed ({type(exc).__name__})"
        if problem is not None:
            failing[name] = problem
    return failing


class HealthServer:
    """The three endpoints over HTTP/1.1, one short-lived thread per request."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        handler = _handler(health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ContactflowError(
                f"cannot serve health and metrics on {host}:{port} ({exc.strerror}); "
                "set CONTACTFLOW_HTTP_PORT to a free port, or unset it"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
            name="health-http", daemon=True,
        )  # fmt: skip

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health, readiness and metrics on %s", self.address)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_health(settings: Settings, health: Health) -> HealthServer | None:
    """Start the endpoints on CONTACTFLOW_HTTP_HOST:CONTACTFLOW_HTTP_PORT; None when the
    port is not set (the endpoints are off)."""
    if settings.http_port is None:
        return None
    return HealthServer(health, settings.http_host, settings.http_port).start()


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "contactflow"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._status(health.liveness(), "alive")
            elif path == "/readyz":
                self._status(health.readiness(), "ready")
            elif path == "/metrics" and (text := health.metrics()) is not None:
                self._send(200, METRICS_CONTENT_TYPE, text)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _status(self, failing: dict[str, str], good: str) -> None:
            body = {"status": good} if not failing else {"status": "failing", "failing": failing}
            data = (json.dumps(body, sort_keys=True) + "\n").encode()
            self._send(503 if failing else 200, "application/json", data)

        def _send(self, code: int, content_type: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class WorkerEndpoints:
    """The endpoints of one worker process, all off when CONTACTFLOW_HTTP_PORT is unset.

    Until `started` the worker is alive (its `heartbeat` beats while it waits for the
    broker) but not ready; then it is ready while its partitions check passes and the
    broker (and the ledger, when `ledger`) answer the probes."""

    def __init__(self, container: Container, heartbeat: Heartbeat, *, ledger: bool) -> None:
        settings = container.settings
        self._server: HealthServer | None = None
        self._probes: Probes | None = None
        if settings.http_port is None:
            return
        self.health = Health(container.telemetry.prometheus_text)
        self.health.live("loop", heartbeat.check)
        self.health.ready("started", lambda: "starting")
        probes = {"broker": broker_probe(settings)}
        if ledger:
            probes["ledger"] = ledger_probe(container.ledger_engine)
        self._probes = Probes(probes)
        for name in probes:
            self.health.ready(name, self._probes.check(name))
        self._server = serve_health(settings, self.health)
        self._probes.start()

    @property
    def address(self) -> str | None:
        return None if self._server is None else self._server.address

    def live(self, name: str, check: Check) -> None:
        """Another liveness check (beside the loop's heartbeat), from now on."""
        if self._server is not None:
            self.health.live(name, check)

    def started(self, partitions: Check, live: Check | None = None) -> None:
        """The worker runs: ready once `partitions` passes; `live` replaces the start-up
        heartbeat (a worker with several loops checks them all)."""
        if self._server is None:
            return
        if live is not None:
            self.health.live("loop", live)
        self.health.ready("partitions", partitions)
        self.health.unready("started")

    def close(self) -> None:
        if self._probes is not None:
            self._probes.close()
        if self._server is not None:
            self._server.close()
