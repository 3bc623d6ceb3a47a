"""Checking records against their contract, and turning producers' JSON into records.

``validate`` checks a record as ``AvroSerde.serialize`` takes it; ``from_json`` converts a JSON
object (one line of a producer's .jsonl file) into such a record: ISO-8601 timestamps with a
timezone become aware datetimes, missing optional fields get their defaults, and the branch of
a discriminated union (a channel event's payload) is the record whose ``kinds`` lists the
event's ``kind``, returned in fastavro tuple notation ``(full name, fields)``.

Problems name the field path (notation of ``schemas._avro``, with array indexes) and what is
wrong, never the value: it could be a phone number or a message text.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from schemas import _avro
from schemas._rules import branch_for_symbol
from schemas.catalog import Contract
from schemas.errors import ContractViolation, FieldProblem

__all__ = ["ContractViolation", "FieldProblem", "from_json", "validate"]

_RANGES: Final = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_TIMESTAMP_UNITS: Final = {"timestamp-millis": "milliseconds", "timestamp-micros": "microseconds"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SHOWABLE_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class _Walker:
    """Walks a value along its schema, converting it (JSON mode) and collecting problems."""

    def __init__(self, named: _avro.NamedSchemas, from_json: bool) -> None:
        self.named = named
        self.from_json = from_json
        self.problems: list[FieldProblem] = []

    def _add(self, path: str, problem: str) -> None:
        self.problems.append(FieldProblem(path, problem))

    def _trial(self, schema: Any, value: Any, path: str) -> tuple[Any, bool]:
        trial = _Walker(self.named, self.from_json)
        converted = trial.convert(schema, value, path)
        return converted, not trial.problems

    def convert(
        self,
        schema: Any,
        value: Any,
        path: str,
        fld: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> Any:
        schema = _avro.resolve(schema, self.named)
        kind = _avro.type_of(schema)
        if kind == "union":
            return self._union(schema, value, path, fld or {}, parent)
        if value is None:
            if kind != "null":
                self._add(path, "null is not allowed")
            return None
        if kind == "record":
            return self._record(schema, value, path)
        if kind in ("int", "long") and _avro.logical_type(schema) in _TIMESTAMP_UNITS:
            return self._timestamp(schema, value, path)
        if kind in ("int", "long", "float", "double"):
            return self._number(kind, value, path, fld or {})
        if kind == "array":
            return self._array(schema, value, path)
        if kind == "map":
            return self._map(schema, value, path)
        return self._scalar(kind, schema, value, path, fld or {})

    def _scalar(self, kind: str, schema: Any, value: Any, path: str, fld: Mapping[str, Any]) -> Any:
        if kind == "null":
            self._add(path, "expected null")
        elif kind == "boolean":
            if not isinstance(value, bool):
                self._add(path, "expected a boolean")
        elif kind == "string":
            if not isinstance(value, str):
                self._add(path, "expected a string")
            elif fld.get("format") == "uuid" and not _is_uuid(value):
                self._add(path, "not a valid UUID")
        elif kind in ("bytes", "fixed"):
            value = self._bytes(value, path)
            if kind == "fixed" and isinstance(value, bytes) and len(value) != schema["size"]:
                self._add(path, f"expected exactly {schema['size']} bytes")
        elif kind == "enum":
            if not isinstance(value, str):
                self._add(path, "expected an enum symbol (a string)")
            elif value not in schema["symbols"]:
                expected = ", ".join(schema["symbols"])
                self._add(path, f"unknown enum symbol (expected one of: {expected})")
        return value

    def _bytes(self, value: Any, path: str) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if self.from_json and isinstance(value, str):
            try:
                return value.encode("latin-1")  # Avro JSON: one code point 0-255 per byte
            except UnicodeEncodeError:
                self._add(path, "bytes as a JSON string may only hold code points 0-255")
                return value
        self._add(path, "expected bytes")
        return value

    def _number(self, kind: str, value: Any, path: str, fld: Mapping[str, Any]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._add(path, "expected an integer" if kind in _RANGES else "expected a number")
            return value
        if kind in _RANGES:
            if not isinstance(value, int):
                self._add(path, "expected an integer")
                return value
            low, high = _RANGES[kind]
            if not low <= value <= high:
                self._add(path, f"out of range for an Avro {kind}")
                return value
        elif self.from_json:
            value = float(value)
        minimum, maximum = fld.get("minimum"), fld.get("maximum")
        if minimum is not None and value < minimum:
            self._add(path, f"below the minimum of {minimum}")
        if maximum is not None and value > maximum:
            self._add(path, f"above the maximum of {maximum}")
        return value

    def _timestamp(self, schema: Any, value: Any, path: str) -> Any:
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                self._add(path, "timestamp needs a timezone")
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if not self.from_json:
                return value
            unit = _TIMESTAMP_UNITS[str(_avro.logical_type(schema))]
            try:
                return _EPOCH + timedelta(**{unit: value})
            except OverflowError:
                self._add(path, "timestamp out of range")
                return value
        if not self.from_json or not isinstance(value, str):
            expected = "an ISO-8601 timestamp" if self.from_json else "an aware datetime"
            self._add(path, f"expected {expected}")
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self._add(path, "not a valid ISO-8601 timestamp")
            return value
        if parsed.utcoffset() is None:
            self._add(path, "timestamp needs a timezone")
            return value
        return parsed

    def _array(self, schema: Any, value: Any, path: str) -> Any:
        if not isinstance(value, (list, tuple)) or (self.from_json and isinstance(value, tuple)):
            self._add(path, "expected an array")
            return value
        items = schema["items"]
        return [
            self.convert(items, item, _avro.items_path(path, i)) for i, item in enumerate(value)
        ]

    def _map(self, schema: Any, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self._add(path, "expected an object (map)")
            return value
        if not all(isinstance(key, str) for key in value):
            self._add(path, "map keys must be strings")
            return value
        item_path = _avro.values_path(path)
        return {key: self.convert(schema["values"], item, item_path) for key, item in value.items()}

    def _record(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self._add(path, "expected an object")
            return value
        converted: dict[str, Any] = {}
        for fld in schema["fields"]:
            name = fld["name"]
            sub_path = _avro.field_path(path, name)
            if name in value:
                converted[name] = self.convert(fld["type"], value[name], sub_path, fld, value)
            elif "default" in fld:
                if self.from_json:
                    default = copy.deepcopy(fld["default"])
                    converted[name] = _Walker(self.named, True).convert(fld["type"], default, "")
            else:
                self._add(sub_path, "missing required field")
        known = {fld["name"] for fld in schema["fields"]}
        for key in value:
            if key not in known:
                shown = key if isinstance(key, str) and _SHOWABLE_KEY.fullmatch(key) else "<key>"
                self._add(_avro.field_path(path, shown), "unknown field")
        return converted

    def _union(
        self,
        union: list[Any],
        value: Any,
        path: str,
        fld: Mapping[str, Any],
        parent: Mapping[str, Any] | None,
    ) -> Any:
        if value is None:
            if "null" not in union:
                self._add(path, "null is not allowed")
            return None
        branches = [_avro.resolve(b, self.named) for b in _avro.non_null_branches(union)]
        records = [b for b in branches if _avro.type_of(b) == "record"]
        selector = fld.get("discriminator")
        expected = None
        if isinstance(selector, str) and parent is not None:
            symbol = parent.get(selector)
            if isinstance(symbol, str):
                expected = branch_for_symbol(branches, symbol, self.named)
            if expected is None:
                return value  # the selector field's own problem is reported there
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return self._tuple_branch(union, branches, value, path, fld, expected, selector)
        if len(branches) == 1:
            return self._wrap(records, branches[0], self.convert(branches[0], value, path, fld))
        if expected is not None:
            return self._selected_branch(union, branches, records, value, path, expected, selector)
        for branch in branches:
            converted, clean = self._trial(branch, value, self._path(path, union, branch))
            if clean:
                return self._wrap(records, branch, converted)
        self._add(path, "matches no branch of the union")
        return value

    def _path(self, path: str, union: list[Any], branch: Any) -> str:
        return _avro.branch_path(path, union, branch, self.named)

    @staticmethod
    def _wrap(records: list[Any], branch: Any, converted: Any) -> Any:
        """Tuple notation for a record branch of a union holding several records."""
        is_record = any(branch is record for record in records)
        return (branch["name"], converted) if len(records) > 1 and is_record else converted

    def _tuple_branch(
        self,
        union: list[Any],
        branches: list[Any],
        value: tuple[str, Any],
        path: str,
        fld: Mapping[str, Any],
        expected: Any,
        selector: Any,
    ) -> Any:
        name = value[0]
        branch = next(
            (b for b in branches if isinstance(b, dict) and name in (b.get("name"), _name(b))),
            None,
        )
        if branch is None:
            self._add(path, "tuple notation names no branch of the union")
            return value
        if expected is not None and branch is not expected:
            self._add(path, _disagreement(selector, expected, branch))
            return value
        return (
            branch["name"],
            self.convert(branch, value[1], self._path(path, union, branch), fld),
        )

    def _selected_branch(
        self,
        union: list[Any],
        branches: list[Any],
        records: list[Any],
        value: Any,
        path: str,
        expected: Any,
        selector: Any,
    ) -> Any:
        chosen = _Walker(self.named, self.from_json)
        converted = chosen.convert(expected, value, self._path(path, union, expected))
        if chosen.problems:
            for other in branches:
                if other is not expected and self._trial(other, value, path)[1]:
                    self._add(path, _disagreement(selector, expected, other))
                    return value
            self.problems.extend(chosen.problems)
        return self._wrap(records, expected, converted)


def _short(schema: Mapping[str, Any]) -> str:
    return _avro.short_name(schema["name"])


def _name(schema: Mapping[str, Any]) -> str | None:
    """Short name of a named type, None for a primitive written as an object."""
    return _avro.short_name(schema["name"]) if "name" in schema else None


def _disagreement(selector: Any, expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    return (
        f"does not agree with {selector} ({selector} requires {_short(expected)}; "
        f"the value fits {_short(found)})"
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def validate(contract: Contract, record: Mapping[str, Any]) -> list[FieldProblem]:
    """Problems that keep ``record`` (as serialize takes it) from fitting ``contract``."""
    walker = _Walker(contract.named_schemas, from_json=False)
    walker.convert(contract.schema, record, "")
    return walker.problems


def from_json(contract: Contract, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a producer's JSON object into a record of ``contract`` ready for serialize.

    Raises ContractViolation listing every problem when the object breaks the contract.
    """
    walker = _Walker(contract.named_schemas, from_json=True)
    record = walker.convert(contract.schema, obj, "")
    if walker.problems:
        raise ContractViolation(walker.problems, contract.label)
    assert isinstance(record, dict)
    return record
