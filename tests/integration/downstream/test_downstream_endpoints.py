"""`contactflow downstream serve --all` with CONTACTFLOW_HTTP_PORT: /healthz, /readyz and
/metrics of a real serve process, on a broker of the test's own that the test stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from downstream_commands import command, publish, read_acks
from endpoints import free_port, get, personal_data_in, wait_for_metrics, wait_for_status

from streams.bootstrap import Container
from streams.ops.broker import Broker
from streams.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_serve_answers_health_readiness_and_metrics(
    own_broker: Broker, own_broker_container: Container, tmp_path: Path
) -> None:
    container = own_broker_container
    settings = container.settings
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONTACTFLOW_")}
    env |= {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
        "CONTACTFLOW_HTTP_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    out = tmp_path / "serve.out"
    with out.open("wb") as log:
        serve = subprocess.Popen(
            [str(Path(sys.executable).parent / "contactflow"), "downstream", "serve", "--all"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def report() -> str:
        state = "running" if serve.poll() is None else f"exit {serve.returncode}"
        return f"--- serve ({state})\n{out.read_text(errors='replace')[-4000:]}"

    sent = [command("crm", "erase"), command("recording_store", "erase", held=["rec-1"]),
            command("survey_tool", "suppress")]  # fmt: skip
    try:
        wait_for_status(port, "/healthz", 200, 60, report)
        wait_for_status(port, "/readyz", 200, 90, report)
        publish(container, sent)
        wanted = {c["command_id"] for c in sent}
        deadline = time.monotonic() + 60
        while not wanted <= {a["command_id"] for _, a in read_acks(container)}:
            assert time.monotonic() < deadline, f"commands not all answered\n{report()}"
            time.sleep(0.5)
        metrics = wait_for_metrics(
            port, ["contactflow_downstream_answers_total{", 'outcome="done"',
                   'outcome="retained_under_hold"'], 30, report,
        )  # fmt: skip
        said = [metrics, get(port, "/healthz")[1], get(port, "/readyz")[1]]

        own_broker.down()
        unready = wait_for_status(port, "/readyz", 503, 60, report)
        assert "broker" in unready, unready
        assert get(port, "/healthz")[0] == 200, "waiting for the broker is being alive"
        said += [unready, get(port, "/metrics")[1]]
        own_broker.up()
        wait_for_status(port, "/readyz", 200, 90, report)
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        try:
            assert serve.wait(60) == 0, report()
        finally:
            if serve.poll() is None:
                serve.kill()
    text = "\n".join(said)
    pseudonyms = [c["subject_pseudonym"] for c in sent]
    assert not personal_data_in(text, pseudonyms), personal_data_in(text, pseudonyms)
    assert "Traceback" not in out.read_text(), report()
