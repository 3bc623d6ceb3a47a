"""Need to know as values: the roles of `infra/acl.yaml`, the ACLs they stand for, and the
allow/deny matrix a secured broker must show.

Pure: the caller reads the YAML and the topics registry and passes them in; the Kafka
admin calls and the probes live in `streams.ops.acl`. Keeping the expected matrix here means
`acl verify` compares the broker against a decision computed without the broker.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ProbedOperation = Literal["read", "write", "describe", "create"]
PROBED_OPERATIONS: tuple[ProbedOperation, ...] = ("read", "write", "describe", "create")
TOPIC_OPERATIONS = ("read", "write", "describe", "describe_configs", "delete")
INTERNAL_OPERATIONS = ("create", "read", "write", "describe", "describe_configs")
ALL = "*"
PASSWORD_ENV_PREFIX = "CONTACTFLOW_ACL_PASSWORD_"  # noqa: S105 - a variable name
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_ROLE_KEYS = {"description", "topics", "groups", "transactional_ids", "internal_topics"}


class AclPolicyError(ValueError):
    """infra/acl.yaml cannot be used; the message names the role and the key."""


@dataclass(frozen=True)
class Grant:
    """One ACL the broker must hold: allow `principal` `operation` on a resource."""

    principal: str
    resource_type: Literal["topic", "group", "transactional_id"]
    pattern: Literal["literal", "prefixed"]
    name: str
    operation: str

    def __str__(self) -> str:
        return f"{self.principal} {self.operation} {self.resource_type} {self.pattern}:{self.name}"


@dataclass(frozen=True)
class Role:
    """One principal's need to know; topic names are logical (no deployment prefix)."""

    name: str
    description: str
    topics: Mapping[str, frozenset[str]] = field(default_factory=dict)
    group_read: tuple[str, ...] = ()
    group_describe: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    internal_topics: tuple[str, ...] = ()

    @property
    def principal(self) -> str:
        return f"User:{self.name}"

    @property
    def password_env_var(self) -> str:
        return PASSWORD_ENV_PREFIX + self.name.upper().replace("-", "_")

    def allows(self, logical: str, full_name: str, operation: ProbedOperation) -> bool:
        """What the broker should answer when this role tries `operation` on a topic."""
        if any(full_name.startswith(p) for p in self.internal_topics):
            return True
        if operation == "create":
            return False
        granted = {op for op, names in self.topics.items() if logical in names}
        if operation == "describe":  # Kafka: read, write and delete imply describe
            return bool(granted & {"read", "write", "describe", "delete"})
        return operation in granted


@dataclass(frozen=True)
class AclPolicy:
    version: str
    roles: tuple[Role, ...]

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise AclPolicyError(f"no role {name!r} in infra/acl.yaml")

    @property
    def principals(self) -> frozenset[str]:
        return frozenset(role.principal for role in self.roles)


def parse_acl_policy(document: Any, declared_topics: Collection[str]) -> AclPolicy:
    """Validate the parsed YAML against the topics registry; every problem is named."""
    if not isinstance(document, dict) or not isinstance(document.get("roles"), dict):
        raise AclPolicyError("infra/acl.yaml: expected a mapping with a 'roles' mapping")
    version = document.get("version")
    if not isinstance(version, str) or not version:
        raise AclPolicyError("infra/acl.yaml: 'version' must be a non-empty string")
    if not document["roles"]:
        raise AclPolicyError("infra/acl.yaml: no roles declared")
    roles = tuple(
        _parse_role(name, raw, frozenset(declared_topics))
        for name, raw in document["roles"].items()
    )
    return AclPolicy(version, roles)


def _parse_role(name: Any, raw: Any, declared: frozenset[str]) -> Role:
    if not isinstance(name, str) or not _ROLE_NAME.match(name) or name == "admin":
        raise AclPolicyError(
            f"role {name!r}: names are lower case letters, digits and '-', not 'admin'"
        )
    if not isinstance(raw, dict):
        raise AclPolicyError(f"role {name}: expected a mapping")
    unknown = set(raw) - _ROLE_KEYS
    if unknown:
        raise AclPolicyError(f"role {name}: unknown keys {sorted(unknown)}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise AclPolicyError(f"role {name}: 'description' must say what the role is for")
    topics = _parse_topics(name, raw.get("topics") or {}, declared)
    groups = raw.get("groups") or {}
    if not isinstance(groups, dict) or set(groups) - {"read", "describe"}:
        raise AclPolicyError(f"role {name}: 'groups' takes only 'read' and 'describe' lists")
    return Role(
        name=name,
        description=description.strip(),
        topics=topics,
        group_read=_prefixes(name, "groups.read", groups.get("read"), wildcard=False),
        group_describe=_prefixes(name, "groups.describe", groups.get("describe"), wildcard=True),
        transactional_ids=_prefixes(name, "transactional_ids", raw.get("transactional_ids")),
        internal_topics=_prefixes(name, "internal_topics", raw.get("internal_topics")),
    )


def _parse_topics(role: str, raw: Any, declared: frozenset[str]) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict) or set(raw) - set(TOPIC_OPERATIONS):
        raise AclPolicyError(f"role {role}: 'topics' takes only {list(TOPIC_OPERATIONS)} lists")
    topics: dict[str, frozenset[str]] = {}
    for operation, names in raw.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise AclPolicyError(f"role {role}: topics.{operation} must be a list of names")
        expanded = declared if ALL in names else frozenset(names)
        undeclared = sorted(expanded - declared)
        if undeclared:
            raise AclPolicyError(
                f"role {role}: topics.{operation} names topics not in infra/topics.yaml: "
                + ", ".join(undeclared)
            )
        topics[operation] = expanded
    return topics


def _prefixes(role: str, key: str, raw: Any, *, wildcard: bool = False) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise AclPolicyError(f"role {role}: {key} must be a list of name prefixes")
    for prefix in raw:
        if not (_PREFIX.match(prefix) or (wildcard and prefix == ALL)):
            raise AclPolicyError(f"role {role}: {key} has an invalid prefix {prefix!r}")
    return tuple(raw)


def grants(policy: AclPolicy, topic_prefix: str = "") -> frozenset[Grant]:
    """Every ACL the policy stands for in the deployment's namespace: its topic prefix
    applies to topics, consumer groups, transactional ids and internal topics alike (a
    deployment's workers scope their group ids and `transactional.id`s with it)."""
    return frozenset(grant for role in policy.roles for grant in _role_grants(role, topic_prefix))


def _role_grants(role: Role, ns: str) -> Iterable[Grant]:
    who = role.principal
    for operation, names in sorted(role.topics.items()):
        for name in sorted(names):
            yield Grant(who, "topic", "literal", ns + name, operation)
    for prefix in role.group_read:
        yield Grant(who, "group", "prefixed", ns + prefix, "read")
    for prefix in role.group_describe:
        if prefix == ALL:
            yield Grant(who, "group", "literal", ALL, "describe")
        else:
            yield Grant(who, "group", "prefixed", ns + prefix, "describe")
    for prefix in role.transactional_ids:
        yield Grant(who, "transactional_id", "prefixed", ns + prefix, "write")
        yield Grant(who, "transactional_id", "prefixed", ns + prefix, "describe")
    for prefix in role.internal_topics:
        for operation in INTERNAL_OPERATIONS:
            yield Grant(who, "topic", "prefixed", ns + prefix, operation)


@dataclass(frozen=True)
class Check:
    """One try on the broker: what the file allows and what the broker did."""

    role: str
    topic: str
    operation: ProbedOperation
    expected: bool
    observed: bool

    @property
    def unexpected_allow(self) -> bool:
        return self.observed and not self.expected

    @property
    def unexpected_deny(self) -> bool:
        return self.expected and not self.observed


def expected_checks(
    policy: AclPolicy, logical_topics: Iterable[str], topic_prefix: str = ""
) -> list[tuple[Role, str, ProbedOperation, bool]]:
    """Every (role, logical topic, operation) to try, with the answer the file expects."""
    topics = list(logical_topics)
    return [
        (role, topic, op, role.allows(topic, topic_prefix + topic, op))
        for role in policy.roles
        for topic in topics
        for op in PROBED_OPERATIONS
    ]


@dataclass(frozen=True)
class VerifySummary:
    checks: int
    unexpected_allows: int
    unexpected_denies: int

    @property
    def ok(self) -> bool:
        return self.unexpected_allows == 0 and self.unexpected_denies == 0

    @property
    def line(self) -> str:
        return (
            f"acl_checks={self.checks} unexpected_allows={self.unexpected_allows} "
            f"unexpected_denies={self.unexpected_denies}"
        )


def summarise(checks: Collection[Check]) -> VerifySummary:
    return VerifySummary(
        checks=len(checks),
        unexpected_allows=sum(c.unexpected_allow for c in checks),
        unexpected_denies=sum(c.unexpected_deny for c in checks),
    )


def matrix_cell(checks: Collection[Check]) -> str:
    """One role x topic cell: the letters of allowed operations (r w d c), `!` on surprise.

    An unexpected allow shows the letter upper-cased; an unexpected deny shows `-` in its
    place, so a reader spots a wrong cell without a second table.
    """
    letters = []
    for check in checks:
        letter = check.operation[0]
        if check.unexpected_allow:
            letters.append(letter.upper())
        elif check.unexpected_deny:
            letters.append("-")
        elif check.observed:
            letters.append(letter)
    text = "".join(letters) or "."
    surprised = any(c.unexpected_allow or c.unexpected_deny for c in checks)
    return text + ("!" if surprised else "")


def render_matrix(checks: Collection[Check], roles: list[str], topics: list[str]) -> list[str]:
    """The matrix as plain text lines: one row per topic, one numbered column per role."""
    cells: dict[tuple[str, str], list[Check]] = {}
    for check in checks:
        cells.setdefault((check.topic, check.role), []).append(check)
    width = max(len(t) for t in topics) + 2
    lines = ["roles: " + ", ".join(f"{i} {role}" for i, role in enumerate(roles, 1))]
    lines.append("topic".ljust(width) + "".join(f"{i:>6}" for i in range(1, len(roles) + 1)))
    for topic in topics:
        row = "".join(f"{matrix_cell(cells.get((topic, role), [])):>6}" for role in roles)
        lines.append(topic.ljust(width) + row)
    return lines
