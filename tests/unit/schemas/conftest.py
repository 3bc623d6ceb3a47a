"""Fixtures of the schemas unit tests: the real catalog, loaded once, and editable copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import AVRO_DIR, AvroSerde, SchemaCatalog


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="session")
def serde(catalog: SchemaCatalog) -> AvroSerde:
    return AvroSerde(catalog)


@pytest.fixture
def avro_copy(tmp_path: Path) -> Callable[[], Path]:
    """Factory: a private copy of schemas/avro that a test may edit before loading it."""

    def make() -> Path:
        target = tmp_path / "avro"
        shutil.copytree(AVRO_DIR, target)
        return target

    return make
