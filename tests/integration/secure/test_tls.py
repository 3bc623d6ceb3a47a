"""`broker up --secure --tls`: SCRAM over TLS with the locally generated CA, for a bare
client, the router and the faust privacy app."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from appproc import running_privacy_app
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from secureclients import free_port, recording_call, wait_registered

from streams.bootstrap import bootstrap
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.ops.acl.apply import authenticates
from streams.ops.broker import Broker
from streams.router.worker import RouterWorker
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(
        Settings(
            data_dir=tmp_path_factory.mktemp("tls-broker"), broker_port=free_port(),
            controller_port=free_port(), broker_heap="384m",
        )
    )  # fmt: skip
    broker.up(secure=True, tls=True)
    try:
        yield broker
    finally:
        broker.down()


def test_a_scram_client_connects_over_tls_and_nothing_else_does(tls_broker: Broker) -> None:
    security = tls_broker.security
    assert security.mode == "sasl_ssl"
    assert stat.S_IMODE(security.keystore_file.stat().st_mode) == 0o600
    settings = Settings(
        bootstrap_servers=tls_broker.bootstrap, kafka_username="admin",
        kafka_password_file=security.admin_password_file, kafka_ssl_ca_location=security.ca_file,
    )  # fmt: skip
    config = settings.kafka_client_config()
    assert config["security.protocol"] == "SASL_SSL"
    answered = AdminClient(config).list_topics(timeout=10).orig_broker_name
    assert answered.startswith(f"sasl_ssl://{tls_broker.bootstrap}")
    assert authenticates(settings, "admin", security.admin_password(), timeout=10)

    no_tls = {**config, "security.protocol": "SASL_PLAINTEXT", "log_level": 0}
    no_tls.pop("ssl.ca.location")
    with pytest.raises(KafkaException):
        AdminClient(no_tls).list_topics(timeout=3)
    untrusted = {**config, "ssl.ca.location": str(Path("/etc/ssl/certs")), "log_level": 0}
    with pytest.raises(KafkaException):
        AdminClient(untrusted).list_topics(timeout=3)


def test_router_and_faust_privacy_app_work_over_tls(tls_broker: Broker, tmp_path: Path) -> None:
    """The router (confluent-kafka) and the privacy app (faust, aiokafka with an SSL
    context) on the TLS listener: a routed recording call gets registered."""
    security = tls_broker.security
    env = {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": tls_broker.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": f"tls{uuid.uuid4().hex[:6]}.",
        "CONTACTFLOW_DATA_DIR": str(tmp_path / "data"),
        "CONTACTFLOW_KAFKA_USERNAME": "admin",
        "CONTACTFLOW_KAFKA_PASSWORD_FILE": str(security.admin_password_file),
        "CONTACTFLOW_KAFKA_SSL_CA_LOCATION": str(security.ca_file),
        "CONTACTFLOW_RETENTION_SWEEP_INTERVAL_S": "3600",
    }
    root = bootstrap(
        Settings(
            bootstrap_servers=tls_broker.bootstrap, topic_prefix=env["CONTACTFLOW_TOPIC_PREFIX"],
            data_dir=tmp_path / "data", kafka_username="admin",
            kafka_password_file=security.admin_password_file,
            kafka_ssl_ca_location=security.ca_file,
        ),
        telemetry=Telemetry.in_memory(),
    )  # fmt: skip
    admin = root.admin()
    apply_plan(admin, plan(admin, root.topics).changes)
    upgrade(root.settings.resolved_database_url())
    load_keys(root.settings)
    recording_id = f"rec-{uuid.uuid4().hex[:10]}"
    producer = root.producer()
    producer.send("phone", recording_call(recording_id))
    assert producer.flush().delivered == 1
    assert RouterWorker(root).run(max_idle_s=1.5).events_in == 1

    log = tmp_path / "privacy-app.log"
    with running_privacy_app(env, log):
        registered = wait_registered(root, recording_id, log)
    assert registered.state == "standard"
    assert security.admin_password().get_secret_value() not in log.read_text()
