"""`contactflow status` and `contactflow lag` on the real broker and ledger, as an operator
or a cron job runs them: each thing that needs a person is named in `problems` and makes
the exit code 1; a healthy deployment exits 0; no personal data is ever shown.

Time is moved with `--now` (deadlines, answer deadlines), never slept through.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from appproc import app_env
from confluent_kafka import Consumer, Producer, TopicPartition
from people import EMAIL, HANDLE, PHONE, example, fresh, one_person_on_five_channels
from typer.testing import CliRunner

from streams.bootstrap import Container
from streams.cli import app
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration

JSON_KEYS = {"as_of", "ok", "problems", "warnings", "max_lag", "broker", "groups",
             "deadletters", "quarantine", "requests", "retention"}  # fmt: skip
PERSONAL = (PHONE, "0471 55 66 77", "0471 12", EMAIL, EMAIL.lower(), HANDLE)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "contactflow"
    return subprocess.run(
        [str(script) if script.exists() else "contactflow", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CONTACTFLOW_")},
             "COLUMNS": "80", **env},
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _no_personal_data(result: subprocess.CompletedProcess[str]) -> None:
    said = result.stdout + result.stderr
    for value in PERSONAL:
        assert value not in said, value


def _status(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """`status --format json` in this process (the console script is run for the text)."""
    result = CliRunner().invoke(app, ["status", "--format", "json", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    for value in PERSONAL:
        assert value not in result.output, value
    document = json.loads(result.stdout)
    assert set(document) == JSON_KEYS
    assert document["ok"] is (result.exit_code == 0)
    return result.exit_code, document


def _codes(document: dict[str, Any]) -> list[str]:
    return sorted(problem["code"] for problem in document["problems"])


def _group(document: dict[str, Any], role: str) -> dict[str, Any]:
    return next(g for g in document["groups"] if g["role"] == role)


def _topic_lag(group: dict[str, Any], topic: str) -> int:
    return next((t["lag"] for t in group["topics"] if t["topic"] == topic), 0)


@pytest.fixture
def deployment(container: Container) -> Container:
    """The test's topics (all declared), a migrated ledger and keys: nothing running."""
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    return container


def test_a_healthy_deployment_exits_0(deployment: Container) -> None:
    env = app_env(deployment)
    code, document = _status(env)
    assert (code, document["problems"]) == (0, [])
    broker = document["broker"]
    assert broker["reachable"] is True
    assert broker["drift"] == []
    assert [node["id"] for node in broker["nodes"]]
    roles = {g["role"] for g in document["groups"]}
    assert {"router", "privacy-app", "downstream:crm", "downstream:recording_store"} <= roles
    assert all(g["lag"] == 0 for g in document["groups"])
    assert document["deadletters"]["total"] == 0
    assert document["quarantine"] == {"events": 0}
    assert document["requests"] == {"open": 0, "by_state": {}, "overdue": [],
                                    "late_consumers": []}  # fmt: skip
    assert document["retention"] == {"active_holds": 0, "holds_by_reason": {},
                                     "due_this_week": 0}  # fmt: skip

    table = _run(env, "status")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "OK" in table.stdout.splitlines()[0]
    assert "contactflow-downstream-reporting_warehouse" in table.stdout  # whole, at 80 columns
    lag = _run(env, "lag", "--format", "json")
    assert lag.returncode == 0, lag.stderr
    assert json.loads(lag.stdout)["ok"] is True


def test_status_names_lag_dead_letters_overdue_requests_and_late_consumers(
    deployment: Container,
) -> None:
    env = app_env(deployment)
    topics = deployment.topics
    phone_topic = topics.name("contact.raw.phone.v1")
    unknown_service = fresh(example("phone", "inbound_call"))
    unknown_service["envelope"]["service"] = "horoscope"  # no policy rule: quarantined
    bad_phone = fresh(example("phone", "inbound_call"), phone="0471 12")  # dead-lettered
    producer = deployment.producer()
    for channel, event in [*one_person_on_five_channels(), ("phone", unknown_service),
                           ("phone", bad_phone)]:  # fmt: skip
        producer.send(channel, event)
    producer.flush()

    # 1. lag: events are waiting and no router runs
    code, document = _status(env, "--max-lag", "2")
    assert code == 1
    assert _codes(document) == ["lag_over_threshold"]
    assert phone_topic in document["problems"][0]["message"]
    router = _group(document, "router")
    scoped = deployment.settings.scoped
    assert (router["group"], router["members"]) == (scoped("contactflow-router"), 0)
    assert router["state"] in {"dead", "empty"}
    assert _topic_lag(router, phone_topic) == 3
    assert router["lag"] == 7
    lag = _run(env, "lag", "--group", "router", "--format", "json", "--max-lag", "2")
    assert lag.returncode == 1, lag.stderr
    (only,) = json.loads(lag.stdout)["groups"]
    assert (only["group"], only["lag"]) == (scoped("contactflow-router"), 7)
    assert _run(env, "lag", "--group", "router").returncode == 0  # under the default 10,000
    code, _ = _status(env)
    assert code == 0  # the same lag is no problem under the default threshold

    # 2. the router catches up: a dead letter and a quarantined event, no lag
    RouterWorker(deployment).run(max_idle_s=1.5)
    code, document = _status(env)
    assert (code, document["problems"]) == (0, [])
    router = _group(document, "router")
    assert (router["state"], router["lag"]) == ("empty", 0)
    assert document["deadletters"]["total"] == 1
    (letter,) = document["deadletters"]["by_reason"]
    assert letter["source_topic"] == phone_topic
    assert letter["count"] == 1
    assert document["quarantine"] == {"events": 1}

    # 3. an erasure ORES instructed: commands out to every consumer, none answers
    submitted = _run(env, "dsr", "submit", "erasure", "--phone", PHONE,
                     "--verified-by", "id_card_copy")  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    request_id = submitted.stdout.split()[0]
    instructed = _run(env, "dsr", "instruct", request_id, "--decision", "execute")
    assert instructed.returncode == 0, instructed.stdout + instructed.stderr
    processed = _run(env, "dsr", "process")
    assert processed.returncode == 0, processed.stdout + processed.stderr
    code, document = _status(env)
    assert code == 0, document["problems"]
    assert document["requests"]["open"] == 1
    assert document["requests"]["by_state"] == {"awaiting_acks": 1}

    # 4. six days on, no consumer answered: late consumers, the request not overdue yet
    code, document = _status(env, "--now", (datetime.now(UTC) + timedelta(days=6)).isoformat())
    assert code == 1
    assert set(_codes(document)) == {"consumer_late"}
    (late,) = document["requests"]["late_consumers"]
    assert late["request_id"] == request_id
    assert {"crm", "recording_store"} <= set(late["consumers"])
    assert document["requests"]["overdue"] == []

    # 5. forty days on: the request is overdue too
    code, document = _status(env, "--now", (datetime.now(UTC) + timedelta(days=40)).isoformat())
    assert code == 1
    assert set(_codes(document)) == {"consumer_late", "request_overdue"}
    assert document["requests"]["overdue"] == [request_id]

    # the erasure's commands wait for the consumers' groups: lag on the command topics
    crm = _group(document, "downstream:crm")
    assert _topic_lag(crm, topics.name("privacy.erasure.v1")) >= 1

    text = _run(env, "status", "--now", (datetime.now(UTC) + timedelta(days=40)).isoformat())
    assert text.returncode == 1
    _no_personal_data(text)
    assert f"request_overdue: request {request_id}" in text.stdout
    assert "consumer_late" in text.stdout
    assert "Traceback" not in text.stdout + text.stderr


def test_lag_of_a_registered_consumer_that_committed_behind(deployment: Container) -> None:
    env = app_env(deployment)
    topic = deployment.topics.name("privacy.erasure.v1")
    producer = Producer(deployment.settings.kafka_client_config())
    for index in range(5):
        producer.produce(topic, f"command-{index}".encode(), b"k", partition=0)
    assert producer.flush(10) == 0
    consumer = Consumer({**deployment.settings.kafka_client_config(),
                         "group.id": deployment.settings.scoped("contactflow-downstream-crm"),
                         "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()

    lag = _run(env, "lag", "--group", deployment.settings.scoped("contactflow-downstream-crm"),
               "--format", "json", "--max-lag", "3")  # fmt: skip
    assert lag.returncode == 1, lag.stderr
    (crm,) = json.loads(lag.stdout)["groups"]
    assert (crm["role"], crm["state"], crm["lag"]) == ("downstream:crm", "empty", 4)
    erasure = next(t for t in crm["topics"] if t["topic"] == topic)
    assert {"partition": 0, "committed": 1, "end": 5, "lag": 4} in erasure["partitions"]
    table = _run(env, "lag", "--group", "downstream:crm")
    assert table.returncode == 0  # under the default threshold
    assert "contactflow-downstream-crm" in table.stdout
    assert topic in table.stdout


def test_lag_counts_records_not_the_transaction_markers_after_them(
    deployment: Container,
) -> None:
    """A faust app commits the offset after its last record; on a topic written in
    transactions that offset is the commit marker's, so the offset difference said 1 when
    the app had read everything. Three records in three transactions take offsets 0, 2
    and 4 (markers at 1, 3 and 5; the end is 6)."""
    env = app_env(deployment)
    topic = deployment.topics.name("privacy.erasure.v1")
    producer = Producer({**deployment.settings.kafka_client_config(),
                         "transactional.id": f"{topic}-test"})  # fmt: skip
    producer.init_transactions(30)
    for index in range(3):
        producer.begin_transaction()
        producer.produce(topic, f"command-{index}".encode(), b"k", partition=0)
        producer.commit_transaction(30)
    group = deployment.settings.scoped("contactflow-downstream-crm")

    def lag_when_committed_at(offset: int) -> dict[str, Any]:
        consumer = Consumer({**deployment.settings.kafka_client_config(), "group.id": group,
                             "enable.auto.commit": False})  # fmt: skip
        try:
            consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        finally:
            consumer.close()
        result = _run(env, "lag", "--group", "downstream:crm", "--format", "json")
        assert result.returncode == 0, result.stderr
        (crm,) = json.loads(result.stdout)["groups"]
        erasure = next(t for t in crm["topics"] if t["topic"] == topic)
        return next(p for p in erasure["partitions"] if p["partition"] == 0)  # type: ignore[no-any-return]

    assert lag_when_committed_at(5) == {"partition": 0, "committed": 5, "end": 6, "lag": 0}
    assert lag_when_committed_at(3) == {"partition": 0, "committed": 3, "end": 6, "lag": 1}
    assert lag_when_committed_at(1) == {"partition": 0, "committed": 1, "end": 6, "lag": 2}


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens


def test_an_unreachable_broker_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    address = _dead_address()
    env = {"CONTACTFLOW_BOOTSTRAP_SERVERS": address, "CONTACTFLOW_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    code, document = _status(env)
    assert time.monotonic() - started < 15
    assert code == 1
    assert "broker_unreachable" in _codes(document)
    assert "ledger_unavailable" in _codes(document)  # never migrated: said, not a traceback
    assert document["broker"]["reachable"] is False
    assert document["groups"] is None
    text = _run(env, "status")
    assert text.returncode == 1
    assert address in text.stdout
    assert "contactflow broker up" in text.stdout
    lag = _run(env, "lag")  # nothing to show without the broker: one line, exit 2
    assert lag.returncode == 2
    assert len((lag.stdout + lag.stderr).strip().splitlines()) == 1
    assert address in lag.stderr


def test_watch_redraws_until_ctrl_c_and_exits_cleanly(deployment: Container) -> None:
    script = Path(sys.executable).parent / "contactflow"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONTACTFLOW_")},
           **app_env(deployment)}  # fmt: skip
    process = subprocess.Popen(
        [str(script) if script.exists() else "contactflow", "status", "--watch",
         "--interval", "0.5", "--format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]  # two snapshots, one a line
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert [json.loads(line)["ok"] for line in lines] == [True, True]
    assert process.returncode == 0  # the last snapshot's verdict
    assert "Traceback" not in errors
