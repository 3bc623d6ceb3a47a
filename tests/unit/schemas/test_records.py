"""The typed record builders produce records their contracts accept, field for field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import records
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde(SchemaCatalog.load())


def _round_trip(serde: AvroSerde, record: dict[str, object], contract: str) -> object:
    catalog = SchemaCatalog.load()
    _, back = serde.deserialize(serde.serialize(record, catalog.latest(contract)), contract)
    return back


def test_a_dead_letter_keeps_bytes_and_a_reference_keeps_size_and_digest(serde) -> None:  # type: ignore[no-untyped-def]
    letter = records.dead_letter(
        source_topic="contact.raw.chat.v1", source_partition=2, source_offset=7,
        stage="decode", reason_code="malformed", reason="payload too short",
        original_key=b"k", original_value=b"v", failed_at=NOW,
    )  # fmt: skip
    assert _round_trip(serde, letter, "DeadLetter") == letter
    reference = records.dead_letter(
        source_topic="contact.raw.chat.v1", source_partition=2, source_offset=8,
        stage="produce", reason_code="too_large", reason="does not fit",
        original_key=None, original_value=None, failed_at=NOW,
        original_size=3_000_000, original_sha256="ab" * 32,
    )  # fmt: skip
    assert _round_trip(serde, reference, "DeadLetter") == reference
    assert records.dead_letter_key("contact.raw.chat.v1", 2, 7) == b"contact.raw.chat.v1:2:7"


def test_a_retention_record_is_held_exactly_when_it_has_reasons(serde) -> None:  # type: ignore[no-untyped-def]
    fields = dict(
        recording_id="rec-1", contact_id="call-1", channel="phone", recording_kind="call_audio",
        media_ref=None, controller="ORES", purpose="contact_handling", subject_pseudonym="p",
        ended_at=NOW, retain_until=NOW, policy_version="2026-01",
    )  # fmt: skip
    standard = records.recording_retention(**fields)  # type: ignore[arg-type]
    held = records.recording_retention(**fields, hold_reasons=["fraud", "complaint"])  # type: ignore[arg-type]
    assert (standard["state"], standard["hold_reasons"]) == ("standard", [])
    assert (held["state"], held["hold_reasons"]) == ("held", ["complaint", "fraud"])
    assert _round_trip(serde, held, "RecordingRetention") == held


def test_a_subject_state_round_trips_and_a_missing_field_fails_where_it_is_built(serde) -> None:  # type: ignore[no-untyped-def]
    state = records.subject_state(
        subject_pseudonym="p", restricted=True, objected_purposes={"coaching"}, erased=False,
        suppressed_from_surveys=False, updated_at=NOW, request_id="dsr-1",
    )  # fmt: skip
    assert _round_trip(serde, state, "SubjectState") == state
    with pytest.raises(TypeError, match="restricted"):
        records.subject_state(  # type: ignore[call-arg]
            subject_pseudonym="p", objected_purposes=(), erased=False,
            suppressed_from_surveys=False, updated_at=NOW, request_id=None,
        )  # fmt: skip
