"""Topics as code against the real broker: apply is idempotent, check catches drift."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from typer.testing import CliRunner

from schemas.topic_names import DECLARED
from streams.cli import app
from streams.topics import delete_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(settings_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    settings = settings_factory()
    return {
        "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
        "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
    }


def _set_retention_by_hand(admin, topic: str) -> None:  # type: ignore[no-untyped-def]
    entry = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    deadline = time.monotonic() + 30
    probe = ConfigResource(ResourceType.TOPIC, topic)
    while admin.describe_configs([probe])[probe].result()["retention.ms"].value != "1000":
        assert time.monotonic() < deadline, "the manual change never became visible"
        time.sleep(0.1)


def test_apply_twice_then_check_then_drift(cli_env: dict[str, str], settings_factory) -> None:  # type: ignore[no-untyped-def]
    from streams.bootstrap import bootstrap

    runner = CliRunner()
    root = bootstrap(settings_factory())
    try:
        dry = runner.invoke(app, ["topics", "apply", "--dry-run"], env=cli_env)
        assert dry.exit_code == 0, dry.output
        assert f"{len(DECLARED)} change(s) planned" in dry.output
        assert runner.invoke(app, ["topics", "check"], env=cli_env).exit_code == 1

        first = runner.invoke(app, ["topics", "apply"], env=cli_env)
        assert first.exit_code == 0, first.output
        assert f"applied {len(DECLARED)} change(s)" in first.output
        second = runner.invoke(app, ["topics", "apply"], env=cli_env)
        assert "nothing to do" in second.output
        check = runner.invoke(app, ["topics", "check"], env=cli_env)
        assert check.exit_code == 0, check.output

        drifted = root.topics.name("contact.ores.v1")
        _set_retention_by_hand(root.admin(), drifted)
        check = runner.invoke(app, ["topics", "check"], env=cli_env)
        assert check.exit_code == 1
        assert f"drift {drifted}: set-config retention.ms: 1000 -> 3456000000" in check.output

        fixed = runner.invoke(app, ["topics", "apply"], env=cli_env)
        assert "applied 1 change(s)" in fixed.output
        assert runner.invoke(app, ["topics", "check"], env=cli_env).exit_code == 0
    finally:
        delete_topics(root.admin(), root.topics)


def test_created_topics_carry_the_declared_configs(container) -> None:  # type: ignore[no-untyped-def]
    admin = container.admin()
    name = container.topics.name("privacy.subject-state.v1")
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["cleanup.policy"].value == "compact"
    metadata = admin.list_topics(name, timeout=10).topics[name]
    assert len(metadata.partitions) == 6


def test_extra_partitions_cannot_be_removed_and_are_reported(container) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import NewPartitions

    from streams.topics import plan

    admin = container.admin()
    name = container.topics.name("privacy.acks.v1")
    for future in admin.create_partitions([NewPartitions(name, 5)]).values():
        future.result()
    deadline = time.monotonic() + 10
    while len(admin.list_topics(name, timeout=10).topics[name].partitions) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    unfixable = plan(admin, container.topics).unfixable
    assert [str(c) for c in unfixable] == [
        f"{name}: cannot-fix has 5 partitions, file says 3 (Kafka cannot remove partitions)"
    ]
