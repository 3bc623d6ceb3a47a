"""Finding and rewriting the personal-data fields of a decoded record.

Paths use the catalog's notation (`Contract.pii_fields`): `a.b` a record field, `a[]` the
items of an array, `a[Name]` the branch `Name` of a union (decoded records hold such a
branch as a `(full name, record)` tuple). Only string leaves are rewritten; a PII record
(such as a social handle) is reached through its own string fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Rewrite = Callable[[str, str], str]  # (path, value) -> new value
_STEP = re.compile(r"([^.\[\]]+)(\[[^\]]*\])?")


@dataclass(frozen=True, slots=True)
class _Step:
    field: str
    branch: str | None  # union branch short name, or None
    items: bool  # the field is an array whose items continue the path


@dataclass(frozen=True, slots=True)
class PiiPath:
    path: str
    steps: tuple[_Step, ...]


def compile_paths(paths: Iterable[str]) -> tuple[PiiPath, ...]:
    """Parse PII paths once per contract, for `rewrite_pii` on every record."""
    compiled = []
    for path in paths:
        steps = []
        for part in path.split("."):
            match = _STEP.fullmatch(part)
            if match is None:
                raise ValueError(f"malformed PII path {path!r}")
            name, bracket = match.groups()
            if bracket == "[]":
                steps.append(_Step(name, None, items=True))
            elif bracket:
                steps.append(_Step(name, bracket[1:-1], items=False))
            else:
                steps.append(_Step(name, None, items=False))
        compiled.append(PiiPath(path, tuple(steps)))
    return tuple(compiled)


def rewrite_pii(record: dict[str, Any], paths: tuple[PiiPath, ...], rewrite: Rewrite) -> int:
    """Replace, in place, every non-null string at `paths` by `rewrite(path, value)`.

    Returns how many values were rewritten.
    """
    count = 0
    for pii in paths:
        count += _walk(record, pii.steps, 0, pii.path, rewrite)
    return count


def _walk(node: Any, steps: tuple[_Step, ...], index: int, path: str, rewrite: Rewrite) -> int:
    step = steps[index]
    if not isinstance(node, dict) or step.field not in node:
        return 0
    value = node[step.field]
    if value is None:
        return 0
    if step.branch is not None:
        if not (isinstance(value, tuple) and value[0].rsplit(".", 1)[-1] == step.branch):
            return 0
        value = value[1]
        if index + 1 == len(steps):
            return 0
        return _walk(value, steps, index + 1, path, rewrite)
    if step.items:
        if index + 1 == len(steps):
            node[step.field] = [
                rewrite(path, item) if isinstance(item, str) else item for item in value
            ]
            return sum(isinstance(item, str) for item in value)
        return sum(_walk(item, steps, index + 1, path, rewrite) for item in value)
    if index + 1 == len(steps):
        if isinstance(value, str):
            node[step.field] = rewrite(path, value)
            return 1
        return 0
    return _walk(value, steps, index + 1, path, rewrite)
