"""Where an event's personal-data strings sit in its Avro bytes, without decoding it again.

`SpanFinder(contract)` walks single-object encoded bytes of one contract with code
generated from its schema, and returns the byte span of every string at one of its
`pii_fields` paths (the same paths, in the same notation, as `processors.pii`), in byte
order. Cutting the event at those spans and writing an encrypted value (its length, then
its bytes) into each gap gives exactly what re-encoding the decoded record with encrypted
fields would give, because Avro writes a string as its length and bytes wherever it sits.

That holds only for bytes in canonical form, as Avro writers produce them: minimal
varints, arrays and maps in one block, booleans 0 or 1. The walker checks every one of
those and returns None otherwise (or for a schema it does not know how to walk), and the
caller then re-encodes the record instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from itertools import count
from typing import Any, Final

from schemas.catalog import Contract
from schemas.varint import VarintError, read_varint_tail

Spans = list[tuple[int, int, int, str]]  # (start of the length, of the bytes, end, PII path)
_Walker = Callable[[bytes, int], tuple[Spans, int]]
_HEADER: Final = 10
_PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes",
                                "string"})  # fmt: skip


class _Unsure(Exception):
    """Bytes or a schema the walker does not vouch for: re-encode instead."""


def _varint(data: bytes, position: int, first: int) -> tuple[int, int]:
    """(unsigned value, next position) of a minimal varint whose first byte `first` continued."""
    try:
        return read_varint_tail(data, position, first, canonical=True)
    except VarintError:
        raise _Unsure from None


class SpanFinder:
    """The PII string spans of one contract's encoded events (see the module docstring)."""

    def __init__(self, contract: Contract) -> None:
        self._walk: _Walker | None
        try:
            self._walk = _compile(contract.schema, contract.named_schemas, contract.pii_fields)
        except _Unsure:
            self._walk = None

    def spans(self, data: bytes) -> Spans | None:
        if self._walk is None:
            return None
        try:
            found, end = self._walk(data, _HEADER)
        except (_Unsure, IndexError):
            return None
        return found if end == len(data) else None


class _Generator:
    def __init__(self, named: Any, pii: Collection[str]) -> None:
        self._named = named
        self._pii = frozenset(pii)
        self._ids = count()
        self.lines: list[str] = []

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def var(self) -> str:
        return f"v{next(self._ids)}"

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in self._named:
                raise _Unsure
            return self._named[schema]
        return schema

    @staticmethod
    def kind(schema: Any) -> str:
        if isinstance(schema, str):
            return schema
        kind = schema["type"]
        if not isinstance(kind, str):
            raise _Unsure
        return kind

    def unsigned(self, depth: int, target: str) -> None:
        """Read a varint into `target` (still zigzag-encoded)."""
        self.emit(depth, f"{target} = b[p]; p += 1")
        self.emit(depth, f"if {target} > 127: {target}, p = varint(b, p, {target})")

    def value(self, depth: int, schema: Any, path: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.union(depth, schema, path)
            return
        kind = self.kind(schema)
        if kind == "null":
            return
        if kind in ("int", "long"):
            value = self.var()
            self.unsigned(depth, value)
            if kind == "int":
                self.emit(depth, f"if {value} > 0xFFFFFFFF: raise Unsure")
        elif kind == "boolean":
            self.emit(depth, "if b[p] > 1: raise Unsure")
            self.emit(depth, "p += 1")
        elif kind in ("string", "bytes"):
            size, start = self.var(), self.var()
            self.emit(depth, f"{start} = p")
            self.unsigned(depth, size)
            self.emit(depth, f"if {size} & 1: raise Unsure")
            if kind == "string" and path in self._pii:
                self.emit(depth, f"found.append(({start}, p, p + ({size} >> 1), {path!r}))")
            self.emit(depth, f"p += {size} >> 1")
            self.emit(depth, "if p > end: raise Unsure")
        elif kind == "enum":
            if path in self._pii:
                raise _Unsure  # rewrite_pii would rewrite the symbol: leave it to re-encoding
            index = self.var()
            self.unsigned(depth, index)
            self.emit(depth, f"if {index} & 1 or {index} >= {2 * len(schema['symbols'])}:")
            self.emit(depth + 1, "raise Unsure")
        elif kind == "record":
            for field in schema["fields"]:
                self.value(
                    depth, field["type"], f"{path}.{field['name']}" if path else field["name"]
                )
        elif kind in ("array", "map"):
            self.repeated(depth, schema, kind, path)
        else:
            raise _Unsure

    def repeated(self, depth: int, schema: Any, kind: str, path: str) -> None:
        if kind == "map" and any(p.startswith(f"{path}.") or p == path for p in self._pii):
            raise _Unsure  # processors.pii has no notation for map values
        items = self.var()
        self.unsigned(depth, items)
        self.emit(depth, f"if {items} & 1: raise Unsure")
        self.emit(depth, f"if {items}:")
        self.emit(depth + 1, f"for _ in range({items} >> 1):")
        if kind == "array":
            self.value(depth + 2, schema["items"], f"{path}[]")
        else:
            self.value(depth + 2, "string", "")
            self.value(depth + 2, schema["values"], "")
        self.emit(depth + 1, "if b[p] != 0: raise Unsure")  # one block, then the end marker
        self.emit(depth + 1, "p += 1")

    def union(self, depth: int, branches: list[Any], path: str) -> None:
        if any(
            isinstance(b, str) and b not in _PRIMITIVES and self.kind(self.resolve(b)) != "enum"
            for b in branches
        ):  # an enum referenced by name is its index whatever its name; other types vary
            raise _Unsure  # how a referenced record decodes in a union varies: leave it
        resolved = [self.resolve(branch) for branch in branches]
        records = [b for b in resolved if self.kind(b) == "record"]
        index = self.var()
        self.unsigned(depth, index)
        for position, branch in enumerate(resolved):
            self.emit(depth, f"{'if' if position == 0 else 'elif'} {index} == {2 * position}:")
            self.emit(depth + 1, "pass")
            branch_path = path
            if len(records) > 1 and self.kind(branch) == "record":  # decoded as (name, record)
                branch_path = f"{path}[{branch['name'].rsplit('.', 1)[-1]}]"
            self.value(depth + 1, branch, branch_path)
        self.emit(depth, "else: raise Unsure")


def _compile(schema: Any, named: Any, pii: Collection[str]) -> _Walker:
    generator = _Generator(named, pii)
    generator.emit(1, "end = len(b)")
    generator.emit(1, "found = []")
    generator.value(1, schema, "")
    generator.emit(1, "return found, p")
    source = "def walk(b, p):\n" + "\n".join(generator.lines) + "\n"
    namespace: dict[str, Any] = {"Unsure": _Unsure, "varint": _varint}
    # Generated from a catalog schema only (field paths are embedded with repr).
    exec(compile(source, "<pii span walker>", "exec"), namespace)  # noqa: S102
    walker: _Walker = namespace["walk"]
    return walker
