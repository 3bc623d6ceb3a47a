"""Credentials in the settings: per-role passwords, password files, TLS, the secured
broker's configuration; none of it ever printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.ops.broker_security import BrokerSecurity, choose_security, prepare_secrets
from streams.settings import Settings, SettingsError, load_settings


def test_role_passwords_come_from_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_ACL_PASSWORD_PRODUCER_PHONE", "s3cret-phone")
    monkeypatch.setenv("CONTACTFLOW_ACL_PASSWORD_DATA_ENGINEER", "s3cret-eng")
    settings = load_settings()
    assert settings.acl_passwords["producer-phone"].get_secret_value() == "s3cret-phone"
    assert set(settings.acl_passwords) == {"producer-phone", "data-engineer"}
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)


def test_unknown_variables_are_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_ACL_PASSWORDS", "{}")
    with pytest.raises(SettingsError, match="unknown setting CONTACTFLOW_ACL_PASSWORDS"):
        load_settings()


def test_the_client_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "router.password"
    secret.write_text("from-a-file\n")
    settings = Settings(kafka_username="router", kafka_password_file=secret)
    config = settings.kafka_client_config()
    assert config["sasl.password"] == "from-a-file"
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    with_ca = Settings(kafka_username="router", kafka_password_file=secret,
                       kafka_ssl_ca_location=tmp_path / "ca.pem")  # fmt: skip
    assert with_ca.kafka_client_config()["security.protocol"] == "SASL_SSL"


def test_missing_or_empty_password_files_name_the_file_not_a_value(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="neither CONTACTFLOW_KAFKA_PASSWORD"):
        Settings(kafka_username="router").kafka_client_config()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        Settings(kafka_username="r", kafka_password_file=empty).kafka_client_config()
    with pytest.raises(SettingsError, match="cannot read"):
        Settings(kafka_username="r", kafka_password_file=tmp_path / "nope").kafka_client_config()


def test_a_secured_broker_config_has_scram_the_authoriser_and_owner_only_secrets(
    tmp_path: Path,
) -> None:
    security = BrokerSecurity("sasl", tmp_path)
    prepare_secrets(security, Settings(data_dir=tmp_path))
    assert security.admin_password_file.stat().st_mode & 0o077 == 0
    properties = security.server_properties()
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in (
        properties
    )
    assert "super.users=User:admin;User:ANONYMOUS" in properties
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in properties
    assert security.scram_format_argument()[0] == "--add-scram"
    assert BrokerSecurity("plain", tmp_path).server_properties() == ""


def test_tls_material_is_generated_for_local_use(tmp_path: Path) -> None:
    security = BrokerSecurity("sasl_ssl", tmp_path)
    prepare_secrets(security, Settings(data_dir=tmp_path))
    assert "BEGIN CERTIFICATE" in security.ca_file.read_text()
    keystore = security.keystore_file.read_text()
    assert "BEGIN PRIVATE KEY" in keystore
    assert keystore.count("BEGIN CERTIFICATE") == 2
    assert "listener.name.client.ssl.keystore.type=PEM" in security.server_properties()


def test_a_storage_keeps_its_mode(tmp_path: Path) -> None:
    BrokerSecurity("sasl", tmp_path).save()
    assert choose_security(tmp_path, Settings(), None, None).mode == "sasl"
    with pytest.raises(BrokerError, match="formatted in 'sasl' mode"):
        choose_security(tmp_path, Settings(), False, None)
    assert choose_security(tmp_path / "new", Settings(), True, True).mode == "sasl_ssl"


def test_an_admin_password_that_would_break_the_config_is_refused(tmp_path: Path) -> None:
    security = BrokerSecurity("sasl", tmp_path)
    prepare_secrets(security, Settings(broker_admin_password='bad"quote'))
    with pytest.raises(BrokerError, match="may not contain quotes") as caught:
        security.server_properties()
    assert "bad" not in str(caught.value)


def test_the_faust_app_logs_in_like_every_other_client(tmp_path: Path) -> None:
    from faust.types.auth import AuthProtocol, SASLMechanism

    from streams.control.app import faust_credentials
    from streams.ops.broker_security import write_local_tls

    assert faust_credentials(Settings()) is None
    ca = tmp_path / "ca.pem"
    write_local_tls(ca, tmp_path / "server.pem")
    settings = Settings(kafka_username="privacy-app", kafka_password="faust-s3cret",
                        kafka_ssl_ca_location=ca)  # fmt: skip
    credentials = faust_credentials(settings)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert credentials.username == "privacy-app"
    assert "faust-s3cret" not in repr(credentials)


def test_a_formatted_secure_storage_needs_its_admin_password_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("formatted\n")
    with pytest.raises(BrokerError, match=r"admin\.password is missing"):
        prepare_secrets(BrokerSecurity("sasl", tmp_path), Settings())
