"""Straight-line Python readers and writers generated from a contract's parsed schema.

A decoder is `decode(data, position) -> (record, end)`, an encoder `encode(record, out)`
appending to a bytearray; `compile_decoder` / `compile_encoder` build them once per
contract (`schemas.serde.AvroSerde` caches them). They are about twice as fast as
fastavro's generic walk because each is the schema's own code: no per-value dispatch.
They raise (one of `DECLINED`) on anything they are not sure of: a schema feature they do
not generate, truncated data, bad UTF-8, a missing field, a wrong type, an unknown symbol,
an out-of-range number. The serde then lets fastavro handle that value, so results, bytes
and errors are fastavro's in every case and the codecs' only effect is speed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from itertools import count
from typing import Any, Final

from schemas.varint import EPOCH, millis_since_epoch, read_varint_tail, zigzag_varint

Decoder = Callable[[bytes, int], tuple[Any, int]]  # (data, position) -> (record, end)
Encoder = Callable[[Any, bytearray], None]  # (record, out): appends the record's bytes


class _Declined(Exception):
    """The generated codec does not take this schema or value; fastavro will."""


# What a generated codec raises on a value it declines (truncated data, bad UTF-8, a
# missing field, a wrong type, an unknown symbol, an out-of-range number).
DECLINED: Final = (_Declined, LookupError, TypeError, AttributeError, ValueError, OverflowError)
_PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes",
                                "string"})  # fmt: skip
_MAX_BRANCHES: Final = 64  # union indexes and enum symbols that fit one varint byte


def _long_tail(data: bytes, position: int, first: int) -> tuple[int, int]:
    """(value, next position) of a zigzag varint whose first byte `first` had more to come."""
    value, position = read_varint_tail(data, position, first)
    return (value >> 1) ^ -(value & 1), position


_varint: Final = zigzag_varint
_SMALL_VARINTS: Final = tuple(_varint(n) for n in range(8192))  # lengths: two bytes at most


def _zigzag(number: int) -> bytes:
    if 0 <= number < 8192:
        return _SMALL_VARINTS[number]
    return _varint(number)


_MILLIS: dict[datetime, bytes] = {}  # aware instant -> its timestamp-millis varint
_MILLIS_CACHED: Final = 4096


def _timestamp_millis(value: datetime) -> bytes:
    """The varint fastavro writes for an aware datetime (its prepare_timestamp_millis)."""
    encoded = _MILLIS.get(value)
    if encoded is not None:
        return encoded
    encoded = _varint(millis_since_epoch(value))
    if len(_MILLIS) >= _MILLIS_CACHED:  # events of a batch share instants; keep it small
        _MILLIS.clear()
    _MILLIS[value] = encoded
    return encoded


class _Generator:
    """Source lines of one generated function, with the constants they refer to."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._ids = count()
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}

    def var(self, prefix: str = "v") -> str:
        return f"{prefix}{next(self._ids)}"

    def constant(self, value: Any) -> str:
        name = f"K{next(self._ids)}"
        self.constants[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def resolve(self, schema: Any) -> Any:
        """A named type's definition for a reference to it; other schemas as they are."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in self._named:
                raise _Declined
            return self._named[schema]
        return schema

    @staticmethod
    def kind(schema: Any) -> tuple[str, str | None]:
        """(type, logical type) of a resolved non-union schema."""
        if isinstance(schema, str):
            return schema, None
        kind = schema["type"]
        if not isinstance(kind, str):
            raise _Declined
        return kind, schema.get("logicalType")

    def function(self, name: str, signature: str, builtins: dict[str, Any]) -> Any:
        source = f"def {name}({signature}):\n" + "\n".join(self.lines) + "\n"
        namespace = {**builtins, **self.constants}
        # Generated from a catalog schema only (names and symbols are embedded with repr).
        exec(compile(source, f"<avro {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]


class _DecoderGenerator(_Generator):
    """Emits code reading one value of a schema from `b` at `p` into a variable."""

    def long(self, depth: int, target: str) -> None:
        self.emit(depth, "x = b[p]; p += 1")
        self.emit(depth, f"if x < 128: {target} = (x >> 1) ^ -(x & 1)")
        self.emit(depth, f"else: {target}, p = long_tail(b, p, x)")

    def value(self, depth: int, schema: Any, target: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.union(depth, schema, target)
            return
        kind, logical = self.kind(schema)
        if logical is not None and (kind, logical) != ("long", "timestamp-millis"):
            raise _Declined
        if kind == "null":
            self.emit(depth, f"{target} = None")
        elif kind in ("int", "long"):
            self.long(depth, target)
            if logical is not None:  # fastavro's own arithmetic: epoch + milliseconds
                self.emit(depth, f"{target} = EPOCH + timedelta(0, 0, 0, {target})")
            elif kind == "int":
                self.emit(depth, f"if not -2147483648 <= {target} <= 2147483647: raise Declined")
        elif kind == "boolean":
            self.emit(depth, f"{target} = b[p]; p += 1")
            self.emit(depth, f"if {target} > 1: raise Declined")
            self.emit(depth, f"{target} = {target} == 1")
        elif kind in ("string", "bytes"):
            self.emit(depth, "x = b[p]")
            self.emit(depth, "if x & 1: raise Declined")
            self.emit(depth, "if x < 128: e = p + 1 + (x >> 1); p += 1")
            self.emit(depth, "else: e, p = long_tail(b, p + 1, x); e += p")
            self.emit(depth, "if e > end: raise Declined")
            decode = ".decode()" if kind == "string" else ""
            self.emit(depth, f"{target} = b[p:e]{decode}; p = e")
        elif kind == "enum":
            self.enum(depth, schema["symbols"], target)
        elif kind == "record":
            values = []
            for field in schema["fields"]:
                variable = self.var()
                self.value(depth, field["type"], variable)
                values.append(f"{field['name']!r}: {variable}")
            self.emit(depth, f"{target} = {{{', '.join(values)}}}")
        elif kind in ("array", "map"):
            self.repeated(depth, schema, kind, target)
        else:
            raise _Declined

    def enum(self, depth: int, symbols: list[str], target: str) -> None:
        if len(symbols) > _MAX_BRANCHES:
            raise _Declined
        by_byte: list[str | None] = [None] * 256
        for index, symbol in enumerate(symbols):
            by_byte[index << 1] = symbol
        table = self.constant(tuple(by_byte))
        self.emit(depth, f"{target} = {table}[b[p]]; p += 1")
        self.emit(depth, f"if {target} is None: raise Declined")

    def repeated(self, depth: int, schema: Any, kind: str, target: str) -> None:
        count_, key, item = self.var("c"), self.var(), self.var()
        self.emit(depth, f"{target} = {'[]' if kind == 'array' else '{}'}")
        self.long(depth, count_)
        self.emit(depth, f"while {count_}:")
        self.emit(depth + 1, f"if {count_} < 0: raise Declined")
        self.emit(depth + 1, f"for _ in range({count_}):")
        if kind == "array":
            self.value(depth + 2, schema["items"], item)
            self.emit(depth + 2, f"{target}.append({item})")
        else:
            self.value(depth + 2, "string", key)
            self.value(depth + 2, schema["values"], item)
            self.emit(depth + 2, f"{target}[{key}] = {item}")
        self.long(depth + 1, count_)

    def union(self, depth: int, branches: list[Any], target: str) -> None:
        resolved = [self.resolve(branch) for branch in branches]
        records = [b for b in resolved if self.kind(b)[0] == "record"]
        for original, branch in zip(branches, resolved, strict=True):
            referenced = isinstance(original, str) and original not in _PRIMITIVES
            if referenced and self.kind(branch)[0] != "enum":
                raise _Declined  # fastavro names referenced records in its own way
        if len(resolved) > _MAX_BRANCHES:
            raise _Declined
        self.emit(depth, "x = b[p]; p += 1")
        for index, branch in enumerate(resolved):
            self.emit(depth, f"{'if' if index == 0 else 'elif'} x == {index << 1}:")
            self.value(depth + 1, branch, target)
            if len(records) > 1 and self.kind(branch)[0] == "record":
                self.emit(depth + 1, f"{target} = ({branch['name']!r}, {target})")
        self.emit(depth, "else: raise Declined")


class _EncoderGenerator(_Generator):
    """Emits code appending the encoding of the value in a variable to `out`."""

    def long(self, depth: int, source: str) -> None:
        self.emit(depth, f"if 0 <= {source} < 64: out.append({source} << 1)")
        self.emit(depth, f"else: out += zigzag({source})")

    def value(self, depth: int, schema: Any, source: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.union(depth, schema, source)
            return
        kind, logical = self.kind(schema)
        if logical is not None and (kind, logical) != ("long", "timestamp-millis"):
            raise _Declined
        if kind == "null":
            self.emit(depth, f"if {source} is not None: raise Declined")
        elif logical is not None:  # aware datetimes only
            self.emit(depth, f"out += timestamp_millis({source})")
        elif kind in ("int", "long"):
            self.emit(depth, f"if type({source}) is not int: raise Declined")
            if kind == "int":
                self.emit(depth, f"if not -2147483648 <= {source} <= 2147483647: raise Declined")
            self.long(depth, source)
        elif kind == "boolean":
            self.emit(depth, f"if type({source}) is not bool: raise Declined")
            self.emit(depth, f"out.append(1 if {source} else 0)")
        elif kind == "string":
            encoded = self.var("e")
            self.emit(depth, f"if not isinstance({source}, str): raise Declined")
            self.emit(depth, f"{encoded} = {source}.encode()")
            self.long(depth, f"len({encoded})")
            self.emit(depth, f"out += {encoded}")
        elif kind == "bytes":
            self.emit(depth, f"if type({source}) is not bytes: raise Declined")
            self.long(depth, f"len({source})")
            self.emit(depth, f"out += {source}")
        elif kind == "enum":
            if len(schema["symbols"]) > _MAX_BRANCHES:
                raise _Declined
            index = self.constant({s: i << 1 for i, s in enumerate(schema["symbols"])})
            self.emit(depth, f"if not isinstance({source}, str): raise Declined")
            self.emit(depth, f"out.append({index}[{source}])")
        elif kind == "record":
            self.emit(
                depth, f"if type({source}) is not dict or '-type' in {source}: raise Declined"
            )
            for field in schema["fields"]:
                variable = self.var()
                self.emit(depth, f"{variable} = {source}[{field['name']!r}]")
                self.value(depth, field["type"], variable)
        elif kind in ("array", "map"):
            self.repeated(depth, schema, kind, source)
        else:
            raise _Declined

    def repeated(self, depth: int, schema: Any, kind: str, source: str) -> None:
        key, item = self.var(), self.var()
        self.emit(depth, f"if type({source}) is not {'list' if kind == 'array' else 'dict'}:")
        self.emit(depth + 1, "raise Declined")
        self.emit(depth, f"if {source}:")
        self.long(depth + 1, f"len({source})")
        if kind == "array":
            self.emit(depth + 1, f"for {item} in {source}:")
            self.value(depth + 2, schema["items"], item)
        else:
            self.emit(depth + 1, f"for {key}, {item} in {source}.items():")
            self.value(depth + 2, "string", key)
            self.value(depth + 2, schema["values"], item)
        self.emit(depth, "out.append(0)")

    def union(self, depth: int, branches: list[Any], source: str) -> None:
        """fastavro's choice: None to null, `(name, record)` to the record of that full
        name, a dict to the only record branch, anything else to the only other branch."""
        resolved = [self.resolve(branch) for branch in branches]
        kinds = [self.kind(branch)[0] for branch in resolved]
        records = {b["name"]: i for i, b in enumerate(resolved) if kinds[i] == "record"}
        others = [i for i, kind in enumerate(kinds) if kind not in ("record", "null")]
        if len(resolved) > _MAX_BRANCHES or len(others) > 1 or kinds.count("null") > 1:
            raise _Declined
        if records and others:
            raise _Declined
        keyword = "if"
        if "null" in kinds:
            self.emit(depth, f"if {source} is None: out.append({kinds.index('null') << 1})")
            keyword = "elif"
        if records:
            name, body = self.var("n"), self.var()
            self.emit(depth, f"{keyword} type({source}) is tuple:")
            self.emit(depth + 1, f"{name}, {body} = {source}")
            for record_name, index in records.items():
                self.emit(depth + 1, f"if {name} == {record_name!r}:")
                self.emit(depth + 2, f"out.append({index << 1})")
                self.value(depth + 2, resolved[index], body)
            known = " and ".join(f"{name} != {record_name!r}" for record_name in records)
            self.emit(depth + 1, f"if {known}: raise Declined")
            if len(records) == 1:
                (index,) = records.values()
                self.emit(depth, f"elif type({source}) is dict:")
                self.emit(depth + 1, f"out.append({index << 1})")
                self.value(depth + 1, resolved[index], source)
            self.emit(depth, "else: raise Declined")
        elif others:
            (index,) = others
            self.emit(depth, "else:" if keyword == "elif" else "if True:")
            self.emit(depth + 1, f"out.append({index << 1})")
            self.value(depth + 1, resolved[index], source)
        else:
            self.emit(depth, "else: raise Declined")


def compile_decoder(schema: Any, named: Mapping[str, Any]) -> Decoder | None:
    """The generated reader of `schema`, or None when it uses something we leave to fastavro."""
    generator = _DecoderGenerator(named)
    try:
        generator.emit(1, "end = len(b)")
        generator.value(1, schema, "record")
    except _Declined:
        return None
    generator.emit(1, "return record, p")
    builtins = {"Declined": _Declined, "long_tail": _long_tail, "EPOCH": EPOCH,
                "timedelta": timedelta}  # fmt: skip
    decoder: Decoder = generator.function("decode", "b, p", builtins)
    return decoder


def compile_encoder(schema: Any, named: Mapping[str, Any]) -> Encoder | None:
    """The generated writer of `schema`, or None when it uses something we leave to fastavro."""
    generator = _EncoderGenerator(named)
    try:
        generator.value(1, schema, "record")
    except _Declined:
        return None
    builtins = {"Declined": _Declined, "zigzag": _zigzag, "timestamp_millis": _timestamp_millis}
    encoder: Encoder = generator.function("encode", "record, out", builtins)
    return encoder
