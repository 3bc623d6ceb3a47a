"""`dsr export` writes what a person can read: a header saying what the file is (in French,
the notice's language, and English), each record a plain object with ISO-8601 times and
its controller, purpose and legal basis; no Avro union tuples, no Python reprs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from appproc import app_env
from flow import route_person
from people import EMAIL, coaching_recording
from typer.testing import CliRunner

from streams.cli import app
from streams.control.privacy.intake import Intake, identifiers

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
AVRO_NAME = re.compile(r"^be\.comnexio\.contactflow\.")
PYTHON_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}|datetime\.datetime\(")


def _walk(value: Any, path: str = "$") -> list[str]:
    """Where the document holds something a person cannot read."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        if len(value) == 2 and isinstance(value[0], str) and AVRO_NAME.match(value[0]):
            found.append(f"{path}: an Avro union pair")
        for index, item in enumerate(value):
            found += _walk(item, f"{path}[{index}]")
    elif isinstance(value, str) and (AVRO_NAME.match(value) or PYTHON_TIME.search(value)):
        found.append(f"{path}: {value[:40]!r}")
    return found


def test_the_export_is_plain_json_with_a_header(container, privacy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    route_person(container, NOW, [("phone", coaching_recording())])
    intake = Intake("access", identifiers([("email", EMAIL)]), "privacy-office", NOW,
                    verified_by="id_card_copy")  # fmt: skip
    request = privacy.submit(intake, NOW)
    privacy.instruct(request.request_id, "execute", None, "controller:ORES", NOW)
    out = tmp_path / "export.json"
    result = CliRunner().invoke(app, ["dsr", "export", request.request_id, "--out", str(out)],
                                env=app_env(container))  # fmt: skip
    assert result.exit_code == 0, result.output

    document = json.loads(out.read_text(encoding="utf-8"))
    assert _walk(document) == []
    header = document["about"]
    assert set(header) >= {"fr", "en", "request", "generated_at", "controllers", "contents"}
    assert "RGPD" in header["fr"]
    assert "GDPR" in header["en"]
    assert header["request"]["id"] == request.request_id
    assert header["request"]["type"] == "access"
    assert ISO.match(header["generated_at"])
    assert {c["name"] for c in header["controllers"]} == {"ORES", "COMNEXIO"}
    assert all(c["role"]["fr"] and c["role"]["en"] for c in header["controllers"])
    assert header["contents"]["records"] == len(document["records"]) == 6
    assert header["contents"]["recordings"] == len(document["recordings"])

    for record in document["records"]:
        assert ISO.match(record["occurred_at"]), record["occurred_at"]
        assert record["controller"] in {"ORES", "COMNEXIO"}
        assert record["purpose"]
        assert record["legal_basis"]
        event = record["event"]
        assert isinstance(event["payload"], dict)  # the union's branch, not [name, {...}]
        assert ISO.match(event["envelope"]["occurred_at"])
    survey = next(r for r in document["records"] if r["channel"] == "survey")
    assert isinstance(survey["event"]["payload"], dict)
    assert EMAIL in {r["event"]["envelope"]["subject"].get("email") for r in document["records"]}
    for recording in document["recordings"]:
        assert ISO.match(recording["retain_until"])
    legend = header["legend"]
    used = {r["purpose"] for r in document["records"]} | {
        r["legal_basis"] for r in document["records"]
    }
    assert used <= set(legend), used - set(legend)
