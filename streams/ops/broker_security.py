"""The secured mode of the local broker: SASL/SCRAM-SHA-512, the StandardAuthorizer, TLS.

`contactflow broker up --secure` formats the storage with an `admin` SCRAM user (a super
user) and turns on the KRaft StandardAuthorizer: every other principal reaches only what
its ACLs allow (`contactflow acl apply`). `--tls` also wraps the client listener in TLS
with a self-signed CA generated here, for local use only. The chosen mode is written next
to the broker's data, so `up`, `status` and `down` agree across invocations. Passwords
live in files readable by the owner only and are never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from streams.errors import BrokerError
from streams.settings import Settings, read_secret_file

ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
Mode = Literal["plain", "sasl", "sasl_ssl"]


@dataclass(frozen=True)
class BrokerSecurity:
    """How the client listener is protected, and where its secrets are kept."""

    mode: Mode
    home: Path

    @property
    def secure(self) -> bool:
        return self.mode != "plain"

    @property
    def admin_password_file(self) -> Path:
        return self.home / "secrets" / "admin.password"

    @property
    def ca_file(self) -> Path:
        return self.home / "tls" / "ca.pem"

    @property
    def keystore_file(self) -> Path:
        return self.home / "tls" / "server.pem"

    @property
    def listener(self) -> str:
        return "PLAINTEXT" if self.mode == "plain" else "CLIENT"

    @property
    def protocol(self) -> str:
        return {"plain": "PLAINTEXT", "sasl": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL"}[self.mode]

    def admin_password(self) -> SecretStr:
        return read_secret_file(self.admin_password_file, "broker admin password")

    def admin_client_config(self, bootstrap: str) -> dict[str, Any]:
        """A confluent-kafka config that connects as the broker's super user."""
        config: dict[str, Any] = {"bootstrap.servers": bootstrap}
        if self.secure:
            config |= {
                "security.protocol": self.protocol,
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": ADMIN_USER,
                "sasl.password": self.admin_password().get_secret_value(),
            }
        if self.mode == "sasl_ssl":
            config["ssl.ca.location"] = str(self.ca_file)
        return config

    def server_properties(self) -> str:
        """The lines added to server.properties for this mode (empty in plain mode)."""
        if not self.secure:
            return ""
        password = _jaas_quote(self.admin_password().get_secret_value())
        name = self.listener.lower()
        lines = [
            "",
            "# Secured by `contactflow broker up --secure`: SCRAM on the client listener,",
            "# the KRaft authoriser, and no access without an ACL.",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
            f"listener.name.{name}.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{password}";',
            f"authorizer.class.name={AUTHORIZER}",
            # ANONYMOUS is the principal of the PLAINTEXT controller listener (127.0.0.1).
            f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]
        if self.mode == "sasl_ssl":
            lines += [
                f"listener.name.{name}.ssl.keystore.type=PEM",
                f"listener.name.{name}.ssl.keystore.location={self.keystore_file}",
                f"listener.name.{name}.ssl.truststore.type=PEM",
                f"listener.name.{name}.ssl.truststore.location={self.ca_file}",
                "ssl.endpoint.identification.algorithm=https",
            ]
        return "\n".join(lines) + "\n"

    def scram_format_argument(self) -> list[str]:
        """The StorageTool arguments that create the admin user with the storage."""
        if not self.secure:
            return []
        password = _jaas_quote(self.admin_password().get_secret_value())
        return ["--add-scram", f'{SCRAM_MECHANISM}=[name={ADMIN_USER},password="{password}"]']

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "security.json").write_text(json.dumps({"mode": self.mode}) + "\n")


def load_security(home: Path) -> BrokerSecurity | None:
    """The mode the storage under `home` was formatted with; None before the first `up`."""
    try:
        mode = json.loads((home / "security.json").read_text())["mode"]
    except FileNotFoundError:
        return None if not (home / "data" / "meta.properties").exists() else _plain(home)
    if mode not in ("plain", "sasl", "sasl_ssl"):
        raise BrokerError(f"{home / 'security.json'} names an unknown mode {mode!r}")
    return BrokerSecurity(mode, home)


def _plain(home: Path) -> BrokerSecurity:
    return BrokerSecurity("plain", home)


def choose_security(
    home: Path, settings: Settings, secure: bool | None, tls: bool | None
) -> BrokerSecurity:
    """The mode for this `up`: the one the storage has, or the one asked for a new storage.

    Asking for another mode than the formatted storage has is refused: the admin user and
    the ACLs live in that storage's metadata.
    """
    want_secure = settings.broker_secure if secure is None else secure
    want_tls = settings.broker_tls if tls is None else tls
    wanted: Mode = "sasl_ssl" if want_tls else ("sasl" if want_secure else "plain")
    current = load_security(home)
    if current is None:
        return BrokerSecurity(wanted, home)
    asked = secure is not None or tls is not None or settings.broker_secure or settings.broker_tls
    if asked and current.mode != wanted:
        raise BrokerError(
            f"the broker storage in {home} was formatted in {current.mode!r} mode, not "
            f"{wanted!r}; use another CONTACTFLOW_DATA_DIR (or remove this one) to change it"
        )
    return current


def prepare_secrets(security: BrokerSecurity, settings: Settings) -> None:
    """Write the admin password file (from the settings or random) and the TLS material."""
    if not security.secure:
        return
    target = security.admin_password_file
    if not target.exists() and (security.home / "data" / "meta.properties").exists():
        raise BrokerError(
            f"{target} is missing: the admin password was set when this storage was "
            "formatted; restore the file (or use a new CONTACTFLOW_DATA_DIR)"
        )
    if not target.exists():
        given = settings.broker_admin_password
        value = given.get_secret_value() if given else secrets.token_urlsafe(24)
        _write_private(target, value + "\n")
    if security.mode == "sasl_ssl" and not security.keystore_file.exists():
        write_local_tls(security.ca_file, security.keystore_file)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _jaas_quote(value: str) -> str:
    """Refuse characters that would end the quoted JAAS/StorageTool value early."""
    if any(c in value for c in '"\\;\n\r,]'):
        raise BrokerError(
            "the broker admin password may not contain quotes, backslashes, ';', ',', ']' "
            "or line breaks"
        )
    return value


def write_local_tls(ca_file: Path, keystore_file: Path, days: int = 365) -> None:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost (local use only).

    The keystore is a PEM file holding the unencrypted PKCS#8 key and the chain, readable
    by the owner only; clients trust `ca_file` (CONTACTFLOW_KAFKA_SSL_CA_LOCATION).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contactflow local CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    chain = cert.public_bytes(pem).decode() + ca_cert.public_bytes(pem).decode()
    ca_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_file.write_text(ca_cert.public_bytes(pem).decode())
    _write_private(keystore_file, key_pem + chain)
