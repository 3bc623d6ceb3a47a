"""The router's subject directory on every backend: one ledger transaction per batch
(subjects, keys, footprints), savepoints for retries, merges across batches."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import streams.router.directory as directory_module
from processors.crypto import unwrap_key
from processors.pseudonym import Pseudonymiser
from streams.ledger.models import SubjectAlias, SubjectFootprint, SubjectKey
from streams.router.directory import LedgerWriteFailed, SubjectDirectory

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 29, 0, 30, 0, 654321, tzinfo=UTC)
MASTER_KEY = b"m" * 32
Digest = Callable[[str], str]


@pytest.fixture
def directory(sessions: sessionmaker[Session]) -> SubjectDirectory:
    return SubjectDirectory(sessions, Pseudonymiser(b"p" * 32), MASTER_KEY)


def _live_keys(sessions: sessionmaker[Session], subject: str) -> list[SubjectKey]:
    with sessions() as session:
        keys = list(
            session.scalars(
                select(SubjectKey).where(
                    SubjectKey.subject_pseudonym == subject, SubjectKey.shredded_at.is_(None)
                )
            )
        )
        session.expunge_all()
    return keys


def test_a_batch_writes_subjects_keys_and_footprints_in_one_transaction(
    directory: SubjectDirectory, sessions: sessionmaker[Session], digest: Digest
) -> None:
    with directory.batch():
        first, second = directory.resolve(
            [(("phone", digest("a")),), (("email", digest("b")),)], T0
        )
        directory.record_footprints({(first, "ORES", "phone"), (second, "ORES", "email")}, T0)
    assert directory.ledger_round_trips == 1
    # A later batch links both people: the older subject survives, keys follow.
    later = T0 + timedelta(minutes=5)
    with directory.batch():
        (linked,) = directory.resolve([(("phone", digest("a")), ("email", digest("b")))], later)
        directory.record_footprints({(linked, "ORES", "phone"), (linked, "ORES", "chat")}, later)
    assert linked in {first, second}
    retired = second if linked == first else first
    with sessions() as session:
        aliases = session.execute(
            select(SubjectAlias.alias_pseudonym, SubjectAlias.canonical_pseudonym)
        )
        assert [tuple(row) for row in aliases] == [(retired, linked)]
        family = session.scalars(  # privacy requests resolve over the subject's family
            select(SubjectFootprint.channel).where(
                SubjectFootprint.subject_pseudonym.in_([linked, retired])
            )
        )
        assert sorted(set(family)) == ["chat", "email", "phone"]
    keys = _live_keys(sessions, linked)  # its own and the retired subject's, moved
    assert len(keys) == 2
    for key in keys:
        assert key.wrapped_key is not None
        assert unwrap_key(MASTER_KEY, key.key_id, key.wrapped_key)  # opens with the master key


def test_a_retry_inside_the_batch_rolls_back_to_its_savepoint_and_stores_the_key(
    directory: SubjectDirectory,
    sessions: sessionmaker[Session],
    digest: Digest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_add_keys, calls = directory_module.add_keys, []

    def add_keys_failing_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # as a conflict with another router would
            raise IntegrityError("INSERT INTO subject_keys", {}, Exception("conflict"))
        real_add_keys(*args, **kwargs)

    monkeypatch.setattr(directory_module, "add_keys", add_keys_failing_once)
    with directory.batch():
        (subject,) = directory.resolve([(("phone", digest("retried")),)], T0)
        directory.record_footprints({(subject, "COMNEXIO", "phone")}, T0)
    assert len(calls) == 2
    (key,) = _live_keys(sessions, subject)
    assert key.key_id == directory.cipher(subject).key_id
    with sessions() as session:
        assert session.scalars(select(SubjectFootprint.controller)).all() == ["COMNEXIO"]


def test_an_error_in_the_batch_leaves_nothing_in_the_ledger(
    directory: SubjectDirectory, sessions: sessionmaker[Session], digest: Digest
) -> None:
    def failing_batch() -> None:
        with directory.batch():
            directory.resolve([(("phone", digest("lost")),)], T0)
            raise RuntimeError("the batch failed before its commit")

    with pytest.raises(RuntimeError):
        failing_batch()
    with sessions() as session:
        assert session.scalars(select(SubjectKey)).all() == []


def test_deferred_rows_are_written_from_another_thread_and_a_lost_race_fails_the_write(
    sessions: sessionmaker[Session], digest: Digest
) -> None:
    """The worker's mode: a batch only reads, a thread writes its rows while the next
    batch is routed (here a merge, which waits for them), and a write that meets rows
    another writer made first fails with the error's type only."""
    deferred = SubjectDirectory(sessions, Pseudonymiser(b"p" * 32), MASTER_KEY, defer_writes=True)
    with deferred.batch() as first:
        a, b = deferred.resolve([(("phone", digest("a")),), (("email", digest("b")),)], T0)
    assert first.write is not None
    assert _live_keys(sessions, a or "") == []
    later = T0 + timedelta(minutes=5)
    with ThreadPoolExecutor(1) as writer:
        written = writer.submit(deferred.write, first.write)
        with deferred.batch() as second:
            (linked,) = deferred.resolve([(("phone", digest("a")), ("email", digest("b")))], later)
        written.result()
    assert second.write is None, "a merge writes in its own transaction"
    assert linked in {a, b}
    with sessions() as session:
        assert list(session.scalars(select(SubjectAlias.alias_pseudonym))) == [
            ({a, b} - {linked}).pop()
        ]
    assert len(_live_keys(sessions, linked or "")) == 2, "both keys follow the survivor"

    with deferred.batch() as third:
        (c,) = deferred.resolve([(("phone", digest("c")),)], later)
    rival = SubjectDirectory(sessions, Pseudonymiser(b"p" * 32), MASTER_KEY)
    assert rival.resolve([(("phone", digest("c")),)], later) == [c]
    assert third.write is not None
    with pytest.raises(LedgerWriteFailed, match=r"\(IntegrityError\)$"):
        deferred.write(third.write)
    assert [k.key_id for k in _live_keys(sessions, c or "")] == [rival.cipher(c or "").key_id]
