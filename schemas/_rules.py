"""Catalog rules every contract must follow beyond plain Avro validity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from schemas import _avro

_NUMERIC: Final = frozenset({"int", "long", "float", "double"})
_FORMATS: Final = frozenset({"uuid"})


def value_type(field_type: Any, named: _avro.NamedSchemas) -> Any:
    """The resolved non-null type of a field: the X of ``X`` or ``[null, X]``, else the union."""
    resolved = _avro.resolve(field_type, named)
    if isinstance(resolved, list):
        branches = _avro.non_null_branches(resolved)
        if len(branches) == 1:
            return _avro.resolve(branches[0], named)
    return resolved


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_field(path: str, fld: Mapping[str, Any], named: _avro.NamedSchemas) -> list[str]:
    problems: list[str] = []
    doc = fld.get("doc")
    if not isinstance(doc, str) or not doc.strip():
        problems.append(f"{path}: every field needs a doc")
    if "pii" in fld and not isinstance(fld["pii"], bool):
        problems.append(f"{path}: 'pii' must be true or false")
    kind = _avro.type_of(value_type(fld["type"], named))
    for bound in ("minimum", "maximum"):
        if bound in fld and (kind not in _NUMERIC or not _is_number(fld[bound])):
            problems.append(f"{path}: '{bound}' needs a numeric field and a numeric bound")
    low, high = fld.get("minimum"), fld.get("maximum")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
        problems.append(f"{path}: 'minimum' is above 'maximum'")
    if "format" in fld and (fld["format"] not in _FORMATS or kind != "string"):
        problems.append(f"{path}: 'format' must be one of {sorted(_FORMATS)} on a string field")
    return problems


def _check_discriminator(
    path: str, fld: Mapping[str, Any], record: Mapping[str, Any], named: _avro.NamedSchemas
) -> list[str]:
    selector = fld["discriminator"]
    siblings = {sibling["name"]: sibling for sibling in record["fields"]}
    if not isinstance(selector, str) or selector not in siblings:
        return [f"{path}: 'discriminator' must name a sibling field"]
    selector_type = _avro.resolve(siblings[selector]["type"], named)
    if _avro.type_of(selector_type) != "enum":
        return [f"{path}: discriminator field {selector} must be an enum"]
    union = _avro.resolve(fld["type"], named)
    if _avro.type_of(union) != "union":
        return [f"{path}: a discriminated field must be a union of records"]
    served: dict[str, int] = {}
    problems: list[str] = []
    for branch in _avro.non_null_branches(union):
        record_type = _avro.resolve(branch, named)
        kinds = record_type.get("kinds") if _avro.type_of(record_type) == "record" else None
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            problems.append(f"{path}: every branch needs a 'kinds' list of {selector} symbols")
            continue
        for symbol in kinds:
            served[symbol] = served.get(symbol, 0) + 1
    symbols = selector_type["symbols"]
    for symbol in symbols:
        if served.get(symbol, 0) != 1:
            problems.append(
                f"{path}: {selector} symbol {symbol} must be served by exactly one branch"
            )
    for symbol in sorted(set(served) - set(symbols)):
        problems.append(f"{path}: 'kinds' names {symbol}, which is not a {selector} symbol")
    return problems


def check_definition(schema: Any, named: _avro.NamedSchemas) -> list[str]:
    """Problems with a parsed contract: missing docs, misplaced custom attributes, kind gaps."""
    problems: list[str] = []
    for path, fld, record in _avro.iter_fields(schema, named):
        problems.extend(_check_field(path, fld, named))
        if "discriminator" in fld:
            problems.extend(_check_discriminator(path, fld, record, named))
    return problems


def branch_for_symbol(union: list[Any], symbol: str, named: _avro.NamedSchemas) -> Any | None:
    """The branch of a discriminated union whose 'kinds' lists ``symbol``, if any."""
    for branch in union:
        resolved = _avro.resolve(branch, named)
        if isinstance(resolved, dict) and symbol in resolved.get("kinds", ()):
            return resolved
    return None
