"""Key vault on SQLite: wrapped keys in, shredded keys gone from the row and the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from streams.ledger import (
    DuplicateKeyError,
    IdentifierKind,
    KeyVault,
    SubjectErasedError,
    SubjectIndex,
    UnknownKeyError,
    UnknownSubjectError,
    reclaim_shredded_storage,
)

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
ALGORITHM = "AES-256-GCM/KW"


def _subject(session: Session, digest: Callable[[str], str], label: str) -> str:
    return SubjectIndex(session).resolve_or_create(
        [(IdentifierKind.PHONE, digest(label))],
        lambda d: d[:32],
        T0,
    )


def test_put_get_and_shred(session: Session, digest: Callable[[str], str]) -> None:
    subject = _subject(session, digest, "p1")
    vault = KeyVault(session)
    vault.put("k1", subject, b"wrapped-1" * 4, ALGORITHM, T0)
    vault.put("k2", subject, b"wrapped-2" * 4, ALGORITHM, T0 + timedelta(days=1))
    assert vault.get("k1") == b"wrapped-1" * 4

    shred_at = T0 + timedelta(days=30)
    assert vault.shred_subject(subject, shred_at) == 2
    assert vault.get("k1") is None
    assert vault.get("k2") is None
    records = vault.keys_for(subject)
    assert [(r.key_id, r.shredded, r.shredded_at) for r in records] == [
        ("k1", True, shred_at),
        ("k2", True, shred_at),
    ]
    stored = session.execute(text("SELECT wrapped_key FROM subject_keys")).scalars().all()
    assert stored == [None, None]
    assert vault.shred_subject(subject, shred_at + timedelta(days=1)) == 0


def test_shred_leaves_other_subjects_alone(session: Session, digest: Callable[[str], str]) -> None:
    one, other = _subject(session, digest, "p1"), _subject(session, digest, "p2")
    vault = KeyVault(session)
    vault.put("k-one", one, b"\x01" * 32, ALGORITHM, T0)
    vault.put("k-other", other, b"\x02" * 32, ALGORITHM, T0)
    assert vault.shred_subject(one, T0) == 1
    assert vault.get("k-other") == b"\x02" * 32


def test_vault_guards(session: Session, digest: Callable[[str], str]) -> None:
    subject = _subject(session, digest, "p1")
    vault = KeyVault(session)
    vault.put("k1", subject, b"\x01" * 32, ALGORITHM, T0)
    with pytest.raises(DuplicateKeyError):
        vault.put("k1", subject, b"\x02" * 32, ALGORITHM, T0)
    with pytest.raises(UnknownKeyError):
        vault.get("missing")
    with pytest.raises(UnknownSubjectError):
        vault.put("k2", "e" * 32, b"\x01" * 32, ALGORITHM, T0)
    with pytest.raises(UnknownSubjectError):
        vault.shred_subject("e" * 32, T0)
    assert vault.keys_for("e" * 32) == []
    SubjectIndex(session).mark_erased(subject, T0)
    with pytest.raises(SubjectErasedError):
        vault.put("k3", subject, b"\x01" * 32, ALGORITHM, T0)


def test_a_key_row_cannot_lose_its_bytes_without_a_shred_stamp(
    session: Session, digest: Callable[[str], str]
) -> None:
    subject = _subject(session, digest, "p1")
    KeyVault(session).put("k1", subject, b"\x01" * 32, ALGORITHM, T0)
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE subject_keys SET wrapped_key = NULL"))


def test_reclaim_leaves_no_copy_of_a_shredded_key_in_the_files(
    engine: Engine,
    sessions: sessionmaker[Session],
    ledger_path: Path,
    digest: Callable[[str], str],
) -> None:
    secret, kept = os.urandom(48), os.urandom(48)
    with sessions.begin() as session:
        subject = _subject(session, digest, "p1")
        KeyVault(session).put("k1", subject, secret, ALGORITHM, T0)
        KeyVault(session).put("k2", _subject(session, digest, "p2"), kept, ALGORITHM, T0)
    reclaim_shredded_storage(engine)
    assert secret in _ledger_bytes(ledger_path)

    with sessions.begin() as session:
        assert KeyVault(session).shred_subject(subject, T0 + timedelta(days=1)) == 1
    reclaim_shredded_storage(engine)
    files = _ledger_bytes(ledger_path)
    assert secret not in files
    assert kept in files


def _ledger_bytes(path: Path) -> bytes:
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())
