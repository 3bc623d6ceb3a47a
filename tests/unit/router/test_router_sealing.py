"""Sealing ahead (`streams.router.sealing`): the helper's keys follow the router's notes,
and the router keeps a helper's sealed bytes only when they are under the key it chose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from processors.crypto import DecryptionFailed, FieldCipher, new_data_key
from processors.pii import compile_paths, rewrite_pii
from processors.policy import Policy, parse_policy
from processors.pseudonym import Pseudonymiser
from processors.routing import NO_RESTRICTIONS
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_COMNEXIO, CONTACT_ORES, raw_topic
from schemas.validation import from_json
from streams.plaintext import open_event, vault_lookup
from streams.router.decode import Decoded, EventDecoder
from streams.router.dedup import DedupWindow
from streams.router.directory import CIPHER_ENTRY_BYTES, SubjectDirectory
from streams.router.helper import DecodeHelper, DecoderConfig
from streams.router.limits import OutputLimits
from streams.router.pipeline import BatchOutcome, RouterPipeline
from streams.router.sealing import HeldKeys, KeyNote, KeyNotes
from streams.settings import PROJECT_ROOT
from streams.topics import load_topics
from tests.unit.router.conftest import MASTER_KEY, PSEUDONYM_KEY

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
A, B, C = ("phone", "d-a"), ("email", "d-b"), ("phone", "d-c")


def _note(
    digests: tuple[tuple[str, str], ...], key_id: str, expires_at: datetime = LATER
) -> KeyNote:
    return KeyNote(digests, key_id, new_data_key(), expires_at)


def test_held_keys_lead_from_digests_to_one_key_until_dropped_or_expired() -> None:
    keys = HeldKeys()
    keys.learn(KeyNotes((_note((A, B), "k-1"), _note((C,), "k-2", NOW + timedelta(minutes=1))), ()))
    assert keys.cipher_for((A,)).key_id == keys.cipher_for((B, A)).key_id == "k-1"  # type: ignore[union-attr]
    assert keys.cipher_for((A, C)) is None  # the digests disagree: the router will decide
    assert keys.cipher_for((("email", "d-unknown"),)) is None
    keys.learn(KeyNotes((), ("k-1",)))  # the router dropped it (erasure, eviction)
    assert keys.cipher_for((A,)) is None
    assert not keys.holds("k-1")
    keys.expire(NOW + timedelta(seconds=59))
    assert keys.holds("k-2")
    keys.expire(NOW + timedelta(minutes=1))  # the router's own expiry for it
    assert keys.cipher_for((C,)) is None
    assert len(keys) == 0
    # Learnt again after it expired, with the router's new expiry: the old one is spent.
    keys.learn(KeyNotes((_note((C,), "k-2", NOW + timedelta(minutes=9)),), ()))
    keys.expire(NOW + timedelta(minutes=2))
    assert keys.holds("k-2")


def test_held_keys_stay_within_their_bounds_least_recently_used_out_first() -> None:
    keys = HeldKeys(max_keys=2, max_digests=3)
    keys.learn(KeyNotes((_note((A,), "k-1"), _note((B,), "k-2")), ()))
    assert keys.cipher_for((A,)) is not None  # k-1 used: k-2 is the least recent
    keys.learn(KeyNotes((_note((C,), "k-3"),), ()))
    assert len(keys) == 2
    assert keys.holds("k-1")
    assert not keys.holds("k-2")
    keys.learn(KeyNotes((_note((("email", "d-d"),), "k-1"),), ()))
    assert keys.cipher_for((A,)) is None  # its digest was the oldest of four
    assert keys.cipher_for((("email", "d-d"),)).key_id == "k-1"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))


TOPICS = {raw_topic(channel): channel for channel in CHANNEL_CONTRACTS}
EXPECTED = {raw_topic(channel): name for channel, name in CHANNEL_CONTRACTS.items()}


def _decoder(catalog: SchemaCatalog, policy: Policy, keys: HeldKeys | None) -> EventDecoder:
    return EventDecoder(
        catalog, Pseudonymiser(PSEUDONYM_KEY), policy, TOPICS, EXPECTED, 512 * 1024, keys
    )


def _events(catalog: SchemaCatalog) -> list[tuple[str, bytes | None]]:
    """The phone channel's examples, the same person twice each (two event ids)."""
    serde, contract = AvroSerde(catalog), catalog.latest(CHANNEL_CONTRACTS["phone"])
    events = []
    for number, event in enumerate(example_events("phone") * 2):
        envelope = {**event["envelope"], "event_id": f"00000000-0000-4000-8000-{number:012d}"}
        value = serde.serialize(from_json(contract, {**event, "envelope": envelope}), contract)
        events.append((raw_topic("phone"), value))
    return events


def _values(serde: AvroSerde, value: bytes, decrypt: Any) -> dict[str, Any]:
    contract, record = serde.deserialize(value)
    rewrite_pii(record, compile_paths(contract.pii_fields), decrypt)
    return record


def test_the_decoder_seals_ahead_under_a_held_key_and_gives_the_cuts_back_on_demand(
    catalog: SchemaCatalog, policy: Policy
) -> None:
    plain = _decoder(catalog, policy, None).decode_batch(_events(catalog), NOW)
    keys = HeldKeys()
    ahead = _decoder(catalog, policy, keys)
    sealable = [d for d in plain if isinstance(d, Decoded) and d.pii]
    assert sealable
    assert all(d.sealed is None and d.key_id is None for d in plain)
    cipher = FieldCipher("k-held", key := new_data_key())
    keys.learn(KeyNotes((KeyNote(sealable[0].digests, "k-held", key, LATER),), ()))
    serde = AvroSerde(catalog)
    sealed_ahead = 0
    for before, value, after in zip(
        plain, _events(catalog), ahead.decode_batch(_events(catalog), NOW), strict=True
    ):
        assert isinstance(before, Decoded)
        assert isinstance(after, Decoded)
        if after.key_id is None:  # another person, or nothing personal to seal
            assert after == before
            continue
        sealed_ahead += 1
        assert after.key_id == "k-held"
        assert after.chunks == after.pii == ()
        assert (
            after._replace(chunks=before.chunks, pii=before.pii, sealed=None, key_id=None) == before
        )
        assert after.sealed is not None
        assert b"cf1." in after.sealed
        assert ahead.seal_plan(value[1] or b"") == (before.chunks, before.pii)
        opened = _values(serde, after.sealed, lambda path, token: cipher.decrypt(token, path))
        assert opened == _values(serde, value[1] or b"", lambda _path, text: text)
    # every event whose digests all lead to the key (a subset of the noted digests)
    noted = set(sealable[0].digests)
    assert sealed_ahead == sum(1 for d in sealable if set(d.digests) <= noted) > 1
    # Past the router's expiry for the key, nothing is sealed ahead.
    later = ahead.decode_batch(_events(catalog), LATER)
    assert all(isinstance(d, Decoded) and d.key_id is None for d in later)


def _pipeline(
    catalog: SchemaCatalog, policy: Policy, directory: SubjectDirectory
) -> RouterPipeline:
    return RouterPipeline(
        topics=load_topics(PROJECT_ROOT / "infra" / "topics.yaml"),
        schemas=catalog,
        policy=policy,
        directory=directory,
        subject_status=lambda _subject: NO_RESTRICTIONS,
        dedup=DedupWindow(1000),
        limits=OutputLimits.fixed(),
        max_event_bytes=512 * 1024,
    )


class _Record:
    def __init__(self, topic: str, value: bytes | None, offset: int) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def _notes(
    outcome: BatchOutcome, directory: SubjectDirectory, key_id: str | None = None
) -> KeyNotes:
    """What the worker tells its helper after `outcome` (`key_id`: a wrong key instead)."""
    learned = []
    for digests, subject in outcome.sealed_here.items():
        cipher, expires_at = directory.cached_cipher(subject), directory.key_expires_at(subject)
        assert cipher is not None
        assert expires_at is not None
        if key_id is None:
            learned.append(KeyNote(digests, cipher.key_id, cipher.data_key(), expires_at))
        else:
            learned.append(KeyNote(digests, key_id, new_data_key(), expires_at))
    return KeyNotes(tuple(learned), ())


@pytest.mark.parametrize("guess", ["right key", "wrong key"])
def test_the_router_keeps_what_was_sealed_ahead_only_under_the_key_it_chose(
    guess: str,
    catalog: SchemaCatalog,
    policy: Policy,
    directory: SubjectDirectory,
    sessions: sessionmaker[Session],
) -> None:
    pipeline = _pipeline(catalog, policy, directory)
    events = _events(catalog)
    half = len(events) // 2
    first = [_Record(t, v, n) for n, (t, v) in enumerate(events[:half])]
    outcome = pipeline.process(first, NOW)  # no helper yet: the router seals them all
    assert outcome.counts["sealed", "router"] == len(outcome.sealed_here) > 0
    assert outcome.counts["sealed", "ahead"] == 0
    keys = HeldKeys()
    keys.learn(_notes(outcome, directory, None if guess == "right key" else "k-wrong"))
    second = [_Record(t, v, half + n) for n, (t, v) in enumerate(events[half:])]
    decoded = _decoder(catalog, policy, keys).decode_batch([(t, v) for t, v in events[half:]], NOW)
    assert (
        sum(1 for d in decoded if isinstance(d, Decoded) and d.sealed)
        == outcome.counts["sealed", "router"]
    )
    again = pipeline.route(second, decoded, NOW)
    if guess == "right key":
        assert again.counts["sealed", "ahead"] == outcome.counts["sealed", "router"]
        assert again.counts["sealed", "router"] == 0
        assert not again.sealed_here
    else:  # sealed ahead under a key the subject does not have: sealed again here
        assert again.counts["sealed", "ahead"] == 0
        assert again.counts["sealed", "router"] == outcome.counts["sealed", "router"]
    serde = AvroSerde(catalog)
    plain = {}
    for _, value in events[half:]:
        record = _values(serde, value or b"", lambda _path, text: text)
        plain[record["envelope"]["event_id"]] = record
    tagged = [o for o in again.outputs if o.topic in (CONTACT_ORES, CONTACT_COMNEXIO)]
    assert len(tagged) == len(plain)
    with sessions() as session:
        for output in tagged:
            _, record = serde.deserialize(output.value)
            opened = open_event(serde, record, MASTER_KEY, vault_lookup(session))
            assert opened == plain[opened["envelope"]["event_id"]]
    wrong = FieldCipher("k-wrong", new_data_key())
    _, record = serde.deserialize(tagged[0].value)
    _, record = serde.deserialize(tagged[0].value)
    with pytest.raises(DecryptionFailed):
        _values(serde, record["event"], lambda path, token: wrong.decrypt(token, path))


def test_the_directory_tells_of_every_key_that_leaves_its_cache(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, key_ttl=timedelta(minutes=5))
    dropped: list[str] = []
    directory.on_key_dropped = dropped.append
    people = [(("phone", f"{n:064x}"),) for n in range(4)]
    subjects = directory.resolve(people, NOW)
    key_id = {s: directory.cipher(s).key_id for s in subjects if s}
    erased, aged = subjects[0], subjects[1]
    assert erased
    assert aged
    directory.forget(erased)  # its erasure was read
    assert dropped == [key_id[erased]]
    directory.expire_keys(NOW + timedelta(minutes=5))  # every key is as old
    assert sorted(dropped) == sorted(key_id.values())
    assert all(directory.key_expires_at(s) is None for s in key_id)
    # Evicted to hold the budget: told too.
    small = SubjectDirectory(
        sessions, pseudonymiser, MASTER_KEY, cache_bytes=3 * CIPHER_ENTRY_BYTES
    )
    evicted: list[str] = []
    small.on_key_dropped = evicted.append
    held = [s for s in small.resolve([(("phone", f"{n:064x}"),) for n in range(4, 12)], NOW) if s]
    assert small.evicted > 0
    assert evicted
    assert sorted(evicted) == sorted(
        key
        for key, subject in _key_ids(sessions).items()
        if subject in held and not small.holds_key(subject)
    )


def test_the_helper_process_seals_ahead_and_drops_what_it_is_told(
    catalog: SchemaCatalog, policy: Policy
) -> None:
    events = _events(catalog)
    plain = _decoder(catalog, policy, None).decode_batch(events, NOW)
    person = next(d for d in plain if isinstance(d, Decoded) and d.pii)
    helper = DecodeHelper(DecoderConfig(PSEUDONYM_KEY, policy, TOPICS, EXPECTED, 512 * 1024))
    try:
        assert not any(
            d.key_id for d in helper.submit(events, NOW).result() if isinstance(d, Decoded)
        )
        helper.tell(KeyNotes((KeyNote(person.digests, "k-1", new_data_key(), LATER),), ()))
        ahead = [
            d for d in helper.submit(events, NOW).result() if isinstance(d, Decoded) and d.key_id
        ]
        assert ahead
        assert {d.key_id for d in ahead} == {"k-1"}
        helper.tell(KeyNotes((), ("k-1",)))  # erased (or evicted) in the router
        assert not any(
            d.key_id for d in helper.submit(events, NOW).result() if isinstance(d, Decoded)
        )
        helper.tell(KeyNotes((KeyNote(person.digests, "k-1", b"short", LATER),), ()))  # refused
        assert len(helper.submit(events, NOW).result()) == len(events)  # it goes on
    finally:
        helper.close()


def _key_ids(sessions: sessionmaker[Session]) -> dict[str, str]:
    """key id -> subject, from the ledger's vault."""
    with sessions() as session:
        rows = session.execute(text("SELECT key_id, subject_pseudonym FROM subject_keys"))
        return {key_id: subject for key_id, subject in rows}
