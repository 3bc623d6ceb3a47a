"""Navigation over fastavro-parsed schemas and the field path notation shared by the package.

Path notation (used by pii_fields, FieldProblem and Incompatibility):
  ``a.b``        field ``b`` of record field ``a``
  ``a[]``        the items of array ``a`` (validation problems give the index: ``a[3]``)
  ``a{}``        the values of map ``a`` (keys are never shown: they could be personal data)
  ``a[Name]``    branch ``Name`` (short name, or primitive type) of a union with more than
                 one non-null branch; a ``[null, X]`` union adds nothing to the path
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import fastavro

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_TYPES: Final = frozenset({"record", "error", "enum", "fixed"})

NamedSchemas = Mapping[str, Any]


def parse(schema: Any) -> tuple[Any, dict[str, Any]]:
    """Parse an Avro schema (JSON form or already parsed); return it and its named types."""
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema, named)
    return parsed, named


def resolve(schema: Any, named: NamedSchemas) -> Any:
    """Follow a reference to a named type; other schemas are returned unchanged."""
    while isinstance(schema, str) and schema not in PRIMITIVES:
        schema = named[schema]
    return schema


def type_of(schema: Any) -> str:
    """Avro type of a resolved schema: a primitive name, record, enum, fixed, array, map, union."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    if isinstance(kind, str):
        return "record" if kind == "error" else kind
    return type_of(kind)


def logical_type(schema: Any) -> str | None:
    """The logicalType of a resolved schema, if any."""
    if isinstance(schema, dict):
        value = schema.get("logicalType")
        return value if isinstance(value, str) else None
    return None


def short_name(full_name: str) -> str:
    """``be.comnexio.contactflow.InboundCall`` -> ``InboundCall``."""
    return full_name.rsplit(".", 1)[-1]


def non_null_branches(union: list[Any]) -> list[Any]:
    """The branches of a union other than ``"null"``."""
    return [branch for branch in union if branch != "null"]


def branch_label(schema: Any, named: NamedSchemas) -> str:
    """Label of a union branch in paths: short name of a named type, else the type name."""
    resolved = resolve(schema, named)
    kind = type_of(resolved)
    return short_name(resolved["name"]) if kind in NAMED_TYPES else kind


def field_path(parent: str, name: str) -> str:
    """Path of field ``name`` inside ``parent``."""
    return f"{parent}.{name}" if parent else name


def items_path(parent: str, index: int | None = None) -> str:
    """Path of the items of an array (``a[]``), or of one item (``a[3]``)."""
    return f"{parent}[{'' if index is None else index}]"


def values_path(parent: str) -> str:
    """Path of the values of a map."""
    return f"{parent}{{}}"


def branch_path(parent: str, union: list[Any], branch: Any, named: NamedSchemas) -> str:
    """Path of a union branch: labelled only when the union has several non-null branches."""
    if len(non_null_branches(union)) > 1:
        return f"{parent}[{branch_label(branch, named)}]"
    return parent


def iter_fields(
    schema: Any, named: NamedSchemas, path: str = "", active: frozenset[str] = frozenset()
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """Yield (path, field, record) for every record field reachable from ``schema``, depth first.

    A recursive type is walked once per branch of the tree (``active`` guards the cycle).
    """
    resolved = resolve(schema, named)
    kind = type_of(resolved)
    if kind == "union":
        for branch in non_null_branches(resolved):
            sub_path = branch_path(path, resolved, branch, named)
            yield from iter_fields(branch, named, sub_path, active)
    elif kind == "record":
        name = resolved["name"]
        if name in active:
            return
        for field in resolved["fields"]:
            sub_path = field_path(path, field["name"])
            yield sub_path, field, resolved
            yield from iter_fields(field["type"], named, sub_path, active | {name})
    elif kind == "array":
        yield from iter_fields(resolved["items"], named, items_path(path), active)
    elif kind == "map":
        yield from iter_fields(resolved["values"], named, values_path(path), active)
