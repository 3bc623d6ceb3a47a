"""Errors the ledger raises. Messages carry only pseudonyms, key ids and row ids."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from streams.errors import ContactflowError


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


class InvalidRetentionValueError(LedgerError, ValueError):
    """A recording or hold field is missing, too long or not one of its allowed values."""


class UnknownRecordingError(LedgerError, LookupError):
    """No recording with this id is registered."""

    def __init__(self, recording_id: str) -> None:
        super().__init__(f"no recording {recording_id}")
        self.recording_id = recording_id


class UnknownHoldError(LedgerError, LookupError):
    """No hold with this id was placed."""

    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id}")
        self.hold_id = hold_id


class HoldReleasedError(LedgerError):
    """The hold is already released: a release is final and cannot hold anything again."""

    def __init__(self, hold_id: str) -> None:
        super().__init__(f"hold {hold_id} is already released")
        self.hold_id = hold_id


class HoldNotApplicableError(LedgerError):
    """The hold's scope and target do not cover this recording."""

    def __init__(self, hold_id: str, recording_id: str) -> None:
        super().__init__(f"hold {hold_id} does not cover recording {recording_id}")
        self.hold_id = hold_id
        self.recording_id = recording_id


class RecordingHeldError(LedgerError):
    """The recording is held (active holds, or state held awaiting its release step)."""

    def __init__(self, recording_id: str, hold_ids: tuple[str, ...] = ()) -> None:
        holds = f" by hold(s) {', '.join(hold_ids)}" if hold_ids else " (state held)"
        super().__init__(f"recording {recording_id} is held{holds}")
        self.recording_id = recording_id
        self.hold_ids = hold_ids


class RecordingExpiredError(LedgerError):
    """The recording has expired: it can no longer be held or returned to standard."""

    def __init__(self, recording_id: str) -> None:
        super().__init__(f"recording {recording_id} has expired")
        self.recording_id = recording_id


class RecordingNotDueError(LedgerError):
    """The recording's retain_until is still in the future at the given `now`."""

    def __init__(self, recording_id: str) -> None:
        super().__init__(f"recording {recording_id} is not due for expiry yet")
        self.recording_id = recording_id


class UnknownRequestError(LedgerError, LookupError):
    """No privacy request with this id was submitted."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no privacy request {request_id}")
        self.request_id = request_id


class UnknownCommandError(LedgerError, LookupError):
    """No downstream command with this id was issued."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command {command_id}")
        self.command_id = command_id


class StaleRequestError(LedgerError):
    """The stored request or command is no longer the one a transition was computed from:
    another worker changed it first. The caller reloads and decides again."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(f"{kind} {record_id} changed since it was read")
        self.record_id = record_id


class LedgerUnreachable(ContactflowError, OperationalError):
    """The ledger's database server refused a connection or did not answer in time.

    A `ContactflowError` (the CLI prints it in one line, exit 2) and still an
    `OperationalError` for code that waits for the database. The message names host:port
    and a reason in a few words, never the URL's password nor the server's own text."""

    def __init__(self, where: str, timeout_s: float | None, error: BaseException) -> None:
        OperationalError.__init__(self, None, None, error)
        within = "" if timeout_s is None else f" within {timeout_s:g} s"
        self.message = (
            f"cannot reach the ledger database at {where}{within} ({_why(error)}); start "
            "it, or check CONTACTFLOW_DATABASE_URL (host, port, user, password) and "
            "CONTACTFLOW_CONNECT_TIMEOUT_S"
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:  # picklable without the driver's error
        return (ContactflowError, (self.message,))


_REASONS = (("refused", "connection refused"), ("timeout", "no answer"),
            ("timed out", "no answer"), ("authentication", "authentication failed"),
            ("does not exist", "no such database"), ("could not translate", "unknown host"),
            ("name resolution", "unknown host"), ("ssl", "TLS negotiation failed"))  # fmt: skip


def _why(error: BaseException) -> str:
    """A few words on why, from the driver's text (which is never shown as such)."""
    text = str(error).lower()
    return next((why for needle, why in _REASONS if needle in text), type(error).__name__)
