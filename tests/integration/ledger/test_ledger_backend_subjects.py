"""Subject index and key vault on every backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import IdentifierKind, KeyVault, SubjectIndex, reclaim_shredded_storage
from streams.ledger.models import Subject, SubjectIdentifier

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 29, 0, 30, 0, 654321, tzinfo=UTC)  # the night clocks move in Belgium
PHONE, EMAIL = IdentifierKind.PHONE, IdentifierKind.EMAIL
Digest = Callable[[str], str]


def test_identifiers_seen_together_link_and_two_subjects_merge(
    sessions: sessionmaker[Session], digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    with sessions.begin() as session:
        index = SubjectIndex(session)
        older = index.resolve_or_create([(PHONE, digest("p1"))], pseudonym_for, T0)
        linked = index.resolve_or_create(
            [(PHONE, digest("p1")), (EMAIL, digest("e1"))], pseudonym_for, T0
        )
        newer = index.resolve_or_create(
            [(EMAIL, digest("e2"))], pseudonym_for, T0 + timedelta(hours=1)
        )
        KeyVault(session).put("k-newer", newer, b"\x07" * 40, "AES-256-GCM/KW", T0)
    assert linked == older != newer

    with sessions.begin() as session:
        survivor = SubjectIndex(session).resolve_or_create(
            [(EMAIL, digest("e2")), (EMAIL, digest("e1"))], pseudonym_for, T0 + timedelta(days=1)
        )
    assert survivor == older

    with sessions() as session:
        index = SubjectIndex(session)
        assert {index.lookup(digest(label)) for label in ("p1", "e1", "e2")} == {older}
        assert index.canonical(newer) == older
        assert index.canonical(older) == older
        assert session.get(Subject, newer) is None
        assert [k.key_id for k in KeyVault(session).keys_for(older)] == ["k-newer"]


def test_shredding_removes_the_wrapped_key(
    engine: Engine,
    sessions: sessionmaker[Session],
    digest: Digest,
    pseudonym_for: Callable[[str], str],
) -> None:
    with sessions.begin() as session:
        subject = SubjectIndex(session).resolve_or_create(
            [(PHONE, digest("p1"))], pseudonym_for, T0
        )
        vault = KeyVault(session)
        vault.put("k1", subject, b"\x01" * 40, "AES-256-GCM/KW", T0)
        vault.put("k2", subject, b"\x02" * 40, "AES-256-GCM/KW", T0)
        assert vault.get("k1") == b"\x01" * 40

    with sessions.begin() as session:
        assert KeyVault(session).shred_subject(subject, T0 + timedelta(days=3)) == 2
    reclaim_shredded_storage(engine)

    with sessions() as session:
        vault = KeyVault(session)
        assert vault.get("k1") is None
        assert vault.get("k2") is None
        assert all(r.shredded_at == T0 + timedelta(days=3) for r in vault.keys_for(subject))
        raw = session.execute(text("SELECT wrapped_key FROM subject_keys")).scalars().all()
        assert raw == [None, None]


def test_datetimes_come_back_utc_aware(
    sessions: sessionmaker[Session], digest: Digest, pseudonym_for: Callable[[str], str]
) -> None:
    brussels_summer = timezone(timedelta(hours=2))
    with sessions.begin() as session:
        SubjectIndex(session).resolve_or_create(
            [(PHONE, digest("p1"))], pseudonym_for, T0.astimezone(brussels_summer)
        )
    with sessions() as session:
        row = session.get_one(SubjectIdentifier, digest("p1"))
        subject = session.get_one(Subject, row.subject_pseudonym)
        for value in (row.first_seen_at, row.last_seen_at, subject.created_at):
            assert value == T0
            assert value.tzinfo is UTC
            assert value.microsecond == T0.microsecond
