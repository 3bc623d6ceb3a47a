"""`broker up --secure --tls`: SCRAM over TLS with the locally generated CA."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from secureclients import free_port

from streams.acl.apply import authenticates
from streams.broker import Broker
from streams.settings import Settings

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
