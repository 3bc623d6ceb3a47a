"""Tagged events of both contract versions read the same way: a v1 event excludes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from streams.sdk.tagged import read_tagged


def _tagged(**governance: Any) -> dict[str, Any]:
    return {
        "event_id": "0b8f6a52-3c1e-4d0a-9a51-6f1d2c7e8a01", "contact_id": "call-1",
        "channel": "phone", "kind": "inbound_call",
        "occurred_at": datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        "governance": {"controller": "ORES", "processor": "COMNEXIO",
                       "purpose": "contact_handling", "legal_basis": "public_task",
                       "subject_pseudonym": "s-" + "a" * 32, "policy_version": "2026.12.1",
                       "restricted": False, "retention_class": "ores_contact", **governance},
        "key_id": "k-1", "source_fingerprint": "00" * 8, "event": b"sealed",
        "traceparent": None,
    }  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="module")
def serde(catalog: SchemaCatalog) -> AvroSerde:
    return AvroSerde(catalog)


def test_a_v1_event_reads_as_excluding_no_purpose(catalog: SchemaCatalog, serde: AvroSerde) -> None:
    data = serde.serialize(_tagged(), catalog.get("TaggedContactEvent", 1))
    assert "excluded_purposes" not in serde.deserialize(data)[1]["governance"]  # as written
    record = read_tagged(serde, data)
    assert record["governance"]["excluded_purposes"] == []
    assert record["governance"]["controller"] == "ORES"
    assert record["event"] == b"sealed"


def test_a_v2_event_reads_with_its_excluded_purposes(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    contract = catalog.get("TaggedContactEvent", 2)
    data = serde.serialize(_tagged(excluded_purposes=["reporting"]), contract)
    assert read_tagged(serde, data)["governance"]["excluded_purposes"] == ["reporting"]
    assert read_tagged(serde, data) == serde.deserialize(data)[1]
