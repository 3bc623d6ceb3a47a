"""BACKWARD compatibility of Avro schemas, as schema registries define it.

The new schema is the reader and must read every datum written with the previous one (the
writer), following the Avro schema-resolution rules: primitive promotions, records matched by
name or alias, a reader field absent from the writer needs a default, enum symbols of the
writer kept unless the reader enum has a default, fixed sizes equal, and every writer union
branch readable by the reader. Logical types do not change the wire type and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

from schemas import _avro

if TYPE_CHECKING:
    from schemas.catalog import SchemaCatalog

__all__ = ["Incompatibility", "VersionIncompatibility", "check_backward", "check_catalog"]

_PROMOTIONS: Final[Mapping[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(frozen=True)
class Incompatibility:
    """Why data at ``path`` (notation of ``schemas._avro``) cannot be read by the new schema."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '<record>'}: {self.reason}"


@dataclass(frozen=True)
class VersionIncompatibility:
    """An incompatibility between version ``version`` of contract ``name`` and ``previous``."""

    name: str
    version: int
    previous: int
    path: str
    reason: str

    def __str__(self) -> str:
        where = self.path or "<record>"
        short = _avro.short_name(self.name)
        return f"{short} v{self.version} vs v{self.previous}: {where}: {self.reason}"


def _label(schema: Any) -> str:
    kind = _avro.type_of(schema)
    if kind in _avro.NAMED_TYPES:
        return f"{kind} {_avro.short_name(schema['name'])}"
    return kind


def _same_name(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    writer_short = _avro.short_name(writer["name"])
    if _avro.short_name(reader["name"]) == writer_short:
        return True
    aliases = reader.get("aliases") or ()
    return any(_avro.short_name(alias) == writer_short for alias in aliases)


class _Backward:
    """One reader/writer comparison; collects incompatibilities instead of stopping at one."""

    def __init__(self, reader_named: _avro.NamedSchemas, writer_named: _avro.NamedSchemas):
        self._reader_named = reader_named
        self._writer_named = writer_named
        self._seen: set[tuple[str, str]] = set()
        self.problems: list[Incompatibility] = []

    def _add(self, path: str, reason: str) -> None:
        self.problems.append(Incompatibility(path, reason))

    def _matches(self, reader: Any, writer: Any) -> bool:
        """Top-level match used to pick a reader union branch (Avro: first branch that matches)."""
        reader_kind, writer_kind = _avro.type_of(reader), _avro.type_of(writer)
        if writer_kind in _avro.PRIMITIVES:
            return reader_kind == writer_kind or reader_kind in _PROMOTIONS.get(writer_kind, ())
        if reader_kind != writer_kind:
            return False
        return writer_kind not in _avro.NAMED_TYPES or _same_name(reader, writer)

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = _avro.resolve(reader, self._reader_named)
        writer = _avro.resolve(writer, self._writer_named)
        reader_kind, writer_kind = _avro.type_of(reader), _avro.type_of(writer)
        if writer_kind == "union":
            for branch in writer:
                self.check(
                    reader, branch, _avro.branch_path(path, writer, branch, self._writer_named)
                )
            return
        if reader_kind == "union":
            for branch in reader:
                resolved = _avro.resolve(branch, self._reader_named)
                if self._matches(resolved, writer):
                    self.check(resolved, writer, path)
                    return
            self._add(path, f"no branch of the new union can read the old {_label(writer)}")
            return
        if not self._matches(reader, writer):
            if writer_kind == reader_kind and writer_kind in _avro.NAMED_TYPES:
                self._add(
                    path,
                    f"{writer_kind} renamed from {_avro.short_name(writer['name'])} "
                    f"to {_avro.short_name(reader['name'])} without an alias",
                )
            else:
                self._add(path, f"type changed from {_label(writer)} to {_label(reader)}")
            return
        if writer_kind == "record":
            self._check_record(reader, writer, path)
        elif writer_kind == "enum":
            removed = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if removed and "default" not in reader:
                self._add(
                    path, f"enum symbols removed without an enum default: {', '.join(removed)}"
                )
        elif writer_kind == "fixed" and reader["size"] != writer["size"]:
            self._add(path, f"fixed size changed from {writer['size']} to {reader['size']}")
        elif writer_kind == "array":
            self.check(reader["items"], writer["items"], _avro.items_path(path))
        elif writer_kind == "map":
            self.check(reader["values"], writer["values"], _avro.values_path(path))

    def _check_record(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        key = (reader["name"], writer["name"])
        if key in self._seen:
            return
        self._seen.add(key)
        writer_fields = {fld["name"]: fld for fld in writer["fields"]}
        for fld in reader["fields"]:
            names = [fld["name"], *fld.get("aliases", ())]
            source = next((writer_fields[n] for n in names if n in writer_fields), None)
            sub_path = _avro.field_path(path, fld["name"])
            if source is not None:
                self.check(fld["type"], source["type"], sub_path)
            elif "default" not in fld:
                self._add(sub_path, "field added without a default")


def check_backward(reader: Any, writer: Any) -> list[Incompatibility]:
    """Why ``reader`` (the new schema) cannot read data written with ``writer``; [] if it can.

    Both are Avro schemas in JSON form or fastavro-parsed form.
    """
    reader_schema, reader_named = _avro.parse(reader)
    writer_schema, writer_named = _avro.parse(writer)
    checker = _Backward(reader_named, writer_named)
    checker.check(reader_schema, writer_schema, "")
    return checker.problems


def check_catalog(catalog: SchemaCatalog) -> list[VersionIncompatibility]:
    """Check every contract version N>1 against N-1: BACKWARD, and no PII marking dropped."""
    found: list[VersionIncompatibility] = []
    for name in catalog.names():
        versions = catalog.versions(name)
        for previous, version in pairwise(versions):
            old, new = catalog.get(name, previous), catalog.get(name, version)
            problems = check_backward(new.schema, old.schema)
            new_paths = {p for p, _, _ in _avro.iter_fields(new.schema, new.named_schemas)}
            problems += [
                Incompatibility(p, "PII marking removed from a field that still exists")
                for p in old.pii_fields
                if p in new_paths and p not in new.pii_fields
            ]
            found += [
                VersionIncompatibility(name, version, previous, p.path, p.reason) for p in problems
            ]
    return found
