"""Finding and rewriting the personal-data fields of a decoded record.

Paths use the catalog's notation (`Contract.pii_fields`): `a.b` a record field, `a[]` the
items of an array, `a[Name]` the branch `Name` of a union (decoded records hold such a
branch as a `(full name, record)` tuple). Only string leaves are rewritten; a PII record
(such as a social handle) is reached through its own string fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Rewrite = Callable[[str, str], str]  # (path, value) -> new value
_STEP = re.compile(r"([^.\[\]]+)(\[[^\]]*\])?")


@dataclass(frozen=True, slots=True)
class _Step:
    field: str
    branch: str | None  # union branch short name, or None
    items: bool  # the field is an array whose items continue the path


Walker = Callable[[Any, Rewrite], int]  # (node, rewrite) -> values rewritten


@dataclass(frozen=True, slots=True)
class PiiPath:
    path: str
    steps: tuple[_Step, ...]
    walk: Walker = field(compare=False, repr=False)


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
        compiled.append(PiiPath(path, tuple(steps), _walker(tuple(steps), path)))
    return tuple(compiled)


def rewrite_pii(record: dict[str, Any], paths: tuple[PiiPath, ...], rewrite: Rewrite) -> int:
    """Replace, in place, every non-null string at `paths` by `rewrite(path, value)`.

    Returns how many values were rewritten.
    """
    count = 0
    for pii in paths:
        count += pii.walk(record, rewrite)
    return count


def _walker(steps: tuple[_Step, ...], path: str) -> Walker:
    """One function per step, built from the leaf up, so a record walk does no dispatch.

    At each step: a missing field, a non-record node or a null value rewrites nothing; a
    union step continues only into its own branch (and rewrites nothing if it is last).
    """
    walk: Walker | None = None
    for step in reversed(steps):
        walk = _step_walker(step, walk, path)
    assert walk is not None, "a path has at least one step"
    return walk


def _step_walker(step: _Step, then: Walker | None, path: str) -> Walker:
    name = step.field
    if step.branch is not None:
        branch = step.branch

        def into_branch(node: Any, rewrite: Rewrite) -> int:
            value = node.get(name) if isinstance(node, dict) else None
            if not (isinstance(value, tuple) and value[0].rsplit(".", 1)[-1] == branch):
                return 0
            return 0 if then is None else then(value[1], rewrite)

        return into_branch
    if step.items:
        if then is None:

            def items_leaf(node: Any, rewrite: Rewrite) -> int:
                value = node.get(name) if isinstance(node, dict) else None
                if value is None:
                    return 0
                node[name] = [rewrite(path, i) if isinstance(i, str) else i for i in value]
                return sum(isinstance(item, str) for item in value)

            return items_leaf
        follow = then

        def into_items(node: Any, rewrite: Rewrite) -> int:
            value = node.get(name) if isinstance(node, dict) else None
            if value is None:
                return 0
            return sum(follow(item, rewrite) for item in value)

        return into_items
    if then is None:

        def leaf(node: Any, rewrite: Rewrite) -> int:
            if isinstance(node, dict):
                value = node.get(name)
                if isinstance(value, str):
                    node[name] = rewrite(path, value)
                    return 1
            return 0

        return leaf
    follow = then

    def into_field(node: Any, rewrite: Rewrite) -> int:
        value = node.get(name) if isinstance(node, dict) else None
        return 0 if value is None else follow(value, rewrite)

    return into_field
