"""Router fixtures: a migrated ledger and dev keys shared with router subprocesses.

Routers run as `contactflow run router` subprocesses on the test's own topics and data
directory (same SQLite ledger, same development keys), so the test and every router
agree on pseudonyms and data keys. Routers still alive at teardown are stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.bootstrap import Container
from streams.dev.bench.routers import RouterFleet
from streams.dev.bench.verdict import GroupProbe
from streams.keys import load_keys
from streams.ledger import upgrade


@pytest.fixture
def router_ready_container(container: Container) -> Container:
    """The test's container with its ledger migrated and its dev keys written once.

    Writing the keys before any router starts keeps concurrent routers from racing to
    generate them (each would otherwise create its own).
    """
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    return container


@pytest.fixture
def router_fleet(router_ready_container: Container, tmp_path: Path) -> Iterator[RouterFleet]:
    fleet = RouterFleet(router_ready_container, tmp_path / "routers")
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def group_probe(router_ready_container: Container) -> Iterator[GroupProbe]:
    probe = GroupProbe(router_ready_container)
    try:
        yield probe
    finally:
        probe.close()
