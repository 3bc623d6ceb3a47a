"""Avro contracts of contactflow: catalog, single-object serde, validation, compatibility.

Imports only the standard library and fastavro, so every layer (processors, streams, tools)
can use it.
"""

from schemas.catalog import AVRO_DIR, CHANNEL_CONTRACTS, NAMESPACE, Contract, SchemaCatalog
from schemas.compat import Incompatibility, VersionIncompatibility, check_backward, check_catalog
from schemas.errors import (
    CatalogError,
    ContractLoadError,
    ContractViolation,
    MalformedPayload,
    RecordNotSerializable,
    SchemaError,
    SchemaMismatch,
    SerdeError,
    UnknownContract,
    UnknownFingerprint,
)
from schemas.serde import HEADER_SIZE, MAGIC, AvroSerde
from schemas.validation import FieldProblem, from_json, validate

__all__ = [
    "AVRO_DIR",
    "CHANNEL_CONTRACTS",
    "HEADER_SIZE",
    "MAGIC",
    "NAMESPACE",
    "AvroSerde",
    "CatalogError",
    "Contract",
    "ContractLoadError",
    "ContractViolation",
    "FieldProblem",
    "Incompatibility",
    "MalformedPayload",
    "RecordNotSerializable",
    "SchemaCatalog",
    "SchemaError",
    "SchemaMismatch",
    "SerdeError",
    "UnknownContract",
    "UnknownFingerprint",
    "VersionIncompatibility",
    "check_backward",
    "check_catalog",
    "from_json",
    "validate",
]
