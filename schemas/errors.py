"""Exceptions of the schemas package.

Every message names a contract, a file or a field path and the problem, never a field value:
the value could be a phone number, an e-mail address or a message text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field: where (``path``) and what (``problem``), never the value."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path or '<record>'}: {self.problem}"


class SchemaError(Exception):
    """Base class of every error raised by the schemas package."""


class CatalogError(SchemaError):
    """The catalog cannot be built or cannot answer a lookup."""


class ContractLoadError(CatalogError):
    """An .avsc file is unreadable, invalid, or breaks a catalog rule; the message names it."""


class UnknownContract(CatalogError, LookupError):
    """No contract (or no such version of it) in the catalog."""


class SerdeError(SchemaError):
    """Bytes could not be turned into a record, or a record into bytes."""


class MalformedPayload(SerdeError, ValueError):
    """The bytes are not a complete Avro single-object encoded record."""


class UnknownFingerprint(SerdeError, CatalogError, LookupError):
    """The writer fingerprint is not one of the catalog's contract versions."""


class SchemaMismatch(SerdeError):
    """The requested reader contract cannot read data written with the writer contract."""


class RecordNotSerializable(SerdeError, ValueError):
    """The record does not fit the contract; `validate()` tells which field paths are wrong."""


class ContractViolation(SchemaError, ValueError):
    """A record or JSON object breaks its contract; `problems` lists each path and problem."""

    def __init__(self, problems: Sequence[FieldProblem], contract_label: str = "record") -> None:
        self.contract_label = contract_label
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        shown = "; ".join(str(problem) for problem in self.problems[:10])
        more = f"; and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{contract_label}: {count} {noun}: {shown}{more}")
