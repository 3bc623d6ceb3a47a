"""A secured real broker for the need-to-know tests: SASL/SCRAM-SHA-512, the KRaft
StandardAuthorizer, every topic of infra/topics.yaml under one session prefix, and the
users and ACLs of infra/acl.yaml applied by `streams.ops.acl` as `contactflow acl apply` does.

The broker always starts here (never CONTACTFLOW_TEST_BOOTSTRAP: that one is plain), on
free ports with its own temporary data directory, and is stopped at the end. Each role's
password is a random file in a secrets directory, read through the settings like a
deployment would (CONTACTFLOW_ACL_SECRETS_DIR, CONTACTFLOW_KAFKA_PASSWORD_FILE).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from secureclients import free_port

from processors.acl import AclPolicy
from streams.bootstrap import Container, bootstrap
from streams.ops.acl import load_acl_policy
from streams.ops.acl.apply import apply_access, plan_access
from streams.ops.acl.credentials import require_passwords
from streams.ops.broker import Broker
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, plan

pytestmark = pytest.mark.integration


@dataclass
class SecureDeployment:
    """The secured broker with the file's roles applied, and settings for each role."""

    broker: Broker
    prefix: str
    secrets_dir: Path
    policy: AclPolicy
    passwords: dict[str, SecretStr]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def admin_password(self) -> SecretStr:
        return self.broker.security.admin_password()

    def all_secrets(self) -> list[str]:
        """Every password in play, to assert that none ever shows."""
        values = [p.get_secret_value() for p in self.passwords.values()]
        return [*values, self.admin_password.get_secret_value()]

    def settings(self, role: str | None, data_dir: Path, **overrides: Any) -> Settings:
        """Settings of one role (None: the admin super user), as a deployment sets them."""
        password_file = (
            self.broker.security.admin_password_file
            if role is None
            else self.secrets_dir / f"{role}.password"
        )
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "bootstrap_servers": self.broker.bootstrap,
            "topic_prefix": self.prefix,
            "kafka_username": role or "admin",
            "kafka_password_file": password_file,
            "acl_secrets_dir": self.secrets_dir,
        }
        return Settings(**(values | overrides))

    def env(self, role: str | None, data_dir: Path) -> dict[str, str]:
        """The same settings as CONTACTFLOW_* variables, for the CLI and subprocesses."""
        settings = self.settings(role, data_dir)
        return {
            "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
            "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "CONTACTFLOW_DATA_DIR": str(data_dir),
            "CONTACTFLOW_KAFKA_USERNAME": settings.kafka_username or "",
            "CONTACTFLOW_KAFKA_PASSWORD_FILE": str(settings.kafka_password_file),
            "CONTACTFLOW_ACL_SECRETS_DIR": str(self.secrets_dir),
        }


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureDeployment]:
    home = tmp_path_factory.mktemp("secure-broker")
    broker = Broker(
        Settings(
            data_dir=home, broker_port=free_port(), controller_port=free_port(),
            broker_heap="512m",
        )
    )  # fmt: skip
    started = time.monotonic()
    broker.up(secure=True)
    try:
        timings = {"broker_up_s": time.monotonic() - started}
        deployment = _deploy(broker, tmp_path_factory.mktemp("acl-secrets"), timings)
        yield deployment
    finally:
        broker.down()


def _deploy(broker: Broker, secrets_dir: Path, timings: dict[str, float]) -> SecureDeployment:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    probe = SecureDeployment(broker, prefix, secrets_dir, AclPolicy("", ()), {}, timings)
    admin_settings = probe.settings(None, secrets_dir.parent / "admin-data")
    root = bootstrap(admin_settings, telemetry=Telemetry.in_memory())
    admin = root.admin()
    apply_plan(admin, plan(admin, root.topics).changes)
    policy = load_acl_policy(admin_settings.infra_dir / "acl.yaml", root.topics)
    for role in policy.roles:
        (secrets_dir / f"{role.name}.password").write_text(secrets.token_urlsafe(18) + "\n")
    passwords = require_passwords(admin_settings, policy.roles)
    started = time.monotonic()
    apply_access(admin, admin_settings, plan_access(admin, admin_settings, policy, passwords),
                 passwords)  # fmt: skip
    timings["acl_apply_s"] = time.monotonic() - started
    return SecureDeployment(broker, prefix, secrets_dir, policy, passwords, timings)


@pytest.fixture
def as_role(secure: SecureDeployment, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Containers connected as a role (or as admin with None), each with its own data dir."""
    made: list[Container] = []

    def make(role: str | None, **overrides: Any) -> Container:
        data = tmp_path / (role or "admin")
        root = bootstrap(secure.settings(role, data, **overrides), telemetry=Telemetry.in_memory())
        made.append(root)
        return root

    yield make
    for root in made:
        if root._telemetry is not None:
            root._telemetry.shutdown()
