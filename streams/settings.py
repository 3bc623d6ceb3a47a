"""One frozen settings object for every contactflow process.

Values come from `CONTACTFLOW_*` environment variables (or keyword arguments in tests).
Secrets are `SecretStr`, so they never print. An environment variable with the
`CONTACTFLOW_` prefix that names no setting is refused with a suggestion: a typo must
not silently fall back to a default.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.kpi import KpiConfig
from streams.errors import ContactflowError

ENV_PREFIX = "CONTACTFLOW_"
TEST_ENV_PREFIX = "CONTACTFLOW_TEST_"  # reserved for the test suite, never a setting
ACL_PASSWORD_ENV_PREFIX = "CONTACTFLOW_ACL_PASSWORD_"  # noqa: S105 - one per role
KAFKA_CLIENT_LOGGER = "contactflow.kafka"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ContactflowError, ValueError):
    """Configuration that cannot be used; the message says which setting and why."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "contactflow"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "contactflow"


class Settings(BaseSettings):
    """Every knob contactflow reads. See the configuration table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    infra_dir: Path = PROJECT_ROOT / "infra"

    bootstrap_servers: str | None = None
    broker_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    broker_heap: str = "1g"
    broker_start_timeout_s: float = Field(default=90.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    broker_nodes: int = Field(default=1, ge=1, le=5)  # a new storage: 1, or a 3-5 node cluster

    database_url: SecretStr | None = None

    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_password_file: Path | None = None
    kafka_ssl_ca_location: Path | None = None

    broker_secure: bool = False
    broker_tls: bool = False
    broker_admin_password: SecretStr | None = None

    acl_secrets_dir: Path | None = None
    acl_passwords: dict[str, SecretStr] = Field(default_factory=dict, repr=False)

    pseudonym_key: SecretStr | None = None
    master_key: SecretStr | None = None

    router_instance: str = Field(default="router-1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    router_batch_size: int = Field(default=2000, ge=1, le=100_000)
    router_batch_timeout_s: float = Field(default=0.1, gt=0)
    router_max_event_bytes: int = Field(default=512 * 1024, ge=1024)
    router_dedup_window: int = Field(default=50_000, ge=0)
    # commit batch N's Kafka transaction while batch N+1 is routed (off: one at a time)
    router_overlap_commits: bool = True
    router_session_timeout_s: float = Field(default=45.0, ge=6.0, le=300.0)
    # memory of the router's subject, key and footprint caches together (LRU beyond it)
    router_cache_mb: int = Field(default=256, ge=1, le=1024 * 1024)
    # an unwrapped data key stays in a router's memory at most this long
    router_key_ttl_s: float = Field(default=300.0, gt=0)

    retention_sweep_interval_s: float = Field(default=3600.0, gt=0)
    privacy_deadline_interval_s: float = Field(default=60.0, gt=0)
    # the privacy app's /healthz fails while one ledger call has run longer than this
    ledger_call_stale_s: float = Field(default=300.0, gt=0)
    privacy_standing_instructions: str = Field(
        default="", pattern=r"^[a-z_]*(,[a-z_]+)*$", description="request types ORES pre-authorised"
    )

    # reporting (`contactflow run reporting`): service level, anonymity threshold k, grace
    kpi_service_level_s: int = Field(default=20, ge=1, le=3600)
    kpi_min_subjects: int = Field(default=5, ge=2, le=1000)
    kpi_grace_s: float = Field(default=6 * 3600.0, ge=0)
    kpi_keep_cells_s: float = Field(default=14 * 86400.0, ge=0)
    kpi_forget_interval_s: float = Field(default=3600.0, gt=0)
    kpi_publish_interval_s: float = Field(default=5.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # /healthz, /readyz and /metrics of the long-running workers; off when the port is unset
    http_port: int | None = Field(default=None, ge=0, le=65535)
    http_host: str = "127.0.0.1"

    topic_prefix: str = ""
    topic_profile: str = "local"

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.broker_port == self.controller_port:
            raise ValueError(
                f"broker_port and controller_port must differ (both are {self.broker_port})"
            )
        return self

    @property
    def bootstrap(self) -> str:
        """Where clients connect: CONTACTFLOW_BOOTSTRAP_SERVERS, else the local broker (every
        node of a local cluster, so a client starting while node 1 is down still finds it)."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        from streams.ops.cluster import stored_cluster  # the layout module reads settings

        try:
            layout = stored_cluster(self.broker_dir)
        except ContactflowError:  # an unreadable layout: `broker up` and `status` say so
            layout = None
        return layout.bootstrap if layout is not None else f"127.0.0.1:{self.broker_port}"

    def kpi_config(self) -> KpiConfig:
        """The reporting's thresholds, grace period and how long cells are kept after it."""
        return KpiConfig(self.kpi_service_level_s, self.kpi_min_subjects,
                         timedelta(seconds=self.kpi_grace_s),
                         timedelta(seconds=self.kpi_keep_cells_s))  # fmt: skip

    def scoped(self, name: str) -> str:
        """A consumer group or `transactional.id` in this deployment's namespace: the topic
        prefix, so two deployments sharing a broker never join each other's groups nor
        fence each other's transactional producers."""
        return self.topic_prefix + name

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "kafka"

    def resolved_database_url(self) -> str:
        """The ledger URL: CONTACTFLOW_DATABASE_URL, or an SQLite file in the data dir."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'ledger.db'}"

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection settings shared by every confluent-kafka client.

        librdkafka's own log lines go to the `contactflow.kafka` logger instead of stderr.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "logger": logging.getLogger(KAFKA_CLIENT_LOGGER),
        }
        if self.kafka_username:
            config |= {
                "security.protocol": "SASL_SSL" if self.kafka_ssl_ca_location else "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.kafka_username,
                "sasl.password": self.resolved_kafka_password().get_secret_value(),
            }
        elif self.kafka_ssl_ca_location:
            config["security.protocol"] = "SSL"
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
        return config

    def resolved_kafka_password(self) -> SecretStr:
        """The client password: CONTACTFLOW_KAFKA_PASSWORD, else the first line of
        CONTACTFLOW_KAFKA_PASSWORD_FILE (a secret file mounted for the worker)."""
        if self.kafka_password is not None:
            return self.kafka_password
        if self.kafka_password_file is not None:
            return read_secret_file(self.kafka_password_file, "CONTACTFLOW_KAFKA_PASSWORD_FILE")
        raise SettingsError(
            "CONTACTFLOW_KAFKA_USERNAME is set but neither CONTACTFLOW_KAFKA_PASSWORD "
            "nor CONTACTFLOW_KAFKA_PASSWORD_FILE is"
        )


def read_secret_file(path: Path, setting: str) -> SecretStr:
    """The first line of a secret file; the error names the file, never its content."""
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path} ({exc.strerror})") from None
    if not value:
        raise SettingsError(f"{setting}: {path} is empty")
    return SecretStr(value)


def _acl_passwords(environ: Mapping[str, str]) -> dict[str, SecretStr]:
    """Per-role passwords from `CONTACTFLOW_ACL_PASSWORD_<ROLE>`, keyed by the role name
    as `infra/acl.yaml` spells it (lower case, `_` read as `-`)."""
    found: dict[str, SecretStr] = {}
    for key, value in environ.items():
        upper = key.upper()
        if upper.startswith(ACL_PASSWORD_ENV_PREFIX) and len(upper) > len(ACL_PASSWORD_ENV_PREFIX):
            role = upper[len(ACL_PASSWORD_ENV_PREFIX) :].lower().replace("_", "-")
            found[role] = SecretStr(value)
    return found


def _unknown_env_settings(environ: Mapping[str, str]) -> list[str]:
    known = {name.upper() for name in Settings.model_fields} - {"ACL_PASSWORDS"}
    problems = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_ENV_PREFIX):
            continue
        name = upper[len(ENV_PREFIX) :]
        if name in known or upper.startswith(ACL_PASSWORD_ENV_PREFIX):
            continue
        hint = difflib.get_close_matches(name, sorted(known), n=1)
        suffix = f" (did you mean {ENV_PREFIX}{hint[0]}?)" if hint else ""
        problems.append(f"unknown setting {key}{suffix}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, refusing unknown `CONTACTFLOW_*` variables."""
    problems = _unknown_env_settings(os.environ)
    if problems:
        raise SettingsError("; ".join(problems))
    overrides.setdefault("acl_passwords", _acl_passwords(os.environ))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from None
