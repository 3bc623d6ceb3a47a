"""Append-only audit log with a SHA-256 hash chain, and its verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from streams.ledger.columns import require_aware
from streams.ledger.errors import LedgerError
from streams.ledger.models import AuditEntry
from streams.ledger.records import (
    GENESIS_HASH,
    AuditRecord,
    ChainProblem,
    ChainReport,
    require_pseudonym,
)

# Serialises appenders across connections on PostgreSQL (held until commit/rollback).
_PG_APPEND_LOCK = 0x636F6E74_61756474  # "contaudt"
_VERIFY_BATCH = 1000
_LIMITS = {"actor": 128, "action": 64, "request_id": 128}


def canonical_json(value: Any) -> str:
    """The one JSON spelling hashed by the chain: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(
    *,
    at: datetime,
    actor: str,
    action: str,
    request_id: str | None,
    subject_pseudonym: str | None,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex over the canonical JSON of the entry's content and its predecessor."""
    payload = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "request_id": request_id,
        "subject_pseudonym": subject_pseudonym,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class AuditLog:
    """Appends and reads audit entries in the caller's Session (flushes, never commits).

    `details` must hold no personal data: pseudonyms, digests, ids, counts, states only.
    On SQLite a concurrent appender fails with an IntegrityError or "database is locked"
    rather than forking the chain; the caller retries its transaction.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def append(
        self,
        actor: str,
        action: str,
        now: datetime,
        request_id: str | None = None,
        subject: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Add one entry chained to the current head and return it as stored."""
        now = require_aware(now)
        for name, value in (("actor", actor), ("action", action), ("request_id", request_id)):
            if value is not None and not (
                isinstance(value, str) and 0 < len(value) <= _LIMITS[name]
            ):
                raise LedgerError(f"{name} must be a string of 1-{_LIMITS[name]} characters")
        if subject is not None:
            require_pseudonym(subject)
        normalised = _normalised_details(details)
        session = self._session
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_APPEND_LOCK})
        head = session.scalar(select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1))
        prev_hash = head if head is not None else GENESIS_HASH
        content: dict[str, Any] = {
            "at": now, "actor": actor, "action": action, "request_id": request_id,
            "subject_pseudonym": subject, "details": normalised, "prev_hash": prev_hash,
        }  # fmt: skip
        row = AuditEntry(**content, entry_hash=entry_hash(**content))
        session.add(row)
        session.flush()
        return _record(row)

    def entries(
        self,
        request_id: str | None = None,
        subject: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Entries in chain order, optionally only those of one request, subject, action."""
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if request_id is not None:
            query = query.where(AuditEntry.request_id == request_id)
        if subject is not None:
            query = query.where(AuditEntry.subject_pseudonym == subject)
        return [_record(row) for row in self._session.scalars(query)]

    def verify_chain(self, anchor: str | None = None) -> ChainReport:
        """See `verify_chain`."""
        return verify_chain(self._session, anchor=anchor)


def verify_chain(session: Session, anchor: str | None = None) -> ChainReport:
    """Recompute every hash in id order; report changed, deleted or reordered entries.

    Reads the rows from the database, not the identity map. Truncation of the newest
    entries is only detectable against an `anchor`: an entry_hash kept elsewhere (e.g.
    published to privacy.audit.v1), which must still be present in the chain.
    """
    columns = (
        AuditEntry.id,
        AuditEntry.at,
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.request_id,
        AuditEntry.subject_pseudonym,
        AuditEntry.details,
        AuditEntry.prev_hash,
        AuditEntry.entry_hash,
    )
    rows = session.execute(
        select(*columns).order_by(AuditEntry.id).execution_options(yield_per=_VERIFY_BATCH)
    )
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    checked = 0
    anchor_seen = anchor is None
    for row in rows:
        checked += 1
        problems.extend(_check_row(row, expected_prev))
        expected_prev = row.entry_hash
        anchor_seen = anchor_seen or row.entry_hash == anchor
    if not anchor_seen:
        problems.append(
            ChainProblem(None, f"anchor {anchor} not found: entries were removed or rewritten")
        )
    head = expected_prev if checked else None
    return ChainReport(entries_checked=checked, head_hash=head, problems=tuple(problems))


def _check_row(row: Row[Any], expected_prev: str) -> list[ChainProblem]:
    problems = []
    if row.prev_hash != expected_prev:
        problems.append(
            ChainProblem(
                row.id,
                "prev_hash does not match the preceding entry "
                "(an entry was deleted, inserted or reordered)",
            )
        )
    recomputed = entry_hash(
        at=row.at,
        actor=row.actor,
        action=row.action,
        request_id=row.request_id,
        subject_pseudonym=row.subject_pseudonym,
        details=row.details,
        prev_hash=row.prev_hash,
    )
    if recomputed != row.entry_hash:
        problems.append(ChainProblem(row.id, "entry_hash does not match the entry's content"))
    return problems


def _normalised_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise LedgerError("details must be a mapping")
    try:
        normalised = json.loads(canonical_json(dict(details)))
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"details must be finite JSON with string keys: {exc}") from exc
    if not isinstance(normalised, dict):
        raise LedgerError("details must be a JSON object")
    return normalised


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        request_id=row.request_id,
        subject_pseudonym=row.subject_pseudonym,
        details=MappingProxyType(json.loads(canonical_json(row.details))),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )
