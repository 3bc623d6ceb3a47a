"""Every GDPR decision is a function in processors/; streams/ loads facts and stores results.

Checked two ways: each function the architecture's rule table names exists, and the
shapes the decisions had when they lived in streams/ (retention precedence written as SQL,
controller inference, merge implementations of their own) are gone from it."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_REFERENCE = re.compile(r"`(processors\.[a-z_]+)(?:\.([A-Za-z_]+))?`")
_BARE = re.compile(r"`([a-z_]+)`")
# names the decisions had in streams/ before they moved to processors/
_RETIRED = {
    "_covered", "_active_hold_covers",  # hold precedence as SQL (ledger/retention.py)
    "is_full", "state_applies",  # when a state applies (privacy/execution.py)
    "merge_subjects", "_merge", "_readmit_erased", "_Plan",  # three merge implementations
}  # fmt: skip


def _rule_table() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Where each rule of the privacy notice is decided", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_every_function_the_rule_table_names_exists_in_processors() -> None:
    rows = _rule_table()[1:]  # past the header
    assert len(rows) >= 15
    missing = []
    for row in rows:
        decided_by = row.split("|")[2]
        module = None
        for reference in re.finditer(r"`([^`]+)`", decided_by):
            name = reference.group(1)
            if name.startswith("processors."):
                parts = name.split(".")
                module = importlib.import_module(".".join(parts[:2]))
                if len(parts) == 3 and not hasattr(module, parts[2]):
                    missing.append(name)
            elif module is not None and _BARE.fullmatch(f"`{name}`") and not hasattr(module, name):
                missing.append(f"{module.__name__}.{name}")  # a bare name: the last module's
    assert missing == []


def _offenders(source: str, where: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in _RETIRED:
            found.append(f"{where}: {node.name}")
        if isinstance(node, ast.Set) and any(
            isinstance(e, ast.Constant) and e.value in {"ORES", "COMNEXIO"} for e in node.elts
        ):  # a controller chosen in code: processors.request_scope infers, nothing else
            found.append(f"{where}:{node.lineno}: controller set literal")
    return found


def test_streams_keeps_no_decision_of_its_own() -> None:
    found = [
        offence
        for path in (ROOT / "streams").rglob("*.py")
        if "migrations" not in path.parts
        for offence in _offenders(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_the_check_sees_a_retired_decision_and_an_inferred_controller() -> None:
    source = "def is_full(r, c):\n    return {'ORES'} <= c\n"
    assert _offenders(source, "x.py") == ["x.py: is_full", "x.py:2: controller set literal"]
