"""The health server: liveness from a heartbeat, readiness from checks and probes, the
Prometheus text of the worker's own telemetry, off when no port is set."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streams.errors import ContactflowError
from streams.runtime.health import Health, HealthServer, Heartbeat, Probes, serve_health
from streams.settings import Settings
from streams.telemetry import configure_telemetry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(server.address + path, timeout=5) as answer:  # noqa: S310
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[Health, HealthServer]]:
    telemetry = configure_telemetry("health-test", {}, prometheus=True)
    health = Health(telemetry.prometheus_text)
    counter = telemetry.meter("contactflow.test").create_counter("contactflow.test.events_in")
    counter.add(3, {"topic": "contact.raw.phone.v1"})
    server = HealthServer(health, "127.0.0.1", 0).start()
    yield health, server
    server.close()
    telemetry.shutdown()


def test_heartbeat_turns_unhealthy_when_the_loop_stops_beating() -> None:
    clock = Clock()
    heartbeat = Heartbeat(30, clock)
    clock.now += 29
    assert heartbeat.check() is None
    clock.now += 2
    assert heartbeat.check() == "loop silent for 31 s (limit 30 s)"
    heartbeat.beat()
    assert heartbeat.check() is None


def test_probes_keep_the_last_answer_and_fail_when_a_probe_hangs() -> None:
    clock = Clock()
    answers = iter([None, "unreachable (connection refused)", RuntimeError("boom")])

    def broker() -> str | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    probes = Probes({"broker": broker}, stale_after_s=10, clock=clock)
    check = probes.check("broker")
    assert check() == "not probed yet"
    probes.run_once()
    assert check() is None
    probes.run_once()
    assert check() == "unreachable (connection refused)"
    probes.run_once()
    assert check() == "probe failed (RuntimeError)"
    clock.now += 11  # no answer since: the probe hangs
    assert check() == "no answer from the broker probe for 11 s"


def test_endpoints_answer_200_while_checks_pass_and_503_with_the_reason(
    served: tuple[Health, HealthServer],
) -> None:
    health, server = served
    assert get(server, "/healthz") == (200, "application/json", '{"status": "alive"}\n')
    assert get(server, "/readyz")[0] == 200
    partitions: list[str | None] = ["no partition assigned yet"]
    health.ready("partitions", lambda: partitions[0])
    health.ready("broker", lambda: None)
    code, kind, body = get(server, "/readyz")
    assert (code, kind) == (503, "application/json")
    assert json.loads(body) == {"status": "failing",
                                "failing": {"partitions": "no partition assigned yet"}}  # fmt: skip
    partitions[0] = None
    assert get(server, "/readyz")[0] == 200
    health.live("loop", lambda: "loop silent for 300 s (limit 250 s)")
    assert get(server, "/healthz")[0] == 503
    health.ready("ledger", lambda: 1 / 0)  # type: ignore[return-value]
    assert json.loads(get(server, "/readyz")[2])["failing"] == {
        "ledger": "check failed (ZeroDivisionError)"
    }
    assert get(server, "/nothing")[0] == 404


def test_metrics_are_the_prometheus_text_of_the_telemetry(
    served: tuple[Health, HealthServer],
) -> None:
    _, server = served
    code, kind, text = get(server, "/metrics")
    assert code == 200
    assert kind.startswith("text/plain; version=0.0.4")
    assert "contactflow_test_events_in_total{" in text
    assert 'topic="contact.raw.phone.v1"' in text


def test_endpoints_are_off_without_a_port_and_a_taken_port_is_one_line() -> None:
    assert serve_health(Settings(), Health()) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ContactflowError, match=f"cannot serve health and metrics on "
                           f"127.0.0.1:{port}"):  # fmt: skip
            serve_health(Settings(http_port=port), Health())


def test_settings_declare_the_http_port_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import load_settings

    assert (Settings().http_port, Settings().http_host) == (None, "127.0.0.1")
    monkeypatch.setenv("CONTACTFLOW_HTTP_PORT", "9464")
    monkeypatch.setenv("CONTACTFLOW_HTTP_HOST", "127.0.0.2")
    settings = load_settings()
    assert (settings.http_port, settings.http_host) == (9464, "127.0.0.2")
