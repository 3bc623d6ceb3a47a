"""SubjectDirectory on SQLite: new subjects in bulk, merges across batches, the cache
following merges, erased subjects, and the set-at-a-time merge against SubjectIndex."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from processors.crypto import FieldCipher, unwrap_key
from processors.pseudonym import Pseudonymiser
from streams.ledger import SubjectErasedError, SubjectIndex
from streams.ledger.hotpath import add_footprints, add_subjects, link_groups
from streams.ledger.models import (
    Subject,
    SubjectAlias,
    SubjectFootprint,
    SubjectIdentifier,
    SubjectKey,
)
from streams.ledger.subject_state import SubjectStates
from streams.router.directory import SubjectDirectory

MASTER_KEY = b"m" * 32  # as in conftest.py
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def d(label: str) -> str:
    """A stand-in identifier digest (hex), never derived from a real identifier."""
    return hashlib.sha256(f"test-identifier:{label}".encode()).hexdigest()


def _table(session: Session, *columns: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in session.execute(select(*columns)))


def test_new_subjects_are_inserted_in_one_transaction_with_their_keys(
    directory: SubjectDirectory, sessions: sessionmaker[Session], pseudonymiser: Pseudonymiser
) -> None:
    pending = [
        (("phone", d("a")), ("email", d("b"))),
        (("phone", d("c")),),
        (("email", d("b")),),  # the first person again, by e-mail only
    ]
    subjects = directory.resolve(pending, T0)

    first, second = pseudonymiser.subject_pseudonym(d("a")), pseudonymiser.subject_pseudonym(d("c"))
    assert subjects == [first, second, first]
    assert directory.ledger_round_trips == 1
    with sessions() as session:
        assert _table(session, Subject.subject_pseudonym, Subject.created_at) == sorted(
            [(first, T0), (second, T0)]
        )
        identifiers = _table(
            session,
            SubjectIdentifier.identifier_digest,
            SubjectIdentifier.identifier_kind,
            SubjectIdentifier.subject_pseudonym,
        )
        assert identifiers == sorted(
            [(d("a"), "phone", first), (d("b"), "email", first), (d("c"), "phone", second)]
        )
        for key in session.scalars(select(SubjectKey)):
            cipher = directory.cipher(key.subject_pseudonym)
            assert key.key_id == cipher.key_id
            assert key.wrapped_key is not None
            data_key = unwrap_key(MASTER_KEY, key.key_id, key.wrapped_key)
            assert cipher.decrypt(_token(data_key, key.key_id), "f") == "x"
    # Known now: the cache answers without the ledger.
    assert directory.cached_subject((("email", d("b")),)) == first
    assert directory.cached_subject((("phone", d("zz")),)) is None


def _token(data_key: bytes, key_id: str) -> str:
    return FieldCipher(key_id, data_key).encrypt("x", "f")


def test_a_merge_in_a_later_batch_folds_into_the_oldest_and_the_cache_follows(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (older,) = directory.resolve([(("phone", d("a")),)], T0)
    (newer,) = directory.resolve([(("phone", d("b")),)], T0 + timedelta(hours=1))
    newer_key = directory.cipher(newer).key_id
    merged_at = T0 + timedelta(days=1)

    (linked,) = directory.resolve([(("phone", d("a")), ("email", d("b2")), ("phone", d("b")))],
                                  merged_at)  # fmt: skip

    assert linked == older
    assert directory.current(newer) == older
    assert directory.cached_subject((("phone", d("b")),)) == older  # cached before the merge
    assert directory.cached_subject((("email", d("b2")),)) == older
    with sessions() as session:
        assert session.get(Subject, newer) is None
        alias = session.get_one(SubjectAlias, newer)
        assert (alias.canonical_pseudonym, alias.merged_at) == (older, merged_at)
        owners = dict(_table(session, SubjectIdentifier.identifier_digest,
                             SubjectIdentifier.subject_pseudonym))  # fmt: skip
        assert owners == {d("a"): older, d("b"): older, d("b2"): older}
        seen = session.get_one(SubjectIdentifier, d("b"))
        assert (seen.first_seen_at, seen.last_seen_at) == (T0 + timedelta(hours=1), merged_at)
        assert session.get_one(SubjectKey, newer_key).subject_pseudonym == older


def test_erased_subjects_resolve_to_none_and_are_never_merged_or_extended(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    erased, live = directory.resolve([(("phone", d("e")),), (("phone", d("l")),)], T0)
    with sessions.begin() as session:
        SubjectIndex(session).mark_erased(erased, T0 + timedelta(hours=1))
    directory.forget(erased)
    later = T0 + timedelta(days=1)

    results = directory.resolve(
        [(("phone", d("e")),), (("phone", d("e")), ("email", d("new"))),
         (("phone", d("l")), ("phone", d("e"))), (("phone", d("other")),)],
        later,
    )  # fmt: skip

    assert results[:3] == [None, None, None]
    assert results[3] is not None
    with sessions() as session:
        assert session.get(SubjectIdentifier, d("new")) is None  # not added to the erased
        assert session.get(Subject, live) is not None  # not merged with the erased
        assert session.scalars(select(SubjectAlias)).all() == []


def test_a_person_erased_with_their_identifiers_comes_back_as_a_new_subject(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    (erased,) = directory.resolve([(("phone", d("back")), ("email", d("mail")))], T0)
    with sessions.begin() as session:
        SubjectIndex(session).mark_erased(erased, T0 + timedelta(hours=1))
        SubjectStates(session).forget_identifiers([erased])
    directory.forget(erased)

    (again,) = directory.resolve([(("phone", d("back")),)], T0 + timedelta(days=2))
    (same,) = directory.resolve(
        [(("email", d("mail")), ("phone", d("back")))], T0 + timedelta(days=3)
    )

    assert again is not None
    assert again != erased
    assert again == directory.pseudonymiser.subject_pseudonym(d("back"), 2)
    assert same == again  # the new subject links identifiers as any other does
    with sessions() as session:
        assert session.get_one(Subject, erased).erased_at is not None  # the tombstone stays
        assert session.get_one(SubjectIdentifier, d("back")).subject_pseudonym == again


def test_a_person_erased_after_a_merge_comes_back_under_a_name_no_alias_holds(
    directory: SubjectDirectory, sessions: sessionmaker[Session]
) -> None:
    """A subject merged away keeps its pseudonym only as an alias; when the survivor is
    erased and the person returns with the merged subject's first identifier, the name
    that identifier derives is taken (an alias), so the person is the next generation."""
    (older,) = directory.resolve([(("phone", d("old")),)], T0)
    (newer,) = directory.resolve([(("email", d("new")),)], T0 + timedelta(hours=1))
    (merged,) = directory.resolve(
        [(("phone", d("old")), ("email", d("new")))], T0 + timedelta(hours=2)
    )
    assert merged == older
    with sessions.begin() as session:
        SubjectIndex(session).mark_erased(older, T0 + timedelta(hours=3))
        SubjectStates(session).forget_identifiers([older])
    directory.forget(older)

    (back,) = directory.resolve([(("email", d("new")),)], T0 + timedelta(days=2))
    assert back not in {older, newer}
    assert back == directory.pseudonymiser.subject_pseudonym(d("new"), 2)
    (linked,) = directory.resolve(
        [(("email", d("new")), ("phone", d("other")))], T0 + timedelta(days=3)
    )
    assert linked == back
    with sessions() as session:
        aliases = set(session.scalars(select(SubjectAlias.alias_pseudonym)))
        subjects = set(session.scalars(select(Subject.subject_pseudonym)))
    assert newer in aliases
    assert not aliases & subjects, "a pseudonym is a subject or an alias, never both"


def test_a_merge_group_naming_only_unknown_digests_is_left_to_the_index(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert link_groups(session, [(("phone", d("x")), ("email", d("y")))], T0) is None
        assert session.scalars(select(SubjectIdentifier)).all() == []


def test_link_groups_leaves_what_subject_index_leaves(
    ledger_factory: Callable[[str], sessionmaker[Session]], pseudonymiser: Pseudonymiser
) -> None:
    """Random ledgers and merge groups: set-at-a-time equals one group at a time."""
    for seed in range(12):
        rng = random.Random(seed)
        bulk, one_by_one = ledger_factory(f"bulk{seed}"), ledger_factory(f"orm{seed}")
        people = [f"p{seed}-{i}" for i in range(12)]
        for sessions in (bulk, one_by_one):
            _seed_ledger(sessions, people, random.Random(seed))
        groups = []
        for _ in range(rng.randrange(2, 8)):
            members = rng.sample(people, rng.randrange(1, 4))
            group = [("phone", d(f"{m}-phone")) for m in members]
            if rng.random() < 0.5:
                group.append(("email", d(f"new-{seed}-{rng.random()}")))
            rng.shuffle(group)
            groups.append(tuple(group))
        now = T0 + timedelta(days=30)

        with bulk.begin() as session:
            outcome = link_groups(session, groups, now)
        assert outcome is not None
        refused = []
        with one_by_one.begin() as session:
            index = SubjectIndex(session)
            for number, group in enumerate(groups):
                try:
                    with session.begin_nested():
                        index.resolve_or_create(group, pseudonymiser.subject_pseudonym, now)
                except SubjectErasedError:
                    refused.append(number)
        assert outcome.refused == refused, seed
        assert _snapshot(bulk) == _snapshot(one_by_one), seed


def _seed_ledger(sessions: sessionmaker[Session], people: list[str], rng: random.Random) -> None:
    with sessions.begin() as session:
        for number, person in enumerate(people):
            subject = "s-" + hashlib.sha256(person.encode()).hexdigest()[:32]
            created = T0 + timedelta(hours=rng.randrange(0, 3))  # ties broken by pseudonym
            add_subjects(session, [subject], [(d(f"{person}-phone"), "phone", subject)], created)
            session.add(SubjectKey(key_id=f"k-{number}", subject_pseudonym=subject,
                                   wrapped_key=b"w" * 40, algorithm="AES-256-GCM",
                                   created_at=created, shredded_at=None))  # fmt: skip
            if rng.random() < 0.15:
                session.flush()
                session.get_one(Subject, subject).erased_at = created + timedelta(hours=1)


def _snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as session:
        return {
            "subjects": _table(session, Subject.subject_pseudonym, Subject.created_at,
                               Subject.erased_at),
            "identifiers": _table(session, SubjectIdentifier.identifier_digest,
                                  SubjectIdentifier.identifier_kind,
                                  SubjectIdentifier.subject_pseudonym,
                                  SubjectIdentifier.first_seen_at, SubjectIdentifier.last_seen_at),
            "aliases": _table(session, SubjectAlias.alias_pseudonym,
                              SubjectAlias.canonical_pseudonym, SubjectAlias.merged_at),
            "keys": _table(session, SubjectKey.key_id, SubjectKey.subject_pseudonym),
        }  # fmt: skip


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_resolving_in_batches_gives_the_subjects_of_one_at_a_time(
    ledger_factory: Callable[[str], sessionmaker[Session]], pseudonymiser: Pseudonymiser,
    batch: int,
) -> None:  # fmt: skip
    """Events of a small population (repeat callers, linked identifiers), resolved in
    batches of any size: every event gets the subject SubjectIndex would give it."""
    rng = random.Random(batch)
    events = []
    for _ in range(300):
        person = rng.randrange(40)
        kinds = rng.sample(
            [("phone", "p"), ("email", "e"), ("customer_ref", "c")], rng.randrange(1, 3)
        )
        events.append(tuple((kind, d(f"{person}-{tag}")) for kind, tag in kinds))
    directory = SubjectDirectory(ledger_factory("dir"), pseudonymiser, MASTER_KEY)
    got: list[str | None] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        subjects: list[str | None] = [directory.cached_subject(e) for e in chunk]
        pending = [e for e, s in zip(chunk, subjects, strict=True) if s is None]
        resolved = iter(directory.resolve(pending, T0) if pending else [])
        got.extend(s if s is not None else next(resolved) for s in subjects)
    got = [directory.current(s) if s else s for s in got]

    reference = ledger_factory("orm")
    expected = []
    with reference.begin() as session:
        index = SubjectIndex(session)
        for event in events:
            index.resolve_or_create(event, pseudonymiser.subject_pseudonym, T0)
        for event in events:  # the final owner of each event's first identifier
            expected.append(index.lookup(event[0][1]))
    assert got == expected


def test_a_retried_resolve_leaves_no_cached_key_the_ledger_lacks(
    directory: SubjectDirectory,
    sessions: sessionmaker[Session],
    pseudonymiser: Pseudonymiser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A conflict after the attempt cached its subjects and keys (another router merged a
    subject meanwhile, a lock timed out): the retry must write the keys it caches."""
    import streams.router.directory as module

    real_add_keys, calls = module.add_keys, []

    def add_keys_failing_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO subject_keys", {}, Exception("conflict"))
        real_add_keys(*args, **kwargs)

    monkeypatch.setattr(module, "add_keys", add_keys_failing_once)
    with directory.batch():
        (subject,) = directory.resolve([(("phone", d("retried")),)], T0)
    assert subject == pseudonymiser.subject_pseudonym(d("retried"))
    assert len(calls) == 2
    with sessions() as session:
        (key,) = session.scalars(select(SubjectKey).where(SubjectKey.subject_pseudonym == subject))
    assert key.key_id == directory.cipher(subject).key_id  # the cached key is the stored one


def test_footprints_skip_known_rows_but_refuse_a_bad_one(sessions: sessionmaker[Session]) -> None:
    subject = "s-" + "ab" * 16
    with sessions.begin() as session:
        add_subjects(session, [subject], [(d("fp"), "phone", subject)], T0)
        add_footprints(session, {(subject, "ORES", "phone")}, T0)
        add_footprints(session, {(subject, "ORES", "phone"), (subject, "ORES", "chat")}, T0)
    with sessions() as session:
        assert _table(session, SubjectFootprint.channel) == [("chat",), ("phone",)]
    with pytest.raises(IntegrityError), sessions.begin() as session:
        add_footprints(session, {(subject, "NOBODY", "phone")}, T0)  # not a controller
