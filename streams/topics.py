"""Topics as code: `infra/topics.yaml` is the only place topics are declared.

`load_topics` reads and validates the file; `plan` compares it with the broker and returns
the changes as values; `apply_plan` carries them out. Drift that Kafka cannot fix in place
(fewer partitions, another replication factor) is reported, never papered over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from streams.errors import TopicError

_ADMIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    """One declared topic, with the profile's replication and configs merged in."""

    name: str
    partitions: int
    replication_factor: int
    key: str
    value_schema: str
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicCatalog:
    """All declared topics under one naming prefix (tests use a fresh prefix each)."""

    specs: tuple[TopicSpec, ...]
    prefix: str = ""

    def name(self, logical: str) -> str:
        """The broker topic name of a declared topic, e.g. `contact.raw.phone.v1`."""
        if logical not in self._by_logical:
            raise TopicError(f"topic {logical!r} is not declared in infra/topics.yaml")
        return self.prefix + logical

    def spec(self, logical: str) -> TopicSpec:
        self.name(logical)
        return self._by_logical[logical]

    @cached_property
    def _by_logical(self) -> dict[str, TopicSpec]:
        return {spec.name: spec for spec in self.specs}


@dataclass(frozen=True)
class Change:
    """One difference between the file and the broker; `fixable` if apply can make it."""

    topic: str
    action: str  # create | add-partitions | set-config | delete-config | cannot-fix
    detail: str
    fixable: bool = True
    spec: TopicSpec | None = None
    config: tuple[str, str | None] | None = None
    partitions: int | None = None

    def __str__(self) -> str:
        return f"{self.topic}: {self.action} {self.detail}".rstrip()


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def unfixable(self) -> list[Change]:
        return [c for c in self.changes if not c.fixable]


def load_topics(path: Path, profile: str = "local", prefix: str = "") -> TopicCatalog:
    """Read and validate the topics file; every problem is reported with the topic name."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopicError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("topics"), list):
        raise TopicError(f"{path}: expected a mapping with a 'topics' list")
    profiles = document.get("profiles") or {}
    if profile not in profiles:
        raise TopicError(
            f"{path}: unknown topic profile {profile!r} (declared: {', '.join(profiles)})"
        )
    chosen = profiles[profile]
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(document["topics"]):
        spec = _parse_topic(raw, index, chosen, path)
        if spec.name in seen:
            raise TopicError(f"{path}: topic {spec.name} is declared twice")
        seen.add(spec.name)
        specs.append(spec)
    return TopicCatalog(tuple(specs), prefix)


def _parse_topic(raw: Any, index: int, profile: Mapping[str, Any], path: Path) -> TopicSpec:
    where = f"{path}: topics[{index}]"
    if not isinstance(raw, dict):
        raise TopicError(f"{where}: expected a mapping")
    unknown = set(raw) - {"name", "partitions", "key", "value_schema", "configs"}
    if unknown:
        raise TopicError(f"{where}: unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise TopicError(f"{where}: 'name' must be a non-empty string")
    partitions = raw.get("partitions")
    if not isinstance(partitions, int) or partitions < 1:
        raise TopicError(f"{where} ({name}): 'partitions' must be a positive integer")
    for required in ("key", "value_schema"):
        if not isinstance(raw.get(required), str):
            raise TopicError(f"{where} ({name}): '{required}' must be a string")
    configs = {str(k): str(v) for k, v in (profile.get("configs") or {}).items()}
    configs |= {str(k): str(v) for k, v in (raw.get("configs") or {}).items()}
    return TopicSpec(
        name=name,
        partitions=partitions,
        replication_factor=int(profile["replication_factor"]),
        key=raw["key"],
        value_schema=raw["value_schema"],
        configs=configs,
    )


def plan(admin: AdminClient, catalog: TopicCatalog) -> Plan:
    """What `apply_plan` would change to make the broker match the catalog."""
    try:
        metadata = admin.list_topics(timeout=_ADMIN_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - librdkafka raises KafkaException variants
        raise TopicError(f"cannot reach the broker to list topics: {exc}") from None
    result = Plan()
    existing = []
    for spec in catalog.specs:
        name = catalog.prefix + spec.name
        topic = metadata.topics.get(name)
        if topic is None:
            detail = f"partitions={spec.partitions} rf={spec.replication_factor}"
            result.changes.append(Change(name, "create", detail, spec=spec))
            continue
        existing.append((name, spec))
        have = len(topic.partitions)
        if have < spec.partitions:
            result.changes.append(
                Change(name, "add-partitions", f"{have} -> {spec.partitions}",
                       partitions=spec.partitions)
            )  # fmt: skip
        elif have > spec.partitions:
            result.changes.append(
                Change(name, "cannot-fix", f"has {have} partitions, file says "
                       f"{spec.partitions} (Kafka cannot remove partitions)", fixable=False)
            )  # fmt: skip
        replicas = len(next(iter(topic.partitions.values())).replicas) if have else 0
        if replicas != spec.replication_factor:
            result.changes.append(
                Change(name, "cannot-fix", f"replication factor {replicas}, file says "
                       f"{spec.replication_factor} (reassign partitions by hand)",
                       fixable=False)
            )  # fmt: skip
    result.changes.extend(_config_changes(admin, existing))
    return result


def _config_changes(admin: AdminClient, topics: Iterable[tuple[str, TopicSpec]]) -> list[Change]:
    topics = list(topics)
    if not topics:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, name) for name, _ in topics]
    futures = admin.describe_configs(resources, request_timeout=_ADMIN_TIMEOUT_S)
    changes = []
    for (name, spec), resource in zip(topics, resources, strict=True):
        actual = futures[resource].result()
        for key, wanted in sorted(spec.configs.items()):
            entry = actual.get(key)
            if entry is None or entry.value != wanted:
                have = None if entry is None else entry.value
                changes.append(
                    Change(name, "set-config", f"{key}: {have} -> {wanted}",
                           config=(key, wanted))
                )  # fmt: skip
        for key, entry in sorted(actual.items()):
            if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and key not in spec.configs:
                changes.append(
                    Change(name, "delete-config", f"{key}={entry.value} (not in file)",
                           config=(key, None))
                )  # fmt: skip
    return changes


def apply_plan(admin: AdminClient, changes: Iterable[Change]) -> list[Change]:
    """Carry out the fixable changes; return the ones applied. Fails on the first error."""
    changes = [c for c in changes if c.fixable]
    creates = [c for c in changes if c.action == "create" and c.spec is not None]
    if creates:
        new = [
            NewTopic(c.topic, c.spec.partitions, c.spec.replication_factor,
                     config=dict(c.spec.configs))
            for c in creates if c.spec is not None
        ]  # fmt: skip
        _wait_all(admin.create_topics(new, request_timeout=_ADMIN_TIMEOUT_S), "create")
        _await_visible(admin, [c.topic for c in creates])
    grows = [c for c in changes if c.action == "add-partitions" and c.partitions]
    if grows:
        parts = [NewPartitions(c.topic, c.partitions) for c in grows if c.partitions]
        _wait_all(admin.create_partitions(parts, request_timeout=_ADMIN_TIMEOUT_S), "grow")
    by_topic: dict[str, list[ConfigEntry]] = {}
    for change in changes:
        if change.config is None:
            continue
        key, value = change.config
        operation = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        by_topic.setdefault(change.topic, []).append(
            ConfigEntry(key, value or "", incremental_operation=operation)
        )
    if by_topic:
        resources = [
            ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
            for topic, entries in by_topic.items()
        ]
        _wait_all(admin.incremental_alter_configs(resources), "alter configs of")
        _await_configs(admin, [c for c in changes if c.config is not None])
    return changes


def _await_configs(admin: AdminClient, changes: list[Change]) -> None:
    """Block until altered configs are visible (KRaft propagates them asynchronously)."""
    deadline = time.monotonic() + _ADMIN_TIMEOUT_S
    while time.monotonic() < deadline:
        resources = {c.topic: ConfigResource(ResourceType.TOPIC, c.topic) for c in changes}
        futures = admin.describe_configs(list(resources.values()))
        current = {topic: futures[resource].result() for topic, resource in resources.items()}
        if all(_config_value(current[c.topic], c.config) for c in changes if c.config):
            return
        time.sleep(0.1)
    raise TopicError("altered topic configs did not become visible in time")


def _config_value(entries: Mapping[str, Any], config: tuple[str, str | None]) -> bool:
    key, wanted = config
    entry = entries.get(key)
    if wanted is None:  # deleted: back to a default, no longer a topic override
        return entry is None or entry.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    return entry is not None and entry.value == wanted


def _await_visible(admin: AdminClient, names: list[str]) -> None:
    """Block until every partition of the new topics is served by its leader.

    Creation returns once the controller accepted it; the broker opens the logs a little
    later. Waiting here means a client using the topics right after apply is not refused.
    """
    deadline = time.monotonic() + _ADMIN_TIMEOUT_S
    pending = set(names)
    while pending and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=_ADMIN_TIMEOUT_S).topics
        known = [n for n in pending if n in topics and topics[n].partitions]
        requests = {
            TopicPartition(name, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for name in known
            for p in topics[name].partitions
        }
        served: dict[str, bool] = dict.fromkeys(known, True)
        if requests:
            for tp, future in admin.list_offsets(requests).items():
                if future.exception() is not None:
                    served[tp.topic] = False
        pending -= {name for name, ok in served.items() if ok}
        if pending:
            time.sleep(0.2)
    if pending:
        raise TopicError(f"created topics are not served yet: {', '.join(sorted(pending))}")


def _wait_all(futures: Mapping[Any, Any], verb: str) -> None:
    for target, future in futures.items():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - report which topic failed and why
            name = getattr(target, "name", target)
            raise TopicError(f"could not {verb} topic {name}: {exc}") from None


def delete_topics(admin: AdminClient, catalog: TopicCatalog) -> None:
    """Delete every declared topic under the catalog's prefix (tests and demos only)."""
    existing = admin.list_topics(timeout=_ADMIN_TIMEOUT_S).topics
    names = [catalog.prefix + s.name for s in catalog.specs if catalog.prefix + s.name in existing]
    if names:
        _wait_all(admin.delete_topics(names, operation_timeout=_ADMIN_TIMEOUT_S), "delete")
        _await_gone(admin, names)


def _await_gone(admin: AdminClient, names: list[str]) -> None:
    """Block until deleted topics are no longer listed: Kafka deletes them asynchronously,
    and a topic created again meanwhile, or a listing, would still see the old one."""
    deadline = time.monotonic() + _ADMIN_TIMEOUT_S
    while time.monotonic() < deadline:
        listed = admin.list_topics(timeout=_ADMIN_TIMEOUT_S).topics
        if not any(name in listed for name in names):
            return
        time.sleep(0.2)
    raise TopicError(f"deleted topics still listed after {_ADMIN_TIMEOUT_S:.0f} s")
