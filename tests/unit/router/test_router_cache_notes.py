"""Merges and erasures the router's cache meets: noted, not applied to every cached digest
at once; the notes stay bounded (one pass over the digests at `COMPACT_AT` applies them),
and lookups give the same subjects before and after that pass."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

import streams.router.directory as directory_module
from streams.ledger import SubjectIndex
from streams.ledger.subject_state import SubjectStates
from streams.router.directory import SubjectDirectory

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def d(label: str | int) -> str:
    """A stand-in identifier digest (hex), never derived from a real identifier."""
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


def phone(label: str | int) -> tuple[tuple[str, str], ...]:
    return (("phone", d(f"p{label}")),)


def email(label: str | int) -> tuple[tuple[str, str], ...]:
    return (("email", d(f"e{label}")),)


def _erase(sessions: sessionmaker[Session], subject: str, at: datetime) -> None:
    """The privacy app's erasure in the ledger: the subject marked, its identifiers gone."""
    with sessions.begin() as session:
        SubjectIndex(session).mark_erased(subject, at)
        SubjectStates(session).forget_identifiers([subject])


def test_merged_away_subjects_stay_bounded_and_their_digests_reach_the_survivor(
    directory: SubjectDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_module, "COMPACT_AT", 8)
    people = 20
    with directory.batch():
        older = directory.resolve([phone(n) for n in range(people)], T0)
        newer = directory.resolve([email(n) for n in range(people)], T0 + timedelta(minutes=1))
    assert directory.noted_subjects == 0

    with directory.batch():  # each person's phone and e-mail meet: 20 merges
        linked = directory.resolve(
            [(*phone(n), *email(n)) for n in range(people)], T0 + timedelta(hours=1)
        )
        assert directory.noted_subjects == people  # noted during the batch...
    assert linked == older
    assert directory.noted_subjects == 0  # ...and applied in one pass after it
    assert directory.compactions == 1
    trips = directory.ledger_round_trips
    for n in range(people):  # the e-mail digests, cached under the merged-away subject
        assert directory.cached_subject(email(n)) == older[n] != newer[n]
    assert directory.ledger_round_trips == trips


def test_an_erasure_takes_no_pass_over_the_cache_and_its_digests_leave_at_the_compaction(
    directory: SubjectDirectory, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_module, "COMPACT_AT", 3)
    subjects = directory.resolve([(*phone(n), *email(n)) for n in range(5)], T0)
    cached = directory.cached_digests
    assert cached == 10

    for n in (0, 1):
        _erase(sessions, subjects[n], T0 + timedelta(hours=1))
        directory.forget(subjects[n])
    assert directory.compactions == 0
    assert directory.cached_digests == cached  # not removed one by one
    for n in (0, 1):  # but they name nobody: the ledger is asked
        assert directory.cached_subject(phone(n)) is None
        assert directory.cached_subject(email(n)) is None
        assert not directory.holds_key(subjects[n])
    assert [directory.cached_subject(phone(n)) for n in (2, 3, 4)] == subjects[2:]

    _erase(sessions, subjects[2], T0 + timedelta(hours=1))
    directory.forget(subjects[2])
    directory.resolve([phone("someone else")], T0 + timedelta(hours=2))  # between batches

    assert directory.compactions == 1
    assert directory.noted_subjects == 0
    assert directory.cached_digests == cached - 6 + 1
    assert [directory.cached_subject(phone(n)) for n in (3, 4)] == subjects[3:]


def test_a_returning_person_does_not_take_back_the_erased_subjects_other_digests(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (erased,) = directory.resolve([(*phone("back"), *email("back"))], T0)
    _erase(sessions, erased, T0 + timedelta(hours=1))
    directory.forget(erased)

    (again,) = directory.resolve([phone("back")], T0 + timedelta(days=1))

    assert again not in {None, erased}
    assert directory.cached_subject(phone("back")) == again
    # The e-mail was erased with the subject: the ledger does not link it to the person
    # who came back, so the cache must not either.
    assert directory.cached_subject(email("back")) is None
    (by_email,) = directory.resolve([email("back")], T0 + timedelta(days=2))
    assert by_email not in {None, erased, again}
