"""No import cycle between the modules of schemas/, counting imports made only for type
checking: a circle there still ties the modules together for a reader and for mypy."""

from __future__ import annotations

import ast
from pathlib import Path

import schemas

PACKAGE = Path(schemas.__file__).resolve().parent


def import_graph(package: Path, name: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text (under
    TYPE_CHECKING too). `from <name> import x` counts as an import of the module `x` when
    there is one, else of the package itself."""
    modules = {path.stem for path in package.glob("*.py")} - {"__init__"}

    def module_of(dotted: str) -> str | None:
        parts = dotted.split(".")
        if parts[0] != name:
            return None
        return f"{name}.{parts[1]}" if len(parts) > 1 else name

    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        me = name if path.stem == "__init__" else f"{name}.{path.stem}"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(m for alias in node.names if (m := module_of(alias.name)))
            elif isinstance(node, ast.ImportFrom):
                base = name if node.level else (node.module or "")
                if node.level and node.module:
                    base = f"{name}.{node.module}"
                target = module_of(base)
                if target == name:  # `from schemas import x`: the module x, if it is one
                    edges.update(
                        f"{name}.{alias.name}" if alias.name in modules else name
                        for alias in node.names
                    )
                elif target is not None:
                    edges.add(target)
        graph[me] = edges - {me}
    return graph


def modules_in_cycles(graph: dict[str, set[str]]) -> set[str]:
    """Every module from which its own imports lead back to it."""

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(graph.get(start, ()))
        while stack:
            module = stack.pop()
            if module not in seen:
                seen.add(module)
                stack.extend(graph.get(module, ()))
        return seen

    return {module for module in graph if module in reachable(module)}


def test_schemas_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE, "schemas")
    assert "schemas.catalog" in graph  # the walk found the package's modules
    assert modules_in_cycles(graph) == set()


def test_the_check_sees_a_cycle_made_for_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
    )
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg.a import A\n")
    graph = import_graph(package, "pkg")
    assert modules_in_cycles(graph) == {"pkg.a", "pkg.b", "pkg.c"}
