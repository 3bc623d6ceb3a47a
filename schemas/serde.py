"""Avro single-object encoding of catalog contracts: ``C3 01`` + 8-byte fingerprint + body.

Serde contract in the confluent-kafka style: ``serialize(record, contract) -> bytes`` and
``deserialize(data, reader) -> (writer contract, record)``; turning domain objects into records
(``to_dict`` / ``from_dict``) stays outside. Records are fastavro records: timestamp-millis
fields as aware datetimes, and a union holding several records (a channel event's payload) in
fastavro tuple notation ``(full record name, fields)``, which is also how it is read back.

Speed: each contract also gets a reader and a writer generated as straight-line Python
(`schemas.codegen`), about twice as fast as fastavro's generic walk.
They accept only what they are sure of (exact types, one-block arrays they wrote
themselves, known union branches) and decline anything else by raising; fastavro then
handles that value, so results, bytes and errors are fastavro's in every case.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.catalog import Contract, SchemaCatalog
from schemas.codegen import DECLINED, Decoder, Encoder, compile_decoder, compile_encoder
from schemas.compat import check_backward
from schemas.errors import (
    MalformedPayload,
    RecordNotSerializable,
    SchemaMismatch,
    SerdeError,
    UnknownContract,
    UnknownFingerprint,
)

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
        self._encoders: dict[int, tuple[Any, Encoder | None]] = {}
        self._decoders: dict[int, tuple[Any, Decoder | None]] = {}

    def serialize(self, record: Mapping[str, Any], contract: Contract) -> bytes:
        """Encode ``record`` with ``contract`` as writer; RecordNotSerializable when it misfits."""
        entry = self._encoders.get(id(contract.schema))
        if entry is None or entry[0] is not contract.schema:
            entry = (contract.schema, compile_encoder(contract.schema, contract.named_schemas))
            self._encoders[id(contract.schema)] = entry
        encoder = entry[1]
        if encoder is not None:
            fast = bytearray(MAGIC)
            fast += contract.fingerprint
            try:
                encoder(record, fast)
            except DECLINED:
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
            entry = (writer.schema, compile_decoder(writer.schema, writer.named_schemas))
            self._decoders[id(writer.schema)] = entry
        decoder = entry[1]
        if decoder is None:
            return None
        try:
            record, end = decoder(data if type(data) is bytes else bytes(data), HEADER_SIZE)
        except DECLINED:
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
