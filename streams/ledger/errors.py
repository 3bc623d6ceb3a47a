"""Errors the ledger raises. Messages carry only pseudonyms, key ids and row ids."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""


class AppendOnlyViolationError(LedgerError):
    """An update or delete of an audit-log entry was attempted through the ORM."""


class InvalidIdentifierError(LedgerError, ValueError):
    """A digest, pseudonym or identifier kind is malformed (e.g. a raw identifier)."""


class SubjectErasedError(LedgerError):
    """The operation would link, extend or give keys to a subject already erased."""

    def __init__(self, pseudonym: str) -> None:
        super().__init__(f"subject {pseudonym} is erased")
        self.pseudonym = pseudonym


class UnknownSubjectError(LedgerError, LookupError):
    """No subject (nor alias) has this pseudonym."""

    def __init__(self, pseudonym: str) -> None:
        super().__init__(f"no subject {pseudonym}")
        self.pseudonym = pseudonym


class PseudonymCollisionError(LedgerError):
    """A new subject's pseudonym is already taken by another subject or an alias."""

    def __init__(self, pseudonym: str) -> None:
        super().__init__(f"pseudonym {pseudonym} is already in use")
        self.pseudonym = pseudonym


class IdentifierKindMismatchError(LedgerError):
    """A digest is already indexed under a different identifier kind."""

    def __init__(self, digest: str, stored: str, given: str) -> None:
        super().__init__(f"identifier {digest} is indexed as {stored}, not {given}")
        self.digest = digest


class UnknownKeyError(LedgerError, LookupError):
    """No key with this id is in the vault."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key {key_id}")
        self.key_id = key_id


class DuplicateKeyError(LedgerError):
    """A key with this id is already in the vault (shredded or not): ids are never reused."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id} already exists")
        self.key_id = key_id
