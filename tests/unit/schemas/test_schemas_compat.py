"""BACKWARD compatibility: the catalog's version chain, and the Avro resolution rules."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import CHANNEL_CONTRACTS, SchemaCatalog, check_backward, check_catalog
from schemas._avro import iter_fields

BASE: dict[str, Any] = {
    "type": "record",
    "name": "Thing",
    "namespace": "t",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["open", "shut"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {
            "name": "body",
            "type": [
                {"type": "record", "name": "A", "fields": [{"name": "a", "type": "string"}]},
                {"type": "record", "name": "B", "fields": [{"name": "b", "type": "long"}]},
            ],
        },
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    ],
}


def _changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    change(schema)
    return schema


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_the_whole_catalog_is_backward_compatible(catalog: SchemaCatalog) -> None:
    assert check_catalog(catalog) == []
    v1, v2 = catalog.get("PhoneContactEvent", 1), catalog.get("PhoneContactEvent", 2)
    assert check_backward(v2.schema, v1.schema) == []
    assert check_backward(v2.definition, v1.definition) == []


@pytest.mark.parametrize("name", [*CHANNEL_CONTRACTS.values(), "TaggedContactEvent"])
def test_every_field_a_later_version_adds_is_optional_and_says_when(
    catalog: SchemaCatalog, name: str
) -> None:
    """Producers and consumers move to a new version at their own pace: a field a version
    adds has a null (or empty) default and its doc says which version added it."""
    versions = catalog.versions(name)
    assert len(versions) > 1
    for previous, version in itertools.pairwise(versions):
        older, newer = catalog.get(name, previous), catalog.get(name, version)
        known = {path for path, _, _ in iter_fields(older.schema, older.named_schemas)}
        added = [
            (path, field)
            for path, field, _ in iter_fields(newer.schema, newer.named_schemas)
            if path not in known
        ]
        assert added, newer.label
        for path, field in added:
            assert field.get("default", "none") in (None, []), f"{newer.label} {path}"
            assert f"added in v{version}" in field["doc"], f"{newer.label} {path}"


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (
            lambda s: s["fields"].append({"name": "owner", "type": "string"}),
            "owner",
            "field added without a default",
        ),
        (
            lambda s: _field(s, "state")["type"]["symbols"].remove("shut"),
            "state",
            "enum symbols removed without an enum default: shut",
        ),
        (lambda s: _field(s, "id").update(type="int"), "id", "type changed from string to int"),
        (lambda s: s.update(name="Gadget"), "", "record renamed from Thing to Gadget"),
        (lambda s: _field(s, "count").update(type="string"), "count", "from int to string"),
        (lambda s: _field(s, "note").update(type="string", default="-"), "note", "null to string"),
        (lambda s: _field(s, "tags")["type"].update(values="int"), "tags{}", "from string to int"),
        (
            lambda s: _field(s, "body")["type"][1]["fields"][0].update(type="int"),
            "body[B].b",
            "from long to int",
        ),
        (lambda s: _field(s, "body")["type"].pop(0), "body[A]", "no branch of the new union"),
        (lambda s: _field(s, "digest")["type"].update(size=8), "digest", "size changed from 4"),
    ],
    ids=[
        "required-field-added",
        "enum-symbol-removed",
        "string-to-int",
        "record-renamed",
        "int-to-string",
        "nullable-to-required",
        "map-values",
        "union-branch-field",
        "union-branch-removed",
        "fixed-size",
    ],
)
def test_incompatible_changes_are_rejected(
    change: Callable[[dict[str, Any]], None], path: str, reason: str
) -> None:
    problems = check_backward(_changed(change), BASE)
    assert [p.path for p in problems] == [path]
    assert reason in problems[0].reason
    assert str(problems[0]).startswith(f"{path or '<record>'}: ")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["fields"].append(
            {"name": "owner", "type": ["null", "string"], "default": None}
        ),
        lambda s: _field(s, "count").update(type="long"),
        lambda s: _field(s, "count").update(type="double"),
        lambda s: _field(s, "id").update(type="bytes"),
        lambda s: _field(s, "state")["type"]["symbols"].append("pending"),
        lambda s: _field(s, "state")["type"].update(symbols=["open"], default="open"),
        lambda s: _field(s, "id").update(type=["null", "string"]),
        lambda s: s["fields"].remove(_field(s, "count")),
        lambda s: s.update(name="Gadget", aliases=["t.Thing"]),
        lambda s: _field(s, "id").update(name="ident", aliases=["id"]),
        lambda s: _field(s, "body")["type"].append(
            {"type": "record", "name": "C", "fields": [{"name": "c", "type": "int"}]}
        ),
        lambda s: _field(s, "tags")["type"].update(values=["null", "string"]),
    ],
    ids=[
        "optional-field-added",
        "int-to-long",
        "int-to-double",
        "string-to-bytes",
        "enum-symbol-added",
        "enum-symbol-removed-with-default",
        "required-to-nullable",
        "field-removed",
        "record-renamed-with-alias",
        "field-renamed-with-alias",
        "union-branch-added",
        "map-values-widened",
    ],
)
def test_compatible_changes_are_accepted(change: Callable[[dict[str, Any]], None]) -> None:
    assert check_backward(_changed(change), BASE) == []


def test_promotion_is_one_way() -> None:
    narrowed = _changed(lambda s: _field(s, "count").update(type="long"))
    assert [p.path for p in check_backward(BASE, narrowed)] == ["count"]


def test_recursive_types_terminate() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    assert check_backward(node, node) == []


def _add_version(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads((root / "SubjectState.v1.avsc").read_text())
    change(document)
    (root / "SubjectState.v2.avsc").write_text(json.dumps(document))


def test_check_catalog_reports_a_breaking_version(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    new_field = {"name": "reviewed", "type": "boolean", "doc": "Reviewed by the DPO."}
    _add_version(root, lambda d: d["fields"].append(new_field))
    found = check_catalog(SchemaCatalog.load(root))
    assert [str(f) for f in found] == [
        "SubjectState v2 vs v1: reviewed: field added without a default"
    ]


def test_check_catalog_refuses_dropping_a_pii_marking(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    document = json.loads((root / "SurveyContactEvent.v1.avsc").read_text())
    comment = document["fields"][2]["type"][1]["fields"][2]
    assert comment["name"] == "comment"
    del comment["pii"]
    document["fields"][2]["type"][0]["fields"].append(
        {"name": "channel_hint", "type": ["null", "string"], "default": None, "doc": "Hint."}
    )
    (root / "SurveyContactEvent.v2.avsc").write_text(json.dumps(document))
    found = check_catalog(SchemaCatalog.load(root))
    assert [(f.version, f.previous, f.path) for f in found] == [
        (2, 1, "payload[SurveyAnswered].comment")
    ]
    assert "PII marking removed" in found[0].reason
