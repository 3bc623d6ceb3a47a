"""Plain values the ledger repositories return; callers never hold ORM objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from processors.identity import IdentifierKind as IdentifierKind
from streams.ledger.errors import InvalidIdentifierError

GENESIS_HASH = "0" * 64
"""prev_hash of the first audit entry."""

_HEX = re.compile(r"[0-9a-f]{32,128}")
_PSEUDONYM = re.compile(r"(?:[a-z]{1,8}-)?[0-9a-f]{32,120}")


def require_hex(value: str, what: str) -> str:
    """Return `value` if it is lowercase hex of 32-128 chars; refuse anything else.

    This is the guard that keeps raw identifiers (numbers, addresses, handles) out of
    the subject index: digests are hex. The message never echoes the value.
    """
    if not isinstance(value, str) or _HEX.fullmatch(value) is None:
        raise InvalidIdentifierError(f"{what} must be lowercase hex of 32-128 characters")
    return value


def require_pseudonym(value: str) -> str:
    """Return `value` if it looks like a pseudonym: hex, optionally after a short label
    such as `s-` (processors.pseudonym's form). The message never echoes the value."""
    if not isinstance(value, str) or _PSEUDONYM.fullmatch(value) is None:
        raise InvalidIdentifierError(
            "pseudonym must be lowercase hex (32-120 chars), optionally prefixed like 's-'"
        )
    return value


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A vault entry without its key material."""

    key_id: str
    subject_pseudonym: str
    algorithm: str
    created_at: datetime
    shredded_at: datetime | None

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log entry as stored, hash chain included."""

    id: int
    at: datetime
    actor: str
    action: str
    request_id: str | None
    subject_pseudonym: str | None
    details: Mapping[str, Any]
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Where the audit chain breaks and why (ids and hashes only)."""

    entry_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of `verify_chain`: ok is true only when no problem was found."""

    entries_checked: int
    head_hash: str | None
    problems: tuple[ChainProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems
