"""schemas/ imports only the standard library and fastavro, so every layer can depend on it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import schemas

PACKAGE = Path(schemas.__file__).resolve().parent
ALLOWED = set(sys.stdlib_module_names) | {"fastavro", "schemas", "__future__"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_schemas_imports_only_stdlib_and_fastavro() -> None:
    offenders = {
        path.name: sorted(_imported_roots(path) - ALLOWED) for path in PACKAGE.rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_a_third_party_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import json\nfrom pydantic import BaseModel\n")
    assert _imported_roots(sample) - ALLOWED == {"pydantic"}
