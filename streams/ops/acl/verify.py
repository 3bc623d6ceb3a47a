"""`contactflow acl verify`: every role tries every declared topic on the real broker.

Each try is a real request made as the role's SCRAM user, chosen so that it changes
nothing on the broker:

- describe: a Metadata request naming the topics;
- create: CreateTopics with `validate_only` (allowed answers "already exists");
- read: a Fetch at the end of partition 0 (allowed answers "end of partition", so no
  record is ever read). A client cannot fetch a topic whose metadata it is refused, and
  Kafka's READ implies DESCRIBE, so a refused describe is the answer for read as well;
- write: a Produce whose timestamp lies ten years ahead. The broker authorises the write
  first and then refuses the record (`message.timestamp.after.max.ms`, one hour by
  default), so an allowed write answers INVALID_TIMESTAMP and stores nothing. Before
  trying, the topics' timestamp settings are checked so that this stays true.

Any other answer (a timeout, a broker error) stops the run: a verification that cannot
tell allow from deny must not report success.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from pydantic import SecretStr

from processors.acl import AclPolicy, Check, ProbedOperation, Role, expected_checks
from streams.ops.acl import AccessError
from streams.ops.acl.credentials import role_client_config
from streams.settings import Settings

_TIMEOUT_S = 15.0
_FUTURE_MS = 10 * 365 * 24 * 3600 * 1000
_DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
Observed = dict[tuple[str, ProbedOperation], bool]


def check_write_probe_is_harmless(admin: AdminClient, names: list[str]) -> None:
    """Refuse to try writes on topics that would store a record dated ten years ahead."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    futures = admin.describe_configs(resources, request_timeout=_TIMEOUT_S)
    for resource in resources:
        try:
            configs = futures[resource].result()
        except KafkaException as exc:
            raise AccessError(f"cannot read the configs of {resource.name}: {exc}") from None
        kind = configs["message.timestamp.type"].value
        after = int(configs["message.timestamp.after.max.ms"].value)
        if kind != "CreateTime" or after >= _FUTURE_MS:
            raise AccessError(
                f"{resource.name}: message.timestamp.type={kind}, "
                f"message.timestamp.after.max.ms={after}; the write probe would store a "
                "record there, so verify refuses to run"
            )


def verify_access(
    admin: AdminClient,
    settings: Settings,
    policy: AclPolicy,
    logical_topics: list[str],
    passwords: dict[str, SecretStr],
    workers: int = 4,
) -> list[Check]:
    """Try every role x topic x operation; return each try with its expected answer."""
    names = {logical: settings.topic_prefix + logical for logical in logical_topics}
    present = set(admin.list_topics(timeout=_TIMEOUT_S).topics)
    missing = sorted(n for n in names.values() if n not in present)
    if missing:
        raise AccessError(f"declared topics missing on the broker: {', '.join(missing)}; "
                          "run `contactflow topics apply` first")  # fmt: skip
    check_write_probe_is_harmless(admin, list(names.values()))

    def probe(role: Role) -> Observed:
        config = role_client_config(settings, role.name, passwords[role.name])
        return probe_role(config, names)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(probe, policy.roles)
        observed = dict(zip([role.name for role in policy.roles], found, strict=True))
    return [
        Check(role.name, topic, op, expected, observed[role.name][(topic, op)])
        for role, topic, op, expected in expected_checks(
            policy, logical_topics, settings.topic_prefix
        )
    ]


def probe_role(config: dict[str, Any], names: dict[str, str]) -> Observed:
    """What the broker lets this client do on each topic, by real tries."""
    quiet = {**config, "log_level": 0, "error_cb": _ignore}
    admin = AdminClient(quiet)
    observed: Observed = {}
    for logical, allowed in _try_describe(admin, names).items():
        observed[(logical, "describe")] = allowed
    for logical, allowed in _try_create(admin, names).items():
        observed[(logical, "create")] = allowed
    for logical, allowed in _try_write(quiet, names).items():
        observed[(logical, "write")] = allowed
    visible = {n: name for n, name in names.items() if observed[(n, "describe")]}
    for logical in names:
        observed[(logical, "read")] = False
    for logical, allowed in _try_read(quiet, visible).items():
        observed[(logical, "read")] = allowed
    return observed


def _ignore(_: Any) -> None:
    return None


def _verdict(error: KafkaError | None, allowed: Iterable[int], what: str) -> bool:
    if error is None or error.code() in allowed:
        return True
    if error.code() in _DENIED:
        return False
    raise AccessError(f"{what}: inconclusive answer {error.name()}")


def _try_describe(admin: AdminClient, names: dict[str, str]) -> dict[str, bool]:
    result = {}
    for logical, name in names.items():
        future = admin.describe_topics(TopicCollection([name]), request_timeout=_TIMEOUT_S)[name]
        error = _future_error(future)
        result[logical] = _verdict(error, (), f"describe {name}")
    return result


def _try_create(admin: AdminClient, names: dict[str, str]) -> dict[str, bool]:
    futures = admin.create_topics(
        [NewTopic(name, 1, 1) for name in names.values()],
        validate_only=True,
        request_timeout=_TIMEOUT_S,
    )
    return {
        logical: _verdict(
            _future_error(futures[name]), (KafkaError.TOPIC_ALREADY_EXISTS,), f"create {name}"
        )
        for logical, name in names.items()
    }


def _future_error(future: Any) -> KafkaError | None:
    try:
        future.result()
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    return None


def _try_write(config: dict[str, Any], names: dict[str, str]) -> dict[str, bool]:
    producer = Producer(
        {**config, "enable.idempotence": False, "acks": 1, "retries": 0,
         "message.timeout.ms": int(_TIMEOUT_S * 1000), "linger.ms": 0}
    )  # fmt: skip
    errors: dict[str, KafkaError | None] = {}
    stamp = int(time.time() * 1000) + _FUTURE_MS

    def record(topic: str) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(error: KafkaError | None, _message: Any) -> None:
            errors[topic] = error

        return on_delivery

    for name in names.values():
        producer.produce(name, b"", b"acl-probe", partition=0, timestamp=stamp,
                         on_delivery=record(name))  # fmt: skip
    if producer.flush(_TIMEOUT_S * 2):
        raise AccessError("write probes got no answer in time")
    result = {}
    for logical, name in names.items():
        error = errors[name]
        if error is None:
            raise AccessError(f"a write probe was stored in {name}: check its timestamp limits")
        result[logical] = _verdict(error, (KafkaError.INVALID_TIMESTAMP,), f"write {name}")
    return result


def _try_read(config: dict[str, Any], names: dict[str, str]) -> dict[str, bool]:
    consumer = Consumer(
        {**config, "group.id": f"acl-probe-{uuid.uuid4()}", "enable.auto.commit": False,
         "enable.partition.eof": True, "fetch.wait.max.ms": 10,
         "topic.metadata.refresh.interval.ms": 1000}
    )  # fmt: skip
    by_name = {name: logical for logical, name in names.items()}
    result: dict[str, bool] = {}
    if not by_name:
        return result
    try:
        consumer.assign([TopicPartition(name, 0, OFFSET_END) for name in by_name])
        deadline = time.monotonic() + _TIMEOUT_S * 2
        while len(result) < len(by_name) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            error = None if message is None else message.error()
            if message is None or error is None:
                continue  # a record past the end, written meanwhile: keep waiting for EOF
            logical = by_name.get(message.topic() or "")
            if logical is None:
                continue  # a group-level error: assign() does not use the group
            if error.code() == KafkaError._PARTITION_EOF:
                result[logical] = True
            elif error.code() in _DENIED:
                result[logical] = False
            else:
                raise AccessError(f"read {message.topic()}: inconclusive answer {error.name()}")
    finally:
        consumer.close()
    if len(result) < len(by_name):
        raise AccessError(f"read probes got no answer for {len(by_name) - len(result)} topic(s)")
    return result
