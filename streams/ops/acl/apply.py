"""`contactflow acl apply`: make the broker hold exactly the users and ACLs of the file.

The plan is computed first (and is all `--dry-run` prints): users to create, passwords
that no longer authenticate and must be set again, ACLs to add, and ACLs of the managed
principals that the file does not grant (removed, so a hand-made grant cannot linger).
SCRAM credentials cannot be read back, so an existing user's password is checked by
authenticating with it. Users of roles no longer in the file are left alone: the tool only
manages the principals the file names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from processors.acl import AclPolicy, Grant, grants
from streams.ops.acl import AccessError
from streams.ops.acl.credentials import SCRAM_ITERATIONS, role_client_config
from streams.settings import Settings

_TIMEOUT_S = 30.0
_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
    "describe_configs": AclOperation.DESCRIBE_CONFIGS,
    "create": AclOperation.CREATE,
    "delete": AclOperation.DELETE,
}
Action = Literal["create-user", "set-password", "add-acl", "remove-acl"]


@dataclass(frozen=True)
class AccessChange:
    action: Action
    subject: str
    binding: AclBinding | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.action} {self.subject}"


@dataclass
class AccessPlan:
    changes: list[AccessChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes


def to_binding(grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCE[grant.resource_type], grant.name, _PATTERN[grant.pattern],
        grant.principal, "*", _OPERATION[grant.operation], AclPermissionType.ALLOW,
    )  # fmt: skip


def _describe(binding: AclBinding) -> str:
    """A binding in the words of a Grant, for bindings the file does not know."""
    return (
        f"{binding.principal} {_label(binding.permission_type)} {_label(binding.operation)} "
        f"{_label(binding.restype)} {_label(binding.resource_pattern_type)}:{binding.name} "
        f"host={binding.host}"
    )


def _label(value: object) -> str:
    return str(getattr(value, "name", value)).lower()


def existing_acls(admin: AdminClient, principals: frozenset[str]) -> list[AclBinding]:
    """The broker's ACLs of the principals the file manages."""
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    try:
        found = admin.describe_acls(everything, request_timeout=_TIMEOUT_S).result()
    except KafkaException as exc:
        raise AccessError(f"cannot list the broker's ACLs (connect as admin): {exc}") from None
    return [binding for binding in found if binding.principal in principals]


def existing_users(admin: AdminClient) -> set[str]:
    try:
        future = admin.describe_user_scram_credentials()
        assert isinstance(future, Future)  # all users asked: one future, not a dict
        return set(future.result())
    except KafkaException as exc:
        raise AccessError(f"cannot list the broker's SCRAM users: {exc}") from None


def authenticates(settings: Settings, user: str, password: SecretStr, timeout: float) -> bool:
    """True when the broker accepts `user` with `password` (one metadata request)."""
    failures: list[str] = []

    def on_error(error: Any) -> None:
        failures.append(error.name())

    config = role_client_config(settings, user, password) | {
        "error_cb": on_error,
        "log_level": 0,
    }
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "_AUTHENTICATION" not in failures:
        try:
            admin.list_topics(timeout=min(0.5, timeout))
            return True
        except KafkaException:
            admin.poll(0)  # serves error_cb, which reports a refused login
    return False


def require_admin_login(settings: Settings) -> None:
    """Fail fast, and clearly, when the configured admin login is missing or refused."""
    if not settings.kafka_username:
        raise AccessError(
            "acl commands connect as the broker's super user: set CONTACTFLOW_KAFKA_USERNAME="
            "admin and CONTACTFLOW_KAFKA_PASSWORD_FILE (see `contactflow broker up --secure`)"
        )
    password = settings.resolved_kafka_password()
    if not authenticates(settings, settings.kafka_username, password, timeout=10):
        raise AccessError(
            f"the broker at {settings.bootstrap} refused the login of "
            f"{settings.kafka_username!r} (wrong password, unknown user, or not secured)"
        )


def require_role_logins(settings: Settings, passwords: dict[str, SecretStr]) -> None:
    """Every role must log in before its access can be judged; name those that cannot."""
    names = sorted(passwords)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda n: authenticates(settings, n, passwords[n], 10), names)
        refused = [name for name, ok in zip(names, results, strict=True) if not ok]
    if refused:
        raise AccessError(
            f"the broker refused the login of role(s) {', '.join(refused)}; run "
            "`contactflow acl apply` after changing a password"
        )


def plan_access(
    admin: AdminClient,
    settings: Settings,
    policy: AclPolicy,
    passwords: dict[str, SecretStr],
) -> AccessPlan:
    """The changes that make the broker match the policy under the settings' topic prefix.

    A role without a configured password (a dry run before passwords exist) is planned as
    a user to create if missing; an existing one cannot have its password checked.
    """
    result = AccessPlan()
    users = existing_users(admin)
    absent = [role.name for role in policy.roles if role.name not in users]
    present = [r.name for r in policy.roles if r.name in users and r.name in passwords]
    with ThreadPoolExecutor(max_workers=4) as pool:
        accepted = dict(
            zip(present, pool.map(lambda n: authenticates(settings, n, passwords[n], 10), present),
                strict=True)
        )  # fmt: skip
    result.changes += [AccessChange("create-user", name) for name in absent]
    result.changes += [AccessChange("set-password", n) for n in present if not accepted[n]]
    wanted = {to_binding(g): str(g) for g in grants(policy, settings.topic_prefix)}
    have = existing_acls(admin, policy.principals)
    result.changes += [
        AccessChange("add-acl", text, binding)
        for binding, text in sorted(wanted.items(), key=lambda item: item[1])
        if binding not in have
    ]
    result.changes += [
        AccessChange("remove-acl", _describe(binding), binding)
        for binding in sorted(have, key=_describe)
        if binding not in wanted
    ]
    return result


def apply_access(
    admin: AdminClient,
    settings: Settings,
    plan: AccessPlan,
    passwords: dict[str, SecretStr],
    report: Callable[[AccessChange], None] = lambda _: None,
) -> list[AccessChange]:
    """Carry out the plan and wait until the broker enforces it; return what was done."""
    users = [c for c in plan.changes if c.action in ("create-user", "set-password")]
    if users:
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                c.subject,
                ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                passwords[c.subject].get_secret_value().encode(),
            )
            for c in users
        ]
        _wait(admin.alter_user_scram_credentials(upserts, request_timeout=_TIMEOUT_S), "set user")
    adds = [c.binding for c in plan.changes if c.action == "add-acl" and c.binding]
    if adds:
        _wait(admin.create_acls(adds, request_timeout=_TIMEOUT_S), "add ACL")
    removes = [_exact(c.binding) for c in plan.changes if c.action == "remove-acl" and c.binding]
    if removes:
        _wait(admin.delete_acls(removes, request_timeout=_TIMEOUT_S), "remove ACL")
    for change in plan.changes:
        report(change)
    _await_enforced(admin, settings, plan, passwords)
    return plan.changes


def _exact(binding: AclBinding) -> AclBindingFilter:
    """A filter matching this one binding only (delete_acls takes filters)."""
    return AclBindingFilter(
        binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
        binding.host, binding.operation, binding.permission_type,
    )  # fmt: skip


def _wait(futures: dict[Any, Any], verb: str) -> None:
    for target, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            name = target if isinstance(target, str) else _describe(target)
            raise AccessError(f"could not {verb} {name}: {exc.args[0].str()}") from None


def _await_enforced(
    admin: AdminClient, settings: Settings, plan: AccessPlan, passwords: dict[str, SecretStr]
) -> None:
    """Block until the broker's authoriser and SCRAM store show the applied changes.

    KRaft applies them through the metadata log, a moment after the admin call returns;
    a worker started right after `apply` must not be refused.
    """
    deadline = time.monotonic() + _TIMEOUT_S
    principals = frozenset(c.binding.principal for c in plan.changes if c.binding is not None)
    wanted = {c.binding for c in plan.changes if c.action == "add-acl"}
    gone = {c.binding for c in plan.changes if c.action == "remove-acl"}
    while principals and time.monotonic() < deadline:
        have = set(existing_acls(admin, principals))
        if wanted <= have and not (gone & have):
            break
        time.sleep(0.1)
    for change in plan.changes:
        if change.action in ("create-user", "set-password"):
            left = max(1.0, deadline - time.monotonic())
            if not authenticates(settings, change.subject, passwords[change.subject], left):
                raise AccessError(f"user {change.subject} does not authenticate after apply")
