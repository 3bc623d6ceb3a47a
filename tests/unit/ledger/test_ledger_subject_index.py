"""Subject index on SQLite: linking, merging, aliases and the guards on its inputs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from streams.ledger import (
    IdentifierKind,
    IdentifierKindMismatchError,
    InvalidIdentifierError,
    KeyVault,
    NaiveDatetimeError,
    PseudonymCollisionError,
    SubjectErasedError,
    SubjectIndex,
    UnknownSubjectError,
)
from streams.ledger.models import Subject, SubjectAlias, SubjectIdentifier

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
PHONE, EMAIL, SOCIAL = IdentifierKind.PHONE, IdentifierKind.EMAIL, IdentifierKind.SOCIAL_HANDLE
Digest = Callable[[str], str]


def test_first_sight_creates_a_subject_named_after_the_first_digest(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    subject = index.resolve_or_create(
        [(PHONE, digest("p1")), (EMAIL, digest("e1"))], pseudonym_for, T0
    )
    assert subject == pseudonym_for(digest("p1"))
    assert index.lookup(digest("p1")) == index.lookup(digest("e1")) == subject
    assert index.lookup(digest("never-seen")) is None
    assert index.canonical(subject) == subject


def test_known_digest_resolves_without_a_new_pseudonym_and_adds_new_ones(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    subject = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)

    def must_not_be_called(_: str) -> str:
        raise AssertionError("a known subject needs no new pseudonym")

    later = T0 + timedelta(days=2)
    again = index.resolve_or_create(
        [(EMAIL, digest("e1")), (PHONE, digest("p1"))], must_not_be_called, later
    )
    assert again == subject
    assert index.lookup(digest("e1")) == subject
    row = session.get_one(SubjectIdentifier, digest("p1"))
    assert (row.first_seen_at, row.last_seen_at) == (T0, later)
    # A replayed, older event widens the window instead of moving it backwards.
    index.resolve_or_create([(PHONE, digest("p1"))], must_not_be_called, T0 - timedelta(hours=1))
    assert (row.first_seen_at, row.last_seen_at) == (T0 - timedelta(hours=1), later)


def test_linking_two_subjects_merges_into_the_oldest_and_keeps_an_alias(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index, vault = SubjectIndex(session), KeyVault(session)
    older = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)
    newer = index.resolve_or_create([(EMAIL, digest("e1"))], pseudonym_for, T0 + timedelta(hours=1))
    vault.put("k-newer", newer, b"\x01" * 40, "AES-256-GCM/KW", T0 + timedelta(hours=1))
    assert older != newer

    merged_at = T0 + timedelta(days=1)
    survivor = index.resolve_or_create(
        [(EMAIL, digest("e1")), (PHONE, digest("p1"))], pseudonym_for, merged_at
    )

    assert survivor == older
    assert index.lookup(digest("e1")) == index.lookup(digest("p1")) == older
    assert index.canonical(newer) == older
    assert session.get(Subject, newer) is None
    alias = session.get_one(SubjectAlias, newer)
    assert (alias.canonical_pseudonym, alias.merged_at) == (older, merged_at)
    assert [key.subject_pseudonym for key in vault.keys_for(older)] == [older]
    assert [key.key_id for key in vault.keys_for(newer)] == ["k-newer"]


def test_repeated_merges_keep_every_alias_one_hop_from_the_survivor(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    first = index.resolve_or_create([(PHONE, digest("a"))], pseudonym_for, T0)
    second = index.resolve_or_create([(PHONE, digest("b"))], pseudonym_for, T0 + timedelta(hours=1))
    third = index.resolve_or_create([(PHONE, digest("c"))], pseudonym_for, T0 + timedelta(hours=2))
    index.resolve_or_create(
        [(PHONE, digest("b")), (PHONE, digest("c"))], pseudonym_for, T0 + timedelta(hours=3)
    )
    index.resolve_or_create(
        [(PHONE, digest("c")), (PHONE, digest("a"))], pseudonym_for, T0 + timedelta(hours=4)
    )

    assert {index.canonical(p) for p in (first, second, third)} == {first}
    rows = session.execute(select(SubjectAlias.alias_pseudonym, SubjectAlias.canonical_pseudonym))
    aliases = {alias: canonical for alias, canonical in rows}
    assert aliases == {second: first, third: first}
    assert session.scalar(select(func.count()).select_from(Subject)) == 1


def test_erased_subjects_are_neither_extended_nor_merged(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    erased = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)
    assert index.mark_erased(erased, T0 + timedelta(days=1)) == erased
    assert index.mark_erased(erased, T0 + timedelta(days=9)) == erased
    assert session.get_one(Subject, erased).erased_at == T0 + timedelta(days=1)
    assert index.is_erased(erased)
    with pytest.raises(SubjectErasedError) as caught:
        index.resolve_or_create([(PHONE, digest("p1")), (EMAIL, digest("e9"))], pseudonym_for, T0)
    assert caught.value.pseudonym == erased
    with pytest.raises(UnknownSubjectError):
        index.mark_erased("f" * 32, T0)


@pytest.mark.parametrize(
    "bad",
    ["+32470000000", "someone@example.invalid", "ABCDEF" * 8, "ab" * 10, ""],
    ids=["phone", "email", "uppercase", "short", "empty"],
)
def test_raw_identifiers_are_refused_and_never_echoed(
    session: Session, pseudonym_for: Callable[[str], str], bad: str
) -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        SubjectIndex(session).resolve_or_create([(PHONE, bad)], pseudonym_for, T0)
    assert bad not in str(caught.value) or not bad


def test_input_guards(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    with pytest.raises(InvalidIdentifierError):
        index.resolve_or_create([], pseudonym_for, T0)
    with pytest.raises(InvalidIdentifierError):
        index.resolve_or_create([("fax", digest("x"))], pseudonym_for, T0)
    with pytest.raises(InvalidIdentifierError):
        index.resolve_or_create([(PHONE, digest("x")), (EMAIL, digest("x"))], pseudonym_for, T0)
    with pytest.raises(NaiveDatetimeError):
        index.resolve_or_create([(PHONE, digest("x"))], pseudonym_for, T0.replace(tzinfo=None))
    with pytest.raises(InvalidIdentifierError):
        index.resolve_or_create([(PHONE, digest("x"))], lambda _: "not-hex", T0)
    index.resolve_or_create([(SOCIAL, digest("s"))], pseudonym_for, T0)
    with pytest.raises(IdentifierKindMismatchError):
        index.resolve_or_create([(PHONE, digest("s"))], pseudonym_for, T0)


def test_a_taken_pseudonym_is_not_reused(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    taken = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)
    with pytest.raises(PseudonymCollisionError):
        index.resolve_or_create([(PHONE, digest("p2"))], lambda _: taken, T0)


def test_an_unused_pseudonym_skips_names_an_erased_subject_or_an_alias_holds(
    session: Session, digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    index = SubjectIndex(session)
    older = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)
    newer = index.resolve_or_create([(EMAIL, digest("e1"))], pseudonym_for, T0)
    index.resolve_or_create([(PHONE, digest("p1")), (EMAIL, digest("e1"))], pseudonym_for, T0)
    index.mark_erased(older, T0 + timedelta(hours=1))
    names = {(digest("p1"), 1): older, (digest("e1"), 1): newer}  # the names taken

    def generations(first_digest: str, generation: int) -> str:
        fresh = pseudonym_for(f"{first_digest}{generation}")
        return names.get((first_digest, generation), fresh)

    assert index.unused_pseudonym(digest("p1"), generations) == pseudonym_for(f"{digest('p1')}2")
    assert index.unused_pseudonym(digest("e1"), generations) == pseudonym_for(f"{digest('e1')}2")
    assert index.unused_pseudonym(digest("x1"), generations) == pseudonym_for(f"{digest('x1')}1")


def test_pseudonyms_may_carry_a_short_label_but_nothing_else(session: Session) -> None:
    index = SubjectIndex(session)
    assert index.canonical("s-" + "0" * 32) is None
    for bad in ("S-" + "0" * 32, "subject-label-" + "0" * 32, "+32470000000", "0" * 31):
        with pytest.raises(InvalidIdentifierError):
            index.canonical(bad)
