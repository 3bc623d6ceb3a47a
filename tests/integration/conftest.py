"""Integration fixtures: one real Kafka broker per test session, fresh topics per test.

With CONTACTFLOW_TEST_BOOTSTRAP set (as `.ci/run` does) the tests use that broker;
otherwise the session starts its own with `streams.ops.broker` on free ports and stops it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.bootstrap import Container, bootstrap
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.ops.broker import Broker
from streams.settings import KAFKA_CLIENT_LOGGER, Settings
from streams.telemetry import Telemetry
from streams.topics import apply_plan, delete_topics, plan

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of a running real broker for this test session."""
    external = os.environ.get("CONTACTFLOW_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    broker = Broker(
        Settings(
            data_dir=tmp_path_factory.mktemp("broker"),
            broker_port=_free_port(),
            controller_port=_free_port(),
            broker_heap="512m",
        )
    )
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        broker.down()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone, which it may stop, SIGKILL and start again. The test's
    own clients retry against it while it is away: their librdkafka lines are muted."""
    broker = Broker(
        Settings(
            data_dir=tmp_path / "broker",
            broker_port=_free_port(),
            controller_port=_free_port(),
            broker_heap="512m",
        )
    )
    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    broker.up()
    try:
        yield broker
    finally:
        logger.setLevel(level)
        broker.down()


@pytest.fixture
def own_broker_container(own_broker: Broker, tmp_path: Path) -> Container:
    """A composition root on `own_broker`: every declared topic, a migrated ledger, keys."""
    settings = Settings(
        data_dir=tmp_path / "data", bootstrap_servers=own_broker.bootstrap, topic_prefix="o."
    )
    root = bootstrap(settings, telemetry=Telemetry.in_memory())
    admin = root.admin()
    apply_plan(admin, plan(admin, root.topics).changes)
    upgrade(settings.resolved_database_url())
    load_keys(settings)
    return root


@pytest.fixture
def settings_factory(kafka_bootstrap: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings pointing at the session broker, with a per-test topic prefix and data dir."""
    prefix = f"t{uuid.uuid4().hex[:10]}."

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": prefix,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    memory = Telemetry.in_memory()
    yield memory
    memory.shutdown()


@pytest.fixture
def container(settings_factory, telemetry: Telemetry) -> Iterator[Container]:  # type: ignore[no-untyped-def]
    """A composition root with this test's own fresh set of every declared topic."""
    root = bootstrap(settings_factory(), telemetry=telemetry)
    admin = root.admin()
    apply_plan(admin, plan(admin, root.topics).changes)
    yield root
    delete_topics(admin, root.topics)
