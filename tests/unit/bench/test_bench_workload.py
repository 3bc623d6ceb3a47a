"""The benchmark workload: deterministic, valid, and shaped like real contact-centre traffic."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from processors.identity import normalise_email, normalise_phone
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.serde import AvroSerde
from schemas.validation import from_json
from streams.dev.bench.contacts import UNKNOWN_SERVICE
from streams.dev.bench.workload import RawEvent, encode_workload, generate_workload

N = 3000


@pytest.fixture(scope="module")
def workload() -> list[RawEvent]:
    return generate_workload(N, seed=7)


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


def test_same_seed_same_events_other_seed_other_events(workload: list[RawEvent]) -> None:
    assert generate_workload(N, seed=7) == workload
    assert generate_workload(N, seed=8) != workload
    assert generate_workload(1)[0] == generate_workload(50)[0]


def test_exactly_n_events_with_unique_ids(workload: list[RawEvent]) -> None:
    assert len(workload) == N
    assert len({e.event["envelope"]["event_id"] for e in workload}) == N


def test_every_event_is_valid_for_its_channel_contract(
    workload: list[RawEvent], catalog: SchemaCatalog
) -> None:
    for item in workload:
        from_json(catalog.latest(CHANNEL_CONTRACTS[item.channel]), item.event)


def test_encoding_round_trips(workload: list[RawEvent], catalog: SchemaCatalog) -> None:
    encoded = encode_workload(workload[:200], catalog)
    serde = AvroSerde(catalog)
    assert sum(len(records) for records in encoded.values()) == 200
    for channel, records in encoded.items():
        for key, value in records:
            writer, record = serde.deserialize(value)
            assert writer.name == CHANNEL_CONTRACTS[channel]
            assert record["envelope"]["contact_id"].encode() == key


def test_all_five_channels_and_many_kinds(workload: list[RawEvent]) -> None:
    channels = Counter(e.channel for e in workload)
    assert set(channels) == set(CHANNEL_CONTRACTS)
    assert channels["phone"] > channels["social"]
    assert len({e.event["kind"] for e in workload}) >= 12


def _person_key(item: RawEvent) -> str | None:
    subject = item.event["envelope"]["subject"]
    if subject.get("phone"):
        return normalise_phone(subject["phone"]).value
    if subject.get("email"):
        return normalise_email(subject["email"]).value
    handle = subject.get("social_handle")
    return f"{handle['platform']}:{handle['handle']}" if handle else None


def test_repeat_callers_spelling_their_number_in_several_ways(workload: list[RawEvent]) -> None:
    contacts: dict[str, set[str]] = {}
    for item in workload:
        key = _person_key(item)
        if key is not None:
            contacts.setdefault(key, set()).add(item.event["envelope"]["contact_id"])
    per_person = Counter({key: len(ids) for key, ids in contacts.items()})
    repeaters = [key for key, count in per_person.items() if count > 1]
    assert len(repeaters) > len(per_person) // 5
    assert per_person.most_common(1)[0][1] >= 5  # a frequent caller
    spellings: dict[str, set[str]] = {}
    for item in workload:
        raw = item.event["envelope"]["subject"].get("phone")
        if raw:
            spellings.setdefault(normalise_phone(raw).value, set()).add(raw)
    assert max(len(s) for s in spellings.values()) >= 3


def test_chats_with_both_email_and_phone(workload: list[RawEvent]) -> None:
    chats = [e.event["envelope"]["subject"] for e in workload if e.channel == "chat"]
    both = [s for s in chats if s.get("email") and s.get("phone")]
    assert 0.4 < len(both) / len(chats) < 0.8


def test_bodies_and_transcripts_of_realistic_length(workload: list[RawEvent]) -> None:
    bodies = [e.event["payload"]["body"] for e in workload if e.channel == "email"]
    assert min(len(b) for b in bodies) >= 200
    assert sum(len(b) for b in bodies) / len(bodies) > 400
    transcripts = [
        sum(len(m["text"]) for m in e.event["payload"]["messages"])
        for e in workload
        if e.event["kind"] == "transcript_available"
    ]
    assert sum(transcripts) / len(transcripts) > 400
    text = " ".join(bodies)
    assert re.search("[éèàç]", text)  # French
    assert re.search("[äöüß]", text)  # German


def test_fake_identifiers_only(workload: list[RawEvent]) -> None:
    for item in workload:
        subject = item.event["envelope"]["subject"]
        if subject.get("phone"):
            assert normalise_phone(subject["phone"]).value.startswith("+3247")
        if subject.get("email"):
            assert normalise_email(subject["email"]).value.endswith("@example.org")


def test_a_few_contacts_name_an_unknown_service(workload: list[RawEvent]) -> None:
    unknown = [e for e in workload if e.event["envelope"]["service"] == UNKNOWN_SERVICE]
    assert 0 < len(unknown) < N // 50
