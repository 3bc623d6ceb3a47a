"""AvroSerde: single-object encoding round trips, schema resolution, and its error classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import (
    CHANNEL_CONTRACTS,
    MAGIC,
    AvroSerde,
    MalformedPayload,
    RecordNotSerializable,
    SchemaCatalog,
    SchemaMismatch,
    SerdeError,
    UnknownFingerprint,
    from_json,
)
from schemas.examples import CHANNELS, example_events
from schemas.serde import writer_fingerprint

NS = "be.comnexio.contactflow"
PHONE = "+32 471 12 34 56"


def _v1_inbound_call() -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": "0b8f6a52-3c1e-4d0a-9a51-6f1d2c7e8a01",
            "contact_id": "call-1",
            "occurred_at": datetime(2025, 3, 4, 8, 17, 42, tzinfo=UTC),
            "source_system": "acd",
            "client": "ORES",
            "service": "incoming_call",
            "purpose": "contact_handling",
            "site": "eupen",
            "language": "de",
            "subject": {"phone": PHONE, "email": None, "social_handle": None, "customer_ref": None},
        },
        "kind": "inbound_call",
        "payload": (
            f"{NS}.InboundCall",
            {
                "call_id": "acd-1",
                "queue": "ores-outage-de",
                "agent_id": None,
                "answered_at": None,
                "ended_at": datetime(2025, 3, 4, 8, 17, 42, tzinfo=UTC),
                "duration_s": 42,
                "outcome": "abandoned",
            },
        ),
    }


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_example_round_trips(
    catalog: SchemaCatalog, serde: AvroSerde, channel: str
) -> None:
    contract = catalog.latest(CHANNEL_CONTRACTS[channel])
    for event in example_events(channel):
        record = from_json(contract, event)
        writer, back = serde.deserialize(serde.serialize(record, contract))
        assert writer is contract
        assert back == record


def test_single_object_header(catalog: SchemaCatalog, serde: AvroSerde) -> None:
    contract = catalog.get("PhoneContactEvent", 1)
    data = serde.serialize(_v1_inbound_call(), contract)
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == contract.fingerprint
    assert writer_fingerprint(data) == contract.fingerprint


def test_v1_bytes_read_with_v2_reader_get_the_new_default(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    v1, v2 = catalog.get("PhoneContactEvent", 1), catalog.get("PhoneContactEvent", 2)
    data = serde.serialize(_v1_inbound_call(), v1)
    _, as_written = serde.deserialize(data)
    assert "ivr_path" not in as_written["payload"][1]
    for reader in (v2, "PhoneContactEvent", f"{NS}.PhoneContactEvent"):
        writer, record = serde.deserialize(data, reader)
        assert writer is v1
        name, payload = record["payload"]
        assert name == f"{NS}.InboundCall"
        assert payload["ivr_path"] is None
        assert payload["duration_s"] == 42
        assert record["envelope"]["subject"]["phone"] == PHONE


def test_reader_of_another_contract_is_a_schema_mismatch(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    data = serde.serialize(_v1_inbound_call(), catalog.get("PhoneContactEvent", 1))
    with pytest.raises(
        SchemaMismatch, match="ChatContactEvent v2 cannot read PhoneContactEvent v1"
    ):
        serde.deserialize(data, "ChatContactEvent")
    with pytest.raises(SchemaMismatch, match="unknown reader contract"):
        serde.deserialize(data, "FaxContactEvent")


def test_unknown_fingerprint(catalog: SchemaCatalog, serde: AvroSerde) -> None:
    data = serde.serialize(_v1_inbound_call(), catalog.get("PhoneContactEvent", 1))
    forged = MAGIC + bytes.fromhex("0102030405060708") + data[10:]
    with pytest.raises(UnknownFingerprint, match="0102030405060708") as caught:
        serde.deserialize(forged)
    assert isinstance(caught.value, SerdeError)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:-3], "truncated or corrupt PhoneContactEvent v1 body"),
        (lambda d: d[:12], "truncated or corrupt PhoneContactEvent v1 body"),
        (lambda d: d[:6], "shorter than the 10-byte header"),
        (lambda d: b"\x00\x01" + d[2:], "single-object marker"),
        (lambda d: d[10:], "single-object marker"),
        (lambda d: d + b"\x00\x00", "2 trailing bytes"),
    ],
    ids=["truncated", "header-only", "short-header", "bad-marker", "no-header", "trailing"],
)
def test_malformed_payloads(
    catalog: SchemaCatalog, serde: AvroSerde, mangle: Any, message: str
) -> None:
    data = serde.serialize(_v1_inbound_call(), catalog.get("PhoneContactEvent", 1))
    with pytest.raises(MalformedPayload, match=message) as caught:
        serde.deserialize(mangle(data))
    assert PHONE not in str(caught.value)
    assert caught.value.__cause__ is None  # fastavro's message may quote bytes: not chained


def test_record_that_does_not_fit_is_refused_without_quoting_it(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    record = _v1_inbound_call()
    record["payload"][1]["duration_s"] = PHONE
    with pytest.raises(
        RecordNotSerializable, match="record does not fit PhoneContactEvent v1"
    ) as e:
        serde.serialize(record, catalog.get("PhoneContactEvent", 1))
    assert PHONE not in str(e.value)
    assert e.value.__cause__ is None
