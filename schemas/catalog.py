"""The catalog of versioned Avro contracts under ``schemas/avro``.

``avro/common/<Name>.avsc`` holds shared named types; ``avro/<Name>.v<N>.avsc`` holds version N
of a contract (a top-level record). Loading inlines the shared types each contract references
(first occurrence expanded, later ones by full name), so each version is one self-contained
schema whose Parsing Canonical Form gives its CRC-64-AVRO fingerprint.

Custom attributes understood by the package: ``"pii": true`` on a field holding personal data;
``"discriminator": "<field>"`` on a union field whose branch is chosen by an enum sibling and
``"kinds": [...]`` on each branch record listing the symbols it serves; ``"minimum"`` /
``"maximum"`` on numeric fields; ``"format": "uuid"`` on string fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import fastavro
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas import _avro
from schemas._rules import check_definition
from schemas.errors import ContractLoadError, UnknownContract, UnknownFingerprint

__all__ = [
    "AVRO_DIR",
    "CHANNEL_CONTRACTS",
    "NAMESPACE",
    "Contract",
    "ContractLoadError",
    "SchemaCatalog",
    "UnknownContract",
    "UnknownFingerprint",
]

NAMESPACE: Final = "be.comnexio.contactflow"
AVRO_DIR: Final = Path(__file__).resolve().parent / "avro"
CHANNEL_CONTRACTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "phone": f"{NAMESPACE}.PhoneContactEvent",
        "chat": f"{NAMESPACE}.ChatContactEvent",
        "email": f"{NAMESPACE}.EmailContactEvent",
        "survey": f"{NAMESPACE}.SurveyContactEvent",
        "social": f"{NAMESPACE}.SocialContactEvent",
    }
)
"""Channel (the Channel enum symbol, the raw topic's suffix) -> full name of its contract."""

_CONTRACT_FILE: Final = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)")


@dataclass(frozen=True, eq=False)
class Contract:
    """One immutable version of a contract; equal when name, version and fingerprint are.

    ``schema`` is the fastavro-parsed schema, ``definition`` the self-contained JSON form (with
    docs and custom attributes), ``fingerprint`` the 8-byte little-endian CRC-64-AVRO of
    ``canonical`` (as Avro single-object encoding writes it), ``pii_fields`` the paths of the
    fields marked ``"pii": true`` in the notation of ``schemas._avro`` (a marked record covers
    its whole subtree; marked fields inside it are listed too).
    """

    name: str
    version: int
    schema: dict[str, Any] = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes
    pii_fields: tuple[str, ...] = field(repr=False)
    path: Path = field(repr=False)
    definition: dict[str, Any] = field(repr=False)
    named_schemas: Mapping[str, Any] = field(repr=False)

    @property
    def short_name(self) -> str:
        """Name without namespace, e.g. ``PhoneContactEvent``."""
        return _avro.short_name(self.name)

    @property
    def label(self) -> str:
        """Human label for messages, e.g. ``PhoneContactEvent v2``."""
        return f"{self.short_name} v{self.version}"

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits, in wire (little-endian) byte order."""
        return self.fingerprint.hex()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Contract):
            return NotImplemented
        return (self.name, self.version, self.fingerprint) == (
            other.name,
            other.version,
            other.fingerprint,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.version, self.fingerprint))


class SchemaCatalog:
    """Every contract version, looked up by name (full or short), version or fingerprint."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        self._versions: dict[str, dict[int, Contract]] = {}
        self._by_fingerprint: dict[bytes, Contract] = {}
        self._short: dict[str, str] = {}
        for contract in contracts:
            self._add(contract)
        for name, versions in self._versions.items():
            expected = list(range(1, len(versions) + 1))
            if sorted(versions) != expected:
                found = ", ".join(f"v{v}" for v in sorted(versions))
                raise ContractLoadError(
                    f"{_avro.short_name(name)}: versions must run from v1 without gaps "
                    f"(found {found})"
                )

    def _add(self, contract: Contract) -> None:
        versions = self._versions.setdefault(contract.name, {})
        if contract.version in versions:
            raise ContractLoadError(f"{contract.path.name}: {contract.label} is defined twice")
        twin = self._by_fingerprint.get(contract.fingerprint)
        if twin is not None:
            raise ContractLoadError(
                f"{contract.path.name}: same wire schema (fingerprint) as {twin.label}; "
                "a new version must change the schema"
            )
        short = contract.short_name
        if self._short.setdefault(short, contract.name) != contract.name:
            raise ContractLoadError(f"{contract.path.name}: short name {short} is ambiguous")
        versions[contract.version] = contract
        self._by_fingerprint[contract.fingerprint] = contract

    @classmethod
    def load(cls, directory: Path | None = None) -> SchemaCatalog:
        """Load every contract under ``directory`` (default: ``schemas/avro``).

        Raises ContractLoadError naming the file when any .avsc is invalid.
        """
        root = AVRO_DIR if directory is None else Path(directory)
        if not root.is_dir():
            raise ContractLoadError(f"{root}: no such contract directory")
        shared = _load_shared(root / "common")
        return cls(_load_contract(path, shared) for path in sorted(root.glob("*.avsc")))

    def _full_name(self, name: str) -> str:
        full = name if name in self._versions else self._short.get(name)
        if full is None:
            raise UnknownContract(f"no contract named {name!r}")
        return full

    def latest(self, name: str) -> Contract:
        """Highest version of the contract called ``name`` (full or short name)."""
        versions = self._versions[self._full_name(name)]
        return versions[max(versions)]

    def get(self, name: str, version: int) -> Contract:
        """Version ``version`` of the contract called ``name`` (full or short name)."""
        full = self._full_name(name)
        try:
            return self._versions[full][version]
        except KeyError:
            raise UnknownContract(f"{_avro.short_name(full)} has no version {version}") from None

    def versions(self, name: str) -> tuple[int, ...]:
        """Versions of the contract called ``name``, ascending."""
        return tuple(sorted(self._versions[self._full_name(name)]))

    def names(self) -> tuple[str, ...]:
        """Full names of every contract, sorted."""
        return tuple(sorted(self._versions))

    def by_fingerprint(self, fingerprint: bytes) -> Contract:
        """The contract version whose 8-byte CRC-64-AVRO fingerprint is ``fingerprint``."""
        try:
            return self._by_fingerprint[bytes(fingerprint)]
        except KeyError:
            raise UnknownFingerprint(
                f"no contract version has fingerprint {bytes(fingerprint).hex()}"
            ) from None

    def contracts(self) -> Iterator[Contract]:
        """Every contract version, by name then version."""
        for name in sorted(self._versions):
            versions = self._versions[name]
            for version in sorted(versions):
                yield versions[version]

    def __iter__(self) -> Iterator[Contract]:
        return self.contracts()

    def __len__(self) -> int:
        return len(self._by_fingerprint)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ContractLoadError(f"{path.name}: cannot read ({type(error).__name__})") from None
    except json.JSONDecodeError as error:
        raise ContractLoadError(
            f"{path.name}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg})"
        ) from None
    if not isinstance(document, dict):
        raise ContractLoadError(f"{path.name}: must hold one JSON object (an Avro named type)")
    return document


def _full_name_of(definition: Mapping[str, Any], path: Path, enclosing: str) -> str:
    name = definition.get("name")
    if not isinstance(name, str) or not name:
        raise ContractLoadError(f"{path.name}: a named type has no 'name'")
    if "." in name:
        return name
    namespace = definition.get("namespace", enclosing)
    return f"{namespace}.{name}" if namespace else name


def _load_shared(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    shared: dict[str, tuple[Path, dict[str, Any]]] = {}
    if not directory.is_dir():
        return shared
    for path in sorted(directory.glob("*.avsc")):
        definition = _read_json(path)
        if definition.get("type") not in ("record", "enum", "fixed"):
            raise ContractLoadError(f"{path.name}: a shared type must be a record, enum or fixed")
        full_name = _full_name_of(definition, path, "")
        if _avro.short_name(full_name) != path.stem:
            raise ContractLoadError(f"{path.name}: file name must be <type name>.avsc")
        shared[full_name] = (path, definition)
    return shared


class _Inliner:
    """Expands references to shared types: first occurrence in full, later ones by full name."""

    def __init__(self, shared: Mapping[str, tuple[Path, dict[str, Any]]], path: Path) -> None:
        self._shared = shared
        self._path = path
        self._defined: set[str] = set()

    def expand(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, list):
            return [self.expand(branch, namespace) for branch in schema]
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if not isinstance(schema, dict):
            raise ContractLoadError(f"{self._path.name}: a schema must be a string, list or object")
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full_name = _full_name_of(schema, self._path, namespace)
            if full_name in self._defined:
                raise ContractLoadError(f"{self._path.name}: type {full_name} is defined twice")
            self._defined.add(full_name)
            expanded = {k: v for k, v in schema.items() if k not in ("name", "namespace")}
            expanded["name"] = full_name
            if kind in ("record", "error"):
                inner = full_name.rsplit(".", 1)[0] if "." in full_name else ""
                expanded["fields"] = [
                    {**f, "type": self.expand(f.get("type"), inner)} if isinstance(f, dict) else f
                    for f in schema.get("fields", [])
                ]
            return expanded
        if kind == "array":
            return {**schema, "items": self.expand(schema.get("items"), namespace)}
        if kind == "map":
            return {**schema, "values": self.expand(schema.get("values"), namespace)}
        if isinstance(kind, (list, dict)) or (
            isinstance(kind, str) and kind not in _avro.PRIMITIVES
        ):
            return self.expand(kind, namespace)
        return schema

    def _reference(self, name: str, namespace: str) -> Any:
        if name in _avro.PRIMITIVES:
            return name
        full_name = name if "." in name or not namespace else f"{namespace}.{name}"
        if full_name in self._defined:
            return full_name
        if full_name not in self._shared:
            raise ContractLoadError(f"{self._path.name}: references unknown type {full_name}")
        _, definition = self._shared[full_name]
        return self.expand(definition, "")


def _load_contract(path: Path, shared: Mapping[str, tuple[Path, dict[str, Any]]]) -> Contract:
    match = _CONTRACT_FILE.fullmatch(path.name.removesuffix(".avsc"))
    if match is None:
        raise ContractLoadError(f"{path.name}: contract files are named <Name>.v<N>.avsc")
    raw = _read_json(path)
    if raw.get("type") != "record":
        raise ContractLoadError(f"{path.name}: a contract must be a record")
    full_name = _full_name_of(raw, path, "")
    if _avro.short_name(full_name) != match["name"]:
        raise ContractLoadError(f"{path.name}: record name does not match the file name")
    if "." not in full_name:
        raise ContractLoadError(f"{path.name}: a contract needs a namespace")
    definition = _Inliner(shared, path).expand(raw, "")
    try:
        parsed, named = _avro.parse(definition)
    except (fastavro.schema.SchemaParseException, fastavro.schema.UnknownType) as error:
        raise ContractLoadError(f"{path.name}: invalid Avro schema: {error}") from None
    except (ValueError, TypeError, KeyError) as error:
        raise ContractLoadError(
            f"{path.name}: invalid Avro schema ({type(error).__name__}: {error})"
        ) from None
    problems = check_definition(parsed, named)
    if problems:
        raise ContractLoadError(f"{path.name}: " + "; ".join(problems))
    canonical = to_parsing_canonical_form(parsed)
    return Contract(
        name=full_name,
        version=int(match["version"]),
        schema=parsed,
        canonical=canonical,
        fingerprint=bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO")),
        pii_fields=tuple(
            path for path, fld, _ in _avro.iter_fields(parsed, named) if fld.get("pii") is True
        ),
        path=path,
        definition=definition,
        named_schemas=MappingProxyType(named),
    )
