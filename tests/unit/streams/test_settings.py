from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import SettingsError, load_settings


def test_defaults_point_at_the_local_broker_and_an_sqlite_ledger(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.bootstrap == "127.0.0.1:9092"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'ledger.db'}"


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_BROKER_PORT", "19092")
    monkeypatch.setenv("CONTACTFLOW_TOPIC_PREFIX", "x.")
    settings = load_settings()
    assert settings.bootstrap == "127.0.0.1:19092"
    assert settings.topic_prefix == "x."


def test_unknown_setting_is_refused_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_BOOTSTRAP_SERVER", "kafka:9092")
    with pytest.raises(SettingsError, match="did you mean CONTACTFLOW_BOOTSTRAP_SERVERS"):
        load_settings()


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_BROKER_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="CONTACTFLOW_BROKER_PORT"):
        load_settings()


def test_same_ports_are_refused() -> None:
    with pytest.raises(SettingsError, match="must differ"):
        load_settings(broker_port=9092, controller_port=9092)


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_DATABASE_URL", "postgresql://app:s3cr3t-pw@db/ledger")
    monkeypatch.setenv("CONTACTFLOW_KAFKA_USERNAME", "router")
    monkeypatch.setenv("CONTACTFLOW_KAFKA_PASSWORD", "kafka-pw-123")
    settings = load_settings()
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    assert "s3cr3t-pw" not in shown
    assert "kafka-pw-123" not in shown
    assert settings.kafka_client_config()["sasl.password"] == "kafka-pw-123"


def test_username_without_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTFLOW_KAFKA_USERNAME", "router")
    with pytest.raises(SettingsError, match="KAFKA_PASSWORD"):
        load_settings().kafka_client_config()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.broker_port = 1  # type: ignore[misc]
