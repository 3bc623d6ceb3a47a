"""SchemaCatalog: loading, lookups, inlining of shared types, PII paths, clear load errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import (
    CHANNEL_CONTRACTS,
    ContractLoadError,
    SchemaCatalog,
    UnknownContract,
    UnknownFingerprint,
)

NS = "be.comnexio.contactflow"
SUBJECT_PII = (
    "envelope.subject.phone",
    "envelope.subject.email",
    "envelope.subject.social_handle",
    "envelope.subject.social_handle.handle",
    "envelope.subject.customer_ref",
)


def _crc64_avro(data: bytes) -> bytes:
    """The Avro specification's reference CRC-64-AVRO, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_reference_crc_matches_the_spec_test_vector() -> None:
    assert _crc64_avro(b'"int"') == (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_catalog_holds_every_contract(catalog: SchemaCatalog) -> None:
    short = {name.rsplit(".", 1)[1] for name in catalog.names()}
    assert short == {
        "PhoneContactEvent", "ChatContactEvent", "EmailContactEvent", "SurveyContactEvent",
        "SocialContactEvent", "TaggedContactEvent", "RecordingRetention", "RecordingExpired",
        "PrivacyRequest", "ControllerRequest", "ControllerInstruction", "DownstreamCommand",
        "Acknowledgement", "SubjectState", "AuditEvent", "DeadLetter", "QuarantinedEvent",
        "HoldSignal", "KpiFact", "KpiCell", "KpiFigure",
    }  # fmt: skip
    assert len(catalog) == len(list(catalog.contracts())) == 30
    assert set(CHANNEL_CONTRACTS.values()) <= set(catalog.names())


def test_lookups_by_short_name_full_name_version_and_fingerprint(catalog: SchemaCatalog) -> None:
    latest = catalog.latest("PhoneContactEvent")
    assert latest is catalog.latest(f"{NS}.PhoneContactEvent")
    assert (latest.name, latest.version, latest.label) == (
        f"{NS}.PhoneContactEvent",
        3,
        "PhoneContactEvent v3",
    )
    assert catalog.versions("PhoneContactEvent") == (1, 2, 3)
    first = catalog.get("PhoneContactEvent", 1)
    assert first.version == 1
    assert first != latest
    assert catalog.by_fingerprint(first.fingerprint) is first
    assert {c for c in catalog} == set(catalog.contracts())


def test_fingerprint_is_little_endian_crc64_of_the_canonical_form(catalog: SchemaCatalog) -> None:
    for contract in catalog.contracts():
        assert len(contract.fingerprint) == 8
        assert contract.fingerprint == _crc64_avro(contract.canonical.encode())
        assert contract.fingerprint_hex == contract.fingerprint.hex()


def test_unknown_lookups_raise_clear_errors(catalog: SchemaCatalog) -> None:
    with pytest.raises(UnknownContract, match="FaxContactEvent"):
        catalog.latest("FaxContactEvent")
    with pytest.raises(UnknownContract, match="PhoneContactEvent has no version 9"):
        catalog.get("PhoneContactEvent", 9)
    with pytest.raises(UnknownFingerprint, match="0011223344556677"):
        catalog.by_fingerprint(bytes.fromhex("0011223344556677"))


def test_shared_types_are_inlined_once_then_referenced_by_name(catalog: SchemaCatalog) -> None:
    social = catalog.latest("SocialContactEvent").canonical
    definition = f'{{"name":"{NS}.SocialPlatform","type":"enum"'
    assert social.count(definition) == 1
    # CommentReceived.platform comes after the envelope's SocialHandle: a reference by name.
    assert f'{{"name":"platform","type":"{NS}.SocialPlatform"}}' in social
    tagged = catalog.latest("TaggedContactEvent").canonical
    assert tagged.count(f'{{"name":"{NS}.Controller","type":"enum"') == 1


def test_pii_fields_of_phone_and_chat(catalog: SchemaCatalog) -> None:
    assert catalog.latest("PhoneContactEvent").pii_fields == (
        *SUBJECT_PII,
        "payload[CallbackRequested].callback_number",
    )
    assert catalog.latest("ChatContactEvent").pii_fields == (
        *SUBJECT_PII,
        "payload[ChatTranscript].messages[].text",
    )
    assert catalog.latest("PrivacyRequest").pii_fields == ("identifiers[].value",)
    assert catalog.latest("SubjectState").pii_fields == ()


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_invalid_json_names_the_file(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    (root / "SubjectState.v1.avsc").write_text('{"type": "record",')
    with pytest.raises(ContractLoadError, match=r"SubjectState\.v1\.avsc: invalid JSON at line 1"):
        SchemaCatalog.load(root)


def test_unknown_type_reference_names_the_file(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    _edit(root / "AuditEvent.v1.avsc", lambda d: d["fields"][0].update(type=f"{NS}.Nope"))
    with pytest.raises(ContractLoadError, match=r"AuditEvent\.v1\.avsc: references unknown type"):
        SchemaCatalog.load(root)


def test_field_without_doc_is_refused(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    _edit(root / "AuditEvent.v1.avsc", lambda d: d["fields"][2].pop("doc"))
    with pytest.raises(ContractLoadError, match=r"AuditEvent\.v1\.avsc: actor: every field needs"):
        SchemaCatalog.load(root)


def test_kind_without_payload_branch_is_refused(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()

    def add_kind(document: dict[str, Any]) -> None:
        document["fields"][1]["type"]["symbols"].append("survey_expired")

    _edit(root / "SurveyContactEvent.v1.avsc", add_kind)
    with pytest.raises(ContractLoadError, match="survey_expired must be served by exactly one"):
        SchemaCatalog.load(root)


def test_invalid_avro_names_the_file(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    _edit(root / "SubjectState.v1.avsc", lambda d: d["fields"][1].update(default="yes"))
    with pytest.raises(ContractLoadError, match=r"SubjectState\.v1\.avsc: invalid Avro schema"):
        SchemaCatalog.load(root)


def test_file_and_record_names_must_agree(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    (root / "SubjectState.v1.avsc").rename(root / "SubjectStatus.v1.avsc")
    with pytest.raises(ContractLoadError, match="record name does not match the file name"):
        SchemaCatalog.load(root)


def test_a_new_version_must_change_the_wire_schema(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    text = (root / "SubjectState.v1.avsc").read_text().replace("Current privacy", "Privacy")
    (root / "SubjectState.v2.avsc").write_text(text)
    with pytest.raises(ContractLoadError, match="same wire schema"):
        SchemaCatalog.load(root)


def test_versions_must_not_have_gaps(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    (root / "PhoneContactEvent.v3.avsc").rename(root / "PhoneContactEvent.v4.avsc")
    with pytest.raises(ContractLoadError, match=r"without gaps \(found v1, v2, v4\)"):
        SchemaCatalog.load(root)
