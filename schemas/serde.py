"""Avro single-object encoding of catalog contracts: ``C3 01`` + 8-byte fingerprint + body.

Serde contract in the confluent-kafka style: ``serialize(record, contract) -> bytes`` and
``deserialize(data, reader) -> (writer contract, record)``; turning domain objects into records
(``to_dict`` / ``from_dict``) stays outside. Records are fastavro records: timestamp-millis
fields as aware datetimes, and a union holding several records (a channel event's payload) in
fastavro tuple notation ``(full record name, fields)``, which is also how it is read back.

Speed: each contract also gets a reader and a writer generated as straight-line Python
(`_compile_decoder`, `_compile_encoder`), about twice as fast as fastavro's generic walk.
They accept only what they are sure of (exact types, one-block arrays they wrote
themselves, known union branches) and decline anything else by raising; fastavro then
handles that value, so results, bytes and errors are fastavro's in every case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from io import BytesIO
from itertools import count
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.catalog import Contract, SchemaCatalog
from schemas.compat import check_backward
from schemas.errors import (
    MalformedPayload,
    RecordNotSerializable,
    SchemaMismatch,
    SerdeError,
    UnknownContract,
    UnknownFingerprint,
)
from schemas.varint import EPOCH, millis_since_epoch, read_varint_tail, zigzag_varint

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "AvroSerde",
    "MalformedPayload",
    "RecordNotSerializable",
    "SchemaMismatch",
    "SerdeError",
    "UnknownFingerprint",
]

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = len(MAGIC) + 8

# What fastavro raises on truncated or corrupt bodies; UnicodeDecodeError is a ValueError.
_DECODE_ERRORS: Final = (EOFError, IndexError, ValueError, OverflowError, KeyError)
# What fastavro raises on a record that does not fit the schema.
_ENCODE_ERRORS: Final = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


def header(contract: Contract) -> bytes:
    """The 10-byte single-object header announcing ``contract`` as the writer."""
    return MAGIC + contract.fingerprint


def writer_fingerprint(data: bytes | bytearray | memoryview) -> bytes:
    """The writer fingerprint of single-object encoded ``data``; MalformedPayload if no header."""
    if len(data) < HEADER_SIZE:
        raise MalformedPayload(f"payload is {len(data)} bytes, shorter than the 10-byte header")
    if data[0:2] != MAGIC:
        raise MalformedPayload("payload does not start with the Avro single-object marker C3 01")
    return bytes(data[2:HEADER_SIZE])


class AvroSerde:
    """Serializes records of catalog contracts and reads them back, with schema resolution.

    Built once per process: the writer lookup and reader/writer compatibility verdicts are
    cached, schemas are parsed once by the catalog, nothing is parsed per call.
    """

    __slots__ = (
        "_catalog",
        "_decoders",
        "_encoders",
        "_readers",
        "_resolutions",
        "_writers",
    )

    def __init__(self, catalog: SchemaCatalog) -> None:
        self._catalog = catalog
        self._writers: dict[bytes, Contract] = {c.fingerprint: c for c in catalog.contracts()}
        self._readers: dict[str, Contract] = {}
        self._resolutions: dict[tuple[bytes, bytes], str | None] = {}
        # id(contract.schema) -> (that schema, its generated codec or None if it has none)
        self._encoders: dict[int, tuple[Any, _Encoder | None]] = {}
        self._decoders: dict[int, tuple[Any, _Decoder | None]] = {}

    def serialize(self, record: Mapping[str, Any], contract: Contract) -> bytes:
        """Encode ``record`` with ``contract`` as writer; RecordNotSerializable when it misfits."""
        entry = self._encoders.get(id(contract.schema))
        if entry is None or entry[0] is not contract.schema:
            entry = (contract.schema, _compile_encoder(contract.schema, contract.named_schemas))
            self._encoders[id(contract.schema)] = entry
        encoder = entry[1]
        if encoder is not None:
            fast = bytearray(MAGIC)
            fast += contract.fingerprint
            try:
                encoder(record, fast)
            except _DECLINED:
                pass  # not a value the generated writer is sure of: fastavro decides below
            else:
                return bytes(fast)
        out = BytesIO()
        out.write(MAGIC)
        out.write(contract.fingerprint)
        try:
            schemaless_writer(out, contract.schema, record)
        except _ENCODE_ERRORS as error:
            # fastavro's message can quote the value: keep only the exception type.
            raise RecordNotSerializable(
                f"record does not fit {contract.label} ({type(error).__name__}); "
                "schemas.validation.validate() names the field paths"
            ) from None
        return out.getvalue()

    def deserialize(
        self, data: bytes | bytearray | memoryview, reader: Contract | str | None = None
    ) -> tuple[Contract, dict[str, Any]]:
        """Decode ``data`` and return (writer contract, record).

        The writer comes from the fingerprint. With ``reader`` (a contract, or a name meaning
        its latest version) the record is resolved to the reader's shape, e.g. v1 bytes read
        with v2 get v2's defaults. Raises MalformedPayload, UnknownFingerprint, SchemaMismatch.
        """
        fingerprint = writer_fingerprint(data)
        writer = self._writers.get(fingerprint)
        if writer is None:
            raise UnknownFingerprint(f"no contract version has fingerprint {fingerprint.hex()}")
        reader_schema = self._reader_schema(writer, reader)
        if reader_schema is None:
            decoded = self._decode_fast(writer, data)
            if decoded is not None:
                return writer, decoded
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(
                body,
                writer.schema,
                reader_schema,
                return_record_name=True,
                return_record_name_override=True,
            )
        except SchemaResolutionError:
            raise SchemaMismatch(f"cannot resolve data written with {writer.label}") from None
        except _DECODE_ERRORS as error:
            raise MalformedPayload(
                f"truncated or corrupt {writer.label} body ({type(error).__name__})"
            ) from None
        if body.tell() != len(data):
            raise MalformedPayload(f"{len(data) - body.tell()} trailing bytes after the body")
        if not isinstance(record, dict):
            raise MalformedPayload(f"{writer.label} body is not a record")
        return writer, record

    def _decode_fast(
        self, writer: Contract, data: bytes | bytearray | memoryview
    ) -> dict[str, Any] | None:
        """The record by the generated reader, or None to let fastavro read (and judge) it."""
        entry = self._decoders.get(id(writer.schema))
        if entry is None or entry[0] is not writer.schema:
            entry = (writer.schema, _compile_decoder(writer.schema, writer.named_schemas))
            self._decoders[id(writer.schema)] = entry
        decoder = entry[1]
        if decoder is None:
            return None
        try:
            record, end = decoder(data if type(data) is bytes else bytes(data), HEADER_SIZE)
        except _DECLINED:
            return None
        if end != len(data) or not isinstance(record, dict):
            return None
        return record

    def _reader_schema(self, writer: Contract, reader: Contract | str | None) -> Any:
        if reader is None:
            return None
        if isinstance(reader, str):
            reader = self._latest(reader)
        if reader.fingerprint == writer.fingerprint:
            return None
        key = (writer.fingerprint, reader.fingerprint)
        if key not in self._resolutions:
            problems = check_backward(reader.schema, writer.schema)
            self._resolutions[key] = "; ".join(str(p) for p in problems[:5]) or None
        verdict = self._resolutions[key]
        if verdict is not None:
            raise SchemaMismatch(f"{reader.label} cannot read {writer.label}: {verdict}")
        return reader.schema

    def _latest(self, name: str) -> Contract:
        contract = self._readers.get(name)
        if contract is None:
            try:
                contract = self._catalog.latest(name)
            except UnknownContract as error:
                raise SchemaMismatch(f"unknown reader contract: {error}") from None
            self._readers[name] = contract
        return contract


# -- generated codecs -------------------------------------------------------------------------
#
# A decoder is `decode(data, position) -> (record, end)`, an encoder `encode(record, out)`
# appending to a bytearray. Both are compiled once per contract from its parsed schema.
# They raise (Declined, or whatever a wrong value triggers) on anything they are not sure
# of, and the caller falls back to fastavro, so their only effect is speed.

_Decoder = Callable[[bytes, int], tuple[Any, int]]
_Encoder = Callable[[Any, bytearray], None]


class _Declined(Exception):
    """The generated codec does not take this schema or value; fastavro will."""


# What a generated codec raises on a value it declines (truncated data, bad UTF-8, a
# missing field, a wrong type, an unknown symbol, an out-of-range number).
_DECLINED: Final = (_Declined, LookupError, TypeError, AttributeError, ValueError, OverflowError)
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


def _compile_decoder(schema: Any, named: Mapping[str, Any]) -> _Decoder | None:
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
    decoder: _Decoder = generator.function("decode", "b, p", builtins)
    return decoder


def _compile_encoder(schema: Any, named: Mapping[str, Any]) -> _Encoder | None:
    """The generated writer of `schema`, or None when it uses something we leave to fastavro."""
    generator = _EncoderGenerator(named)
    try:
        generator.value(1, schema, "record")
    except _Declined:
        return None
    builtins = {"Declined": _Declined, "zigzag": _zigzag, "timestamp_millis": _timestamp_millis}
    encoder: _Encoder = generator.function("encode", "record, out", builtins)
    return encoder
