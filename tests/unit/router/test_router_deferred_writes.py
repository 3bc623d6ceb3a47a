"""SubjectDirectory with `defer_writes` (the worker's mode), on SQLite: a batch only reads,
its rows wait in a `LedgerWrite` until `write` commits them (in the worker's commit
thread), the next batch finds them meanwhile, a merge waits for them, and a failed write
is reported without the database's text."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from processors.pseudonym import Pseudonymiser
from streams.ledger import SubjectIndex
from streams.ledger.models import (
    Subject,
    SubjectAlias,
    SubjectFootprint,
    SubjectIdentifier,
    SubjectKey,
)
from streams.router.directory import (
    BatchLedger,
    LedgerWrite,
    LedgerWriteFailed,
    SubjectDirectory,
)

MASTER_KEY = b"m" * 32  # as in conftest.py
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
Digests = tuple[tuple[str, str], ...]


def d(label: str) -> str:
    """A stand-in identifier digest (hex), never derived from a real identifier."""
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


def _route(
    directory: SubjectDirectory, pending: list[Digests], now: datetime = T0
) -> tuple[list[str | None], LedgerWrite | None]:
    """What the pipeline does with a batch's ledger: subjects, keys, footprints."""
    with directory.batch() as ledger:
        subjects = directory.resolve(pending, now)
        directory.ensure_ciphers({s for s in subjects if s}, now)
        directory.record_footprints({(s, "ORES", "phone") for s in subjects if s}, now)
    return subjects, ledger.write


def _rows(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as session:
        return {
            "subjects": sorted(session.execute(select(Subject.subject_pseudonym))),
            "identifiers": sorted(
                session.execute(
                    select(
                        SubjectIdentifier.identifier_digest,
                        SubjectIdentifier.identifier_kind,
                        SubjectIdentifier.subject_pseudonym,
                    )
                )
            ),
            "keys per subject": sorted(
                session.execute(
                    select(SubjectKey.subject_pseudonym, func.count()).group_by(
                        SubjectKey.subject_pseudonym
                    )
                )
            ),
            "footprints": sorted(
                session.execute(
                    select(SubjectFootprint.subject_pseudonym, SubjectFootprint.channel)
                )
            ),
            "aliases": sorted(session.execute(select(SubjectAlias.alias_pseudonym))),
        }


def _key_ids(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return sorted(session.scalars(select(SubjectKey.key_id)))


BATCHES: list[list[Digests]] = [
    [(("phone", d("a")), ("email", d("b"))), (("phone", d("c")),)],
    [(("email", d("b")),), (("phone", d("e")),), (("phone", d("c")), ("email", d("f")))],
]


def test_a_batch_writes_nothing_until_written_then_the_rows_inline_mode_writes(
    ledger_factory: Callable[[str], sessionmaker[Session]], pseudonymiser: Pseudonymiser
) -> None:
    inline_sessions, deferred_sessions = ledger_factory("inline"), ledger_factory("deferred")
    inline = SubjectDirectory(inline_sessions, pseudonymiser, MASTER_KEY)
    deferred = SubjectDirectory(deferred_sessions, pseudonymiser, MASTER_KEY, defer_writes=True)

    for pending in BATCHES:
        expected, nothing = _route(inline, pending)
        assert nothing is None, "inline: written in the batch's own transaction"
        before = _rows(deferred_sessions)
        subjects, write = _route(deferred, pending)
        assert subjects == expected
        assert write is not None
        assert deferred.unwritten == 1
        assert _rows(deferred_sessions) == before, "nothing written by the batch itself"
        deferred.write(write)
        assert deferred.unwritten == 0
        assert _rows(deferred_sessions) == _rows(inline_sessions)
    people = (d("a"), d("c"), d("e"))
    assert _rows(deferred_sessions)["keys per subject"] == sorted(
        (pseudonymiser.subject_pseudonym(first), 1) for first in people
    )


def test_an_unwritten_batchs_subjects_and_keys_are_found_when_the_caches_dropped_them(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    """A one-byte budget evicts everything after each batch, and the key has aged out:
    the next batch, routed before the first is written, still finds the same subject and
    the same key (in the unwritten rows), so writing both breaks no key and makes no
    second key."""
    ttl = timedelta(minutes=5)
    directory = SubjectDirectory(
        sessions, pseudonymiser, MASTER_KEY, cache_bytes=1, key_ttl=ttl, defer_writes=True
    )
    [first], write1 = _route(directory, [(("phone", d("a")), ("email", d("b")))])
    assert first is not None
    assert write1 is not None
    key_id = write1.inserts.keys[first][0]
    assert (directory.cached_digests, directory.cached_keys) == (0, 0)

    [again], write2 = _route(directory, [(("email", d("b")),)], T0 + 2 * ttl)

    assert again == first
    assert write2 is not None
    assert write2.inserts.keys == {}, "the unwritten key was found: no second key made"
    assert directory.unwritten == 2
    directory.write(write1)
    directory.write(write2)
    assert _key_ids(sessions) == [key_id]
    assert _rows(sessions)["subjects"] == [(first,)]


def test_a_merge_waits_for_the_unwritten_batches_then_writes_in_its_own_transaction(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, defer_writes=True)
    [a, b], write1 = _route(directory, [(("phone", d("a")),), (("email", d("b")),)])
    assert write1 is not None
    # The commit thread writes the first batch while the second, a merge, is routed.
    writer = threading.Timer(0.2, directory.write, (write1,))
    writer.start()
    try:
        [merged], write2 = _route(directory, [(("phone", d("a")), ("email", d("b")))])
    finally:
        writer.join()

    assert write2 is None, "a merge batch writes in its own transaction"
    assert directory.unwritten == 0
    assert merged in {a, b}
    rows = _rows(sessions)
    assert rows["subjects"] == [(merged,)]
    assert rows["aliases"] == [(({a, b} - {merged}).pop(),)]
    assert {subject for _, _, subject in rows["identifiers"]} == {merged}


def test_a_failed_write_fails_its_waiters_names_no_data_and_drop_caches_forgets_it(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    """Another router writes the same new person first: this router's write conflicts.
    After `drop_caches`, the person resolves to what the ledger holds: the other router's
    subject and key."""
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, defer_writes=True)
    [subject], write = _route(directory, [(("phone", d("a")),)])
    assert write is not None
    other = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY)
    [same] = other.resolve([(("phone", d("a")),)], T0)
    assert same == subject

    with pytest.raises(LedgerWriteFailed) as failed:
        directory.write(write)
    assert "IntegrityError" in str(failed.value)
    assert d("a") not in str(failed.value)
    assert subject not in str(failed.value)
    with pytest.raises(LedgerWriteFailed):
        write.wait()
    assert directory.unwritten == 1, "kept until the worker drops the caches"
    assert directory.holds_key(subject)

    directory.drop_caches()

    assert directory.unwritten == 0
    assert (directory.cached_digests, directory.cached_keys) == (0, 0)
    [again], write_again = _route(directory, [(("phone", d("a")),)])
    assert again == subject
    assert directory.cipher(subject).key_id == other.cipher(subject).key_id
    if write_again is not None:  # only the footprint: the other router wrote none
        directory.write(write_again)
    assert _key_ids(sessions) == [other.cipher(subject).key_id]


def _failing_batch(directory: SubjectDirectory, held: list[BatchLedger]) -> None:
    with directory.batch() as ledger:
        held.append(ledger)
        directory.resolve([(("phone", d("a")),)], T0)
        raise RuntimeError("the batch failed after resolving")


def test_a_rolled_back_batch_leaves_nothing_to_write(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, defer_writes=True)
    held: list[BatchLedger] = []
    with pytest.raises(RuntimeError, match="after resolving"):
        _failing_batch(directory, held)
    assert held[0].write is None
    assert directory.unwritten == 0
    assert directory.cached_subject((("phone", d("a")),)) is None
    assert _rows(sessions)["subjects"] == []


def test_a_subject_erased_between_the_read_and_the_write_gains_nothing(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    """The batch read the person as live and attached a new e-mail to them; the privacy
    app erased them before the write. The write fails and adds no identifier: the batch
    is re-read, and then finds the person erased."""
    [subject] = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY).resolve(
        [(("phone", d("a")),)], T0
    )
    deferred = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, defer_writes=True)
    [same], write = _route(deferred, [(("phone", d("a")), ("email", d("new")))])
    assert same == subject
    assert write is not None
    with sessions.begin() as session:
        SubjectIndex(session).mark_erased(subject, T0 + timedelta(hours=1))

    with pytest.raises(LedgerWriteFailed, match=r"\(SubjectErasedMeanwhile\)$"):
        deferred.write(write)

    with sessions() as session:
        assert session.get(SubjectIdentifier, d("new")) is None
        assert session.get(SubjectFootprint, (subject, "ORES", "phone")) is None
    deferred.drop_caches()
    assert deferred.resolve([(("phone", d("a")), ("email", d("new")))], T0) == [None]


def test_a_merge_with_nothing_unwritten_writes_in_the_batchs_first_transaction(
    sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    """Every batch before it is written, so the batch's transaction holds the write lock
    from the start: a merge writes in it, with no second transaction (one round trip)."""
    directory = SubjectDirectory(sessions, pseudonymiser, MASTER_KEY, defer_writes=True)
    [a, b], write1 = _route(directory, [(("phone", d("a")),), (("email", d("b")),)])
    assert write1 is not None
    directory.write(write1)
    trips = directory.ledger_round_trips

    [merged], write2 = _route(directory, [(("phone", d("a")), ("email", d("b")))])

    assert directory.ledger_round_trips == trips + 1
    assert write2 is None, "written in the batch's own transaction"
    assert _rows(sessions)["aliases"] == [(({a, b} - {merged}).pop(),)]
