"""Where each role's password comes from, and the client config that uses it.

A password is read from `CONTACTFLOW_ACL_PASSWORD_<ROLE>` (via the settings) or from
`<role>.password` in `CONTACTFLOW_ACL_SECRETS_DIR`. It stays a `SecretStr` until the
moment a client config is built, and no message here ever contains it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from processors.acl import Role
from streams.ops.acl import AccessError
from streams.settings import Settings, read_secret_file

SCRAM_ITERATIONS = 8192


def secret_file(settings: Settings, role: Role) -> Path | None:
    if settings.acl_secrets_dir is None:
        return None
    return settings.acl_secrets_dir / f"{role.name}.password"


def role_password(settings: Settings, role: Role) -> SecretStr | None:
    """The configured password of `role`, or None when neither source has one."""
    if role.name in settings.acl_passwords:
        return settings.acl_passwords[role.name]
    path = secret_file(settings, role)
    if path is not None and path.exists():
        return read_secret_file(path, "CONTACTFLOW_ACL_SECRETS_DIR")
    return None


def require_passwords(settings: Settings, roles: tuple[Role, ...]) -> dict[str, SecretStr]:
    """Every role's password; the error lists where each missing one may be given."""
    found = {role.name: role_password(settings, role) for role in roles}
    missing = [role for role in roles if found[role.name] is None]
    if missing:
        where = ", ".join(role.password_env_var for role in missing)
        hint = (
            f" or the files <role>.password in {settings.acl_secrets_dir}"
            if settings.acl_secrets_dir
            else " or set CONTACTFLOW_ACL_SECRETS_DIR to a directory of <role>.password files"
        )
        raise AccessError(
            f"no password for {len(missing)} role(s): "
            f"{', '.join(r.name for r in missing)}; set {where}{hint} "
            "(`contactflow acl apply --generate-missing` writes random ones there)"
        )
    return {name: value for name, value in found.items() if value is not None}


def generate_missing(settings: Settings, roles: tuple[Role, ...]) -> list[str]:
    """Write a random password file for each role that has none; return their names."""
    if settings.acl_secrets_dir is None:
        raise AccessError("--generate-missing needs CONTACTFLOW_ACL_SECRETS_DIR (a directory)")
    settings.acl_secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for role in roles:
        if role_password(settings, role) is None:
            path = settings.acl_secrets_dir / f"{role.name}.password"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
            written.append(role.name)
    return written


def role_client_config(settings: Settings, user: str, password: SecretStr) -> dict[str, Any]:
    """The confluent-kafka config of one role's user on this deployment's broker."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "security.protocol": "SASL_SSL" if settings.kafka_ssl_ca_location else "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password.get_secret_value(),
    }
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config
