"""Unwrapped data keys in the router's memory: dropped at once when the subject-state topic
says erased, held at most `key_ttl`, never put back by a rollback, and never made again
for a subject the ledger holds as erased."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from processors.policy import parse_policy
from processors.pseudonym import Pseudonymiser
from processors.routing import NO_RESTRICTIONS, SubjectStatus
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_DEADLETTER, CONTACT_ORES, raw_topic
from schemas.validation import from_json
from streams.ledger import KeyVault, SubjectIndex
from streams.ledger.models import Subject, SubjectFootprint, SubjectKey
from streams.router import state as state_module
from streams.router.dedup import DedupWindow
from streams.router.directory import SubjectDirectory
from streams.router.limits import OutputLimits
from streams.router.pipeline import BatchOutcome, RouterPipeline
from streams.router.state import SubjectStateTable
from streams.settings import PROJECT_ROOT, Settings
from streams.topics import load_topics

MASTER_KEY = b"m" * 32  # as in conftest.py
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
TTL = timedelta(minutes=5)
STATE_TOPIC = "unit.privacy.subject-state.v1"
PREFIX = "unit."
T = TypeVar("T")


def d(label: str) -> str:
    """A stand-in identifier digest (hex), never derived from a real identifier."""
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


def _keys_of(sessions: sessionmaker[Session], subject: str) -> list[tuple[str, bool]]:
    """(key id, shredded?) of the subject's keys in the ledger."""
    with sessions() as session:
        rows = session.execute(
            select(SubjectKey.key_id, SubjectKey.shredded_at).where(
                SubjectKey.subject_pseudonym == subject
            )
        )
        return sorted((key_id, shredded is not None) for key_id, shredded in rows)


def _erase_in_ledger(sessions: sessionmaker[Session], subject: str, when: datetime) -> None:
    """What the privacy app does to the ledger before it publishes the erased state."""
    with sessions.begin() as session:
        KeyVault(session).shred_subject(subject, when)
        SubjectIndex(session).mark_erased(subject, when)


class _BatchFailed(Exception):
    """Raised at the end of a batch a test wants rolled back."""


def in_failed_batch(directory: SubjectDirectory, work: Callable[[], T]) -> T:
    """Run `work` in a batch that fails after it (the ledger transaction rolls back)."""
    done: list[T] = []

    def run() -> None:
        with directory.batch():
            done.append(work())
            raise _BatchFailed

    with pytest.raises(_BatchFailed):
        run()
    return done[0]


@pytest.fixture
def directory(sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser) -> SubjectDirectory:
    return SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, key_ttl=TTL)


# -- the subject-state table tells the directory of erasures -------------------------------


@dataclass
class _Message:
    _key: bytes | None
    _value: bytes | None
    _offset: int

    def error(self) -> None:
        return None

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return STATE_TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _StateConsumer:
    """Stands in for the confluent_kafka Consumer of the state table: one partition, the
    records a test queues (`queued`)."""

    queued: list[_Message] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None})})

    def assign(self, partitions: list[Any]) -> None:
        pass

    def consume(self, count: int, timeout: float) -> list[_Message]:
        messages, _StateConsumer.queued = _StateConsumer.queued[:count], []
        return messages

    def close(self) -> None:
        pass


@pytest.fixture
def serde(catalog: SchemaCatalog) -> AvroSerde:
    return AvroSerde(catalog)


@pytest.fixture
def state_table(
    monkeypatch: pytest.MonkeyPatch, serde: AvroSerde, directory: SubjectDirectory
) -> SubjectStateTable:
    monkeypatch.setattr(state_module, "Consumer", _StateConsumer)
    _StateConsumer.queued = []
    return SubjectStateTable({}, STATE_TOPIC, serde, on_erased=directory.forget_key)


def _queue_state(serde: AvroSerde, catalog: SchemaCatalog, subject: str, **state: Any) -> None:
    value = {
        "subject_pseudonym": subject, "restricted": False, "objected_purposes": [],
        "erased": False, "suppressed_from_surveys": False, "updated_at": T0,
        "request_id": None, **state,
    }  # fmt: skip
    encoded = serde.serialize(value, catalog.latest("SubjectState"))
    _StateConsumer.queued.append(_Message(subject.encode(), encoded, len(_StateConsumer.queued)))


def test_an_erased_state_drops_the_subjects_key_as_soon_as_it_is_read(
    directory: SubjectDirectory,
    state_table: SubjectStateTable,
    serde: AvroSerde,
    catalog: SchemaCatalog,
) -> None:
    erased, restricted, other = directory.resolve(
        [(("phone", d("e")),), (("phone", d("r")),), (("phone", d("o")),)], T0
    )
    assert directory.cached_keys == 3
    _queue_state(serde, catalog, restricted, restricted=True)
    _queue_state(serde, catalog, erased, erased=True, restricted=True)
    _StateConsumer.queued.append(_Message(other.encode(), None, 9))  # a tombstone

    assert state_table.poll(0) == 3

    assert not directory.holds_key(erased)  # without waiting for an event of the subject
    assert directory.holds_key(restricted)
    assert directory.holds_key(other)
    assert state_table.status(erased).erased


def test_an_erasure_needs_no_open_batch_and_no_rollback_brings_the_key_back(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (kept,) = directory.resolve([(("phone", d("kept")),)], T0)

    def work() -> tuple[str | None, bool, bool]:
        (new,) = directory.resolve([(("phone", d("new")),)], T0)
        held = (directory.holds_key(str(new)), directory.holds_key(kept))
        directory.forget_key(kept)  # an erasure read while the batch is open
        return new, *held

    new, new_held, kept_held = in_failed_batch(directory, work)
    assert new is not None
    assert new_held
    assert kept_held
    assert not directory.holds_key(kept)  # the undo removed `new`'s key, restored nothing
    assert not directory.holds_key(new)
    assert directory.cached_subject((("phone", d("new")),)) is None
    with sessions() as session:
        assert session.get(Subject, new) is None

    directory.forget_key(kept)  # and with no batch open: nothing to undo, nothing raised
    assert directory.cipher(directory.resolve([(("phone", d("kept")),)], T0)[0]) is not None


def test_a_retried_attempt_in_a_batch_undoes_only_its_own_changes(
    directory: SubjectDirectory, pseudonymiser: Pseudonymiser
) -> None:
    second = pseudonymiser.subject_pseudonym(d("second"))

    def failed_attempt() -> None:
        with directory._journaled():
            directory.resolve([(("phone", d("second")),)], T0)
            assert directory.holds_key(second)
            raise _BatchFailed

    with directory.batch():
        (first,) = directory.resolve([(("phone", d("first")),)], T0)
        with pytest.raises(_BatchFailed):
            failed_attempt()
    assert first is not None
    assert directory.holds_key(first)
    assert directory.cached_subject((("phone", d("first")),)) == first
    assert not directory.holds_key(second)
    assert directory.cached_subject((("phone", d("second")),)) is None


def test_a_subject_erased_in_the_ledger_gets_no_new_key_when_its_own_has_gone(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (subject,) = directory.resolve([(("phone", d("gone")),)], T0)
    (key_id,) = (k for k, _ in _keys_of(sessions, subject))
    _erase_in_ledger(sessions, subject, T0 + timedelta(minutes=1))
    directory.forget_key(subject)  # aged out, or evicted: its state not read yet

    directory.ensure_ciphers({subject}, T0 + timedelta(minutes=2))

    assert directory.cached_cipher(subject) is None
    assert _keys_of(sessions, subject) == [(key_id, True)]  # shredded, and no other made


# -- the TTL of an unwrapped key -----------------------------------------------------------


def test_a_key_older_than_the_ttl_is_dropped_and_unwrapped_again_from_the_vault(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (subject,) = directory.resolve([(("phone", d("a")),)], T0)
    first = directory.cipher(subject)
    trips = directory.ledger_round_trips

    directory.ensure_ciphers({subject}, T0 + TTL - timedelta(seconds=1))  # used: no renewal
    assert directory.cipher(subject) is first
    assert directory.ledger_round_trips == trips

    directory.ensure_ciphers({subject}, T0 + TTL)
    again = directory.cipher(subject)
    assert again is not first
    assert again.key_id == first.key_id  # the same key, from the vault
    assert directory.ledger_round_trips == trips + 1
    assert _keys_of(sessions, subject) == [(first.key_id, False)]
    token = first.encrypt("x", "f")
    assert again.decrypt(token, "f") == "x"

    directory.ensure_ciphers({subject}, T0 + 2 * TTL - timedelta(seconds=1))
    assert directory.cipher(subject) is again  # its age counts from the new unwrap


def test_keys_age_out_with_no_event_and_no_batch(directory: SubjectDirectory) -> None:
    (early,) = directory.resolve([(("phone", d("early")),)], T0)
    (late,) = directory.resolve([(("phone", d("late")),)], T0 + timedelta(minutes=2))

    assert directory.expire_keys(T0 + TTL - timedelta(microseconds=1)) == 0
    assert directory.expire_keys(T0 + TTL) == 1
    assert not directory.holds_key(early)
    assert directory.holds_key(late)
    assert directory.expire_keys(T0 + timedelta(minutes=2) + TTL) == 1
    assert directory.cached_keys == 0
    assert directory.cached_subject((("phone", d("early")),)) == early  # only the key goes


def test_a_rolled_back_reload_leaves_no_key_and_the_next_one_works(
    directory: SubjectDirectory,
) -> None:
    (subject,) = directory.resolve([(("phone", d("a")),)], T0)
    later = T0 + TTL

    def reload() -> bool:
        directory.ensure_ciphers({subject}, later)
        return directory.holds_key(subject)

    assert in_failed_batch(directory, reload)
    assert not directory.holds_key(subject)
    directory.ensure_ciphers({subject}, later)
    assert directory.holds_key(subject)
    assert directory.expire_keys(later + TTL) == 1


def test_the_settings_default_to_a_five_minute_ttl_and_a_256_mib_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    assert (settings.router_key_ttl_s, settings.router_cache_mb) == (300.0, 256)
    monkeypatch.setenv("CONTACTFLOW_ROUTER_KEY_TTL_S", "60")
    monkeypatch.setenv("CONTACTFLOW_ROUTER_CACHE_MB", "64")
    assert (Settings().router_key_ttl_s, Settings().router_cache_mb) == (60.0, 64)
    with pytest.raises(ValueError, match="router_key_ttl_s"):
        Settings(router_key_ttl_s=0)


# -- the pipeline: an erased subject's events after its key left ---------------------------


@pytest.fixture
def make_pipeline(
    catalog: SchemaCatalog, directory: SubjectDirectory
) -> Callable[[dict[str, SubjectStatus]], RouterPipeline]:
    topics = load_topics(PROJECT_ROOT / "infra" / "topics.yaml", prefix=PREFIX)
    policy = parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))

    def make(statuses: dict[str, SubjectStatus]) -> RouterPipeline:
        return RouterPipeline(
            topics=topics,
            schemas=catalog,
            policy=policy,
            directory=directory,
            subject_status=lambda subject: statuses.get(subject, NO_RESTRICTIONS),
            dedup=DedupWindow(1000),
            limits=OutputLimits.fixed(),
            max_event_bytes=512 * 1024,
        )

    return make


@dataclass
class _Record:
    _value: bytes
    _offset: int

    def topic(self) -> str:
        return PREFIX + raw_topic("phone")

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"contact-key"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def _calls(catalog: SchemaCatalog, serde: AvroSerde, count: int, start: int) -> list[_Record]:
    """`count` inbound calls of the same person, each under its own event id."""
    contract = catalog.latest(CHANNEL_CONTRACTS["phone"])
    call = next(e for e in example_events("phone") if e["kind"] == "inbound_call")
    records = []
    for number in range(start, start + count):
        event = {**call, "envelope": {**call["envelope"]}}
        event["envelope"]["event_id"] = f"00000000-0000-4000-8000-{number:012d}"
        event["envelope"]["contact_id"] = f"contact-{number}"
        records.append(_Record(serde.serialize(from_json(contract, event), contract), number))
    return records


def _topics(outcome: BatchOutcome) -> list[str]:
    return [output.topic.removeprefix(PREFIX) for output in outcome.outputs]


def test_an_erased_subjects_events_are_refused_and_no_key_comes_back(
    make_pipeline: Callable[[dict[str, SubjectStatus]], RouterPipeline],
    directory: SubjectDirectory,
    sessions: sessionmaker[Session],
    catalog: SchemaCatalog,
    serde: AvroSerde,
) -> None:
    statuses: dict[str, SubjectStatus] = {}
    pipeline = make_pipeline(statuses)
    first = pipeline.process(_calls(catalog, serde, 1, 1), T0)
    assert _topics(first) == [CONTACT_ORES]
    subject = first.outputs[0].key.decode()
    (key_id,) = (k for k, _ in _keys_of(sessions, subject))

    # Erased in the ledger, the key aged out, the state not read yet: refused all the same.
    _erase_in_ledger(sessions, subject, T0 + timedelta(minutes=1))
    later = T0 + TTL + timedelta(minutes=1)
    refused = pipeline.process(_calls(catalog, serde, 2, 10), later)
    assert _topics(refused) == [CONTACT_DEADLETTER] * 2
    assert refused.counts["dead_letter", "subject_erased"] == 2
    assert not directory.holds_key(subject)

    # Then the state arrives (`forget_key`), and the next events are refused as before.
    statuses[subject] = SubjectStatus(restricted=True, erased=True)
    directory.forget_key(subject)
    again = pipeline.process(_calls(catalog, serde, 1, 20), later)
    assert again.counts["dead_letter", "subject_erased"] == 1
    assert not directory.holds_key(subject)
    assert _keys_of(sessions, subject) == [(key_id, True)]
    with sessions() as session:
        footprints = session.scalar(select(func.count()).select_from(SubjectFootprint))
    assert footprints == 1  # the first event's only
