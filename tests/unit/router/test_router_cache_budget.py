"""The router's caches under a memory budget: least recently used entries leave first,
the estimate stays within the budget however much comes in, a rolled-back batch still
leaves the caches as they were, and the per-entry estimates are not below what the
entries take."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from processors.pseudonym import Pseudonymiser
from streams.ledger.models import Subject, SubjectKey
from streams.router.directory import (
    CIPHER_ENTRY_BYTES,
    DIGEST_ENTRY_BYTES,
    FOOTPRINT_ENTRY_BYTES,
    SubjectDirectory,
)

MASTER_KEY = b"m" * 32  # as in conftest.py
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SUBJECT_BYTES = DIGEST_ENTRY_BYTES + CIPHER_ENTRY_BYTES + FOOTPRINT_ENTRY_BYTES


def d(label: str | int) -> str:
    """A stand-in identifier digest (hex), never derived from a real identifier."""
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


class _BatchFailed(Exception):
    pass


def _in_failed_batch(directory: SubjectDirectory, work: Callable[[], None]) -> None:
    """Run `work` in a batch that fails after it (the ledger transaction rolls back)."""

    def run() -> None:
        with directory.batch():
            work()
            raise _BatchFailed

    with pytest.raises(_BatchFailed):
        run()


def _person(directory: SubjectDirectory, label: str | int, now: datetime = T0) -> str:
    """One event of a person: resolved, its key ready, its footprint recorded."""
    digests = (("phone", d(label)),)
    subject = directory.cached_subject(digests)
    if subject is None:
        (subject,) = directory.resolve([digests], now)
    assert subject is not None
    directory.ensure_ciphers({subject}, now)
    directory.record_footprints({(subject, "ORES", "phone")}, now)
    return subject


def _held(directory: SubjectDirectory, label: str | int, subject: str) -> bool:
    """Whether the person's digest, key and footprint are all cached."""
    return (
        directory.cached_subject((("phone", d(label)),)) == subject
        and directory.holds_key(subject)
        and (subject, "ORES", "phone") in directory._footprints
    )


def _count(sessions: sessionmaker[Session], entity: type[Subject] | type[SubjectKey]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(entity)) or 0


def test_the_least_recently_used_leave_first_and_a_used_one_stays(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    directory = SubjectDirectory(
        sessions, pseudonymiser, MASTER_KEY, cache_bytes=10 * SUBJECT_BYTES
    )
    subjects = {n: _person(directory, n) for n in range(10)}
    assert all(_held(directory, n, s) for n, s in subjects.items())
    assert directory.evicted == 0

    _person(directory, 2)  # person 2 calls again: now the most recently used
    trips = directory.ledger_round_trips
    for n in range(10, 15):
        subjects[n] = _person(directory, n)

    assert directory.cache_bytes() <= 10 * SUBJECT_BYTES
    held = {n for n, s in subjects.items() if _held(directory, n, s)}
    assert held == {2, *range(6, 15)}
    # Person 3, evicted, comes back: the ledger answers, with the subject and key it holds.
    key_before = _count(sessions, SubjectKey)
    assert _person(directory, 3) == subjects[3]
    assert _count(sessions, SubjectKey) == key_before
    assert directory.ledger_round_trips > trips + 5


def test_the_budget_holds_after_many_batches_and_the_ledger_stays_whole(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    budget = 200 * SUBJECT_BYTES
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, cache_bytes=budget)
    people = 0
    for batch in range(12):
        now = T0 + timedelta(seconds=batch)
        with directory.batch():
            pending = [
                (("phone", d(people + n)), ("email", d(f"e{people + n}"))) for n in range(100)
            ]
            subjects = directory.resolve(pending, now)
            known = [_person(directory, f"r{n}") for n in range(5)]  # seen every batch
            live = {s for s in [*subjects, *known] if s is not None}
            directory.ensure_ciphers(live, now)
            directory.record_footprints({(s, "ORES", "phone") for s in live}, now)
        people += 100
        assert directory.cache_bytes() <= budget
    assert directory.evicted > 0
    assert all(_held(directory, f"r{n}", _person(directory, f"r{n}")) for n in range(5))
    # Every subject has exactly one key: an evicted key is read back, never made again.
    assert _count(sessions, Subject) == _count(sessions, SubjectKey) == people + 5
    for n in range(0, people, 97):  # evicted long ago: resolved again from the ledger
        (subject,) = directory.resolve([(("email", d(f"e{n}")),)], T0 + timedelta(hours=1))
        assert subject == pseudonymiser.subject_pseudonym(d(n))
    assert _count(sessions, SubjectKey) == people + 5


def test_a_rolled_back_batch_leaves_a_full_cache_as_it_was(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    directory = SubjectDirectory(
        sessions, pseudonymiser, MASTER_KEY, cache_bytes=20 * SUBJECT_BYTES
    )
    subjects = {n: _person(directory, n) for n in range(25)}  # full: some evicted already
    held = {n for n, s in subjects.items() if _held(directory, n, s)}
    used = directory.cache_bytes()
    keys = _count(sessions, SubjectKey)

    def work() -> None:
        for n in range(100, 130):  # more than the budget holds
            _person(directory, n)
        directory.resolve([(("phone", d(0)), ("email", d("link")))], T0)  # an evicted one

    _in_failed_batch(directory, work)

    assert directory.cache_bytes() == used
    assert {n for n, s in subjects.items() if _held(directory, n, s)} == held
    assert all(directory.cached_subject((("phone", d(n)),)) is None for n in range(100, 130))
    assert directory.cached_subject((("email", d("link")),)) is None
    assert _count(sessions, SubjectKey) == keys


def test_the_estimates_are_not_below_what_pythons_allocator_sees(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    """The traced share only: an AES-GCM context also takes about 2.4 KB outside Python's
    allocator, which the cipher's estimate includes (see directory.py) and tracemalloc
    cannot see."""
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY)
    _person(directory, "warm-up")  # the ledger's statement caches, before measuring
    count = 2_000
    pending = [(("phone", d(n)), ("email", d(f"e{n}"))) for n in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        estimated = directory.cache_bytes()
        subjects = directory.resolve(pending, T0)
        live = {s for s in subjects if s is not None}
        directory.record_footprints({(s, "ORES", channel) for s in live
                                     for channel in ("phone", "email")}, T0)  # fmt: skip
        for subject in live:
            directory.cipher(subject).encrypt_fields([(f"f{i}", "x") for i in range(6)])
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimated = directory.cache_bytes() - estimated
    assert estimated == count * (2 * DIGEST_ENTRY_BYTES + CIPHER_ENTRY_BYTES
                                 + 2 * FOOTPRINT_ENTRY_BYTES)  # fmt: skip
    assert traced < estimated
