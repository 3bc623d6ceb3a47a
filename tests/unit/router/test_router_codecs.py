"""The generated Avro codecs of AvroSerde (the router's hot path) against fastavro itself:
same bytes, same records, same errors, and anything unusual left to fastavro."""

from __future__ import annotations

import contextlib
import copy
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from schemas.catalog import CHANNEL_CONTRACTS, Contract, SchemaCatalog
from schemas.errors import SerdeError
from schemas.examples import CHANNELS, example_events
from schemas.serde import HEADER_SIZE, AvroSerde
from schemas.validation import ContractViolation, from_json
from streams.dev.bench.workload import encode_workload, generate_workload


def _fastavro_only(catalog: SchemaCatalog) -> AvroSerde:
    """An AvroSerde whose generated codecs are switched off: fastavro does everything."""
    serde = AvroSerde(catalog)
    for contract in catalog.contracts():
        serde._encoders[id(contract.schema)] = (contract.schema, None)
        serde._decoders[id(contract.schema)] = (contract.schema, None)
    return serde


@pytest.fixture(scope="module")
def samples(catalog: SchemaCatalog) -> list[tuple[Contract, dict[str, Any]]]:
    serde = _fastavro_only(catalog)
    found = []
    for values in encode_workload(generate_workload(1500, 11), catalog).values():
        found.extend(serde.deserialize(value) for _, value in values)
    for channel in CHANNELS:
        contract = catalog.latest(CHANNEL_CONTRACTS[channel])
        found.extend((contract, from_json(contract, e)) for e in example_events(channel))
    found.extend(_router_records(catalog))
    return found


def _router_records(catalog: SchemaCatalog) -> list[tuple[Contract, dict[str, Any]]]:
    now = datetime(2026, 3, 4, 8, 17, 42, 123456, tzinfo=UTC)
    tagged = {
        "event_id": "0b8f6a52-3c1e-4d0a-9a51-6f1d2c7e8a01", "contact_id": "c-1",
        "channel": "phone", "kind": "inbound_call", "occurred_at": now,
        "governance": {"controller": "ORES", "processor": "COMNEXIO", "purpose": "p",
                       "legal_basis": "contract", "subject_pseudonym": "s-" + "a" * 32,
                       "policy_version": "v1", "restricted": True, "retention_class": "r"},
        "key_id": "k-1", "source_fingerprint": "00" * 8, "event": b"\x00" * 300,
        "traceparent": None,
    }  # fmt: skip
    dead = {
        "source_topic": "t", "source_partition": 3, "source_offset": 2**40, "stage": "decode",
        "reason_code": "malformed", "reason": "r", "original_key": None,
        "original_value": b"\xc3\x01", "original_headers": {"a": b"1", "b": b""},
        "failed_at": now,
    }  # fmt: skip
    return [
        (catalog.latest("TaggedContactEvent"), tagged),
        (catalog.latest("TaggedContactEvent"), {**tagged, "governance": {
            **tagged["governance"], "processor": None}, "traceparent": "00-1-2-01"}),
        (catalog.latest("DeadLetter"), dead),
        (catalog.latest("DeadLetter"), {**dead, "original_headers": {}}),
    ]  # fmt: skip


def test_same_bytes_and_records_as_fastavro(catalog: SchemaCatalog, samples: list[Any]) -> None:
    fast, reference = AvroSerde(catalog), _fastavro_only(catalog)
    for contract, record in samples:
        encoded = reference.serialize(record, contract)
        assert fast.serialize(record, contract) == encoded, contract.label
        fast_writer, fast_record = fast.deserialize(encoded)
        writer, expected = reference.deserialize(encoded)
        assert fast_writer is writer
        assert fast_record == expected, contract.label
        assert repr(fast_record) == repr(expected)  # same types (tuples, datetimes, bytes)
        assert fast.deserialize(bytearray(encoded)) == (writer, expected)
        assert fast.deserialize(memoryview(encoded)) == (writer, expected)


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except SerdeError as error:
        return type(error).__name__, str(error)


def test_damaged_bytes_decode_or_fail_exactly_as_with_fastavro(
    catalog: SchemaCatalog, samples: list[Any]
) -> None:
    fast, reference = AvroSerde(catalog), _fastavro_only(catalog)
    rng = random.Random(7)
    for contract, record in samples[::3]:
        data = reference.serialize(record, contract)
        for _ in range(12):
            damaged = bytearray(data)
            position = rng.randrange(HEADER_SIZE, len(damaged))
            action = rng.randrange(4)
            if action == 0:
                damaged = damaged[:position]
            elif action == 1:
                damaged[position] = rng.randrange(256)
            elif action == 2:
                damaged[position] ^= 1 << rng.randrange(8)
            else:
                damaged += bytes([rng.randrange(256)])
            expected = _outcome(lambda d=bytes(damaged): reference.deserialize(d))
            assert _outcome(lambda d=bytes(damaged): fast.deserialize(d)) == expected


_ODD_VALUES = [None, 0, -1, 2**63, 1.5, "x", "ORES", b"b", bytearray(b"b"), True, [], {}, (),
               ("be.comnexio.contactflow.Nothing", {}), datetime(2025, 1, 1),  # noqa: DTZ001
               datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))), 2**31, -(2**31) - 1,
               "\udcff"]  # fmt: skip


def _damage(record: Any, rng: random.Random, depth: int = 0) -> None:
    if isinstance(record, dict) and record:
        key = rng.choice(list(record))
        roll = rng.random()
        if roll < 0.15:
            del record[key]
        elif roll < 0.25:
            record["-type"] = "x"
        elif roll < 0.6 and isinstance(record[key], (dict, list, tuple)) and depth < 6:
            if isinstance(record[key], tuple):
                name, body = record[key]
                record[key] = (name + "x", body) if rng.random() < 0.3 else (name, body)
                _damage(body, rng, depth + 1)
            else:
                _damage(record[key], rng, depth + 1)
        else:
            record[key] = rng.choice(_ODD_VALUES)
    elif isinstance(record, list) and record:
        index = rng.randrange(len(record))
        record[index] = rng.choice(_ODD_VALUES)


def test_odd_records_encode_or_fail_exactly_as_with_fastavro(
    catalog: SchemaCatalog, samples: list[Any]
) -> None:
    fast, reference = AvroSerde(catalog), _fastavro_only(catalog)
    rng = random.Random(3)
    for contract, record in samples[::2]:
        for _ in range(8):
            damaged = copy.deepcopy(record)
            _damage(damaged, rng)
            expected = _outcome(lambda r=damaged, c=contract: reference.serialize(r, c))
            assert _outcome(lambda r=damaged, c=contract: fast.serialize(r, c)) == expected


def test_reading_an_older_version_resolves_as_with_fastavro(catalog: SchemaCatalog) -> None:
    fast, reference = AvroSerde(catalog), _fastavro_only(catalog)
    older, newer = catalog.get("PhoneContactEvent", 1), catalog.latest("PhoneContactEvent")
    assert older is not newer
    records = []
    for event in example_events("phone"):
        with contextlib.suppress(ContractViolation):  # a v2 example v1 cannot express
            records.append(from_json(older, event))
    assert records
    for record in records:
        data = reference.serialize(record, older)
        assert fast.deserialize(data, newer) == reference.deserialize(data, newer)
        assert fast.deserialize(data) == reference.deserialize(data)
