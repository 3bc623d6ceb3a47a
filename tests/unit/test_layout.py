"""The layout is the architecture: processors/ and schemas/ stay free of I/O frameworks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_FRAMEWORKS = {"faust", "confluent_kafka", "sqlalchemy", "opentelemetry", "aiokafka", "alembic"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["processors", "schemas"])
def test_pure_packages_import_no_io_framework(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & IO_FRAMEWORKS)
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_processors_do_not_import_streams() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "processors").rglob("*.py")
        if "streams" in _imported_roots(path)
    ]
    assert offenders == []


def test_layout_check_catches_an_offender(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom confluent_kafka import Producer\n")
    assert _imported_roots(sample) & IO_FRAMEWORKS == {"confluent_kafka"}
