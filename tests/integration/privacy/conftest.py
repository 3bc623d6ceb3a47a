"""Privacy fixtures: a migrated ledger, dev keys, the service on the test's own topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.bootstrap import Container
from streams.control.privacy.config import load_privacy_config
from streams.control.privacy.service import PrivacyService
from streams.keys import load_keys
from streams.ledger import upgrade


@pytest.fixture
def privacy(container: Container) -> Iterator[PrivacyService]:
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    service = PrivacyService.from_container(container, load_privacy_config(container), actor="test")
    yield service
    service.close()
