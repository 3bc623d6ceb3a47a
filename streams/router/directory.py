"""Subjects and their data keys for the hot path: in-memory caches over the ledger.

One ledger transaction per batch at most, and none when every identifier and key of the
batch is already cached (repeat callers). Pseudonyms are deterministic (derived from the
first digest of a subject), and the ledger transaction commits before the Kafka
transaction, so a batch replayed after a crash finds the same subjects and keys.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from processors.crypto import FieldCipher, new_data_key, unwrap_key, wrap_key
from processors.identity import Identifier
from processors.pseudonym import Pseudonymiser
from streams.ledger import KeyVault, SubjectErasedError, SubjectIndex

log = logging.getLogger(__name__)
KEY_ALGORITHM = "AES-256-GCM"
_MAX_CACHED = 1_000_000
_RETRIES = 5

Digests = tuple[tuple[str, str], ...]  # ((kind, digest), ...) of one event, in order


class SubjectDirectory:
    """Maps an event's identifiers to its subject pseudonym and the subject's cipher."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        pseudonymiser: Pseudonymiser,
        master_key: bytes,
    ) -> None:
        self._sessions = sessions
        self._pseudonymiser = pseudonymiser
        self._master_key = master_key
        self._subject_of: dict[str, str] = {}
        self._ciphers: dict[str, FieldCipher] = {}
        self.ledger_round_trips = 0

    def digests(self, identifiers: Sequence[Identifier]) -> Digests:
        return tuple((i.kind.value, self._pseudonymiser.identifier_digest(i)) for i in identifiers)

    def cached_subject(self, digests: Digests) -> str | None:
        """The subject if every digest is cached and they agree; None means ask the ledger."""
        subject = None
        for _, digest in digests:
            owner = self._subject_of.get(digest)
            if owner is None or (subject is not None and owner != subject):
                return None
            subject = owner
        return subject

    def resolve(self, pending: Sequence[Digests], now: datetime) -> list[str | None]:
        """Subjects of events whose digests were not all cached, with their ciphers ready.

        One ledger transaction for the whole list, retried when a concurrent worker won a
        race on the same new identifiers. None marks an event of an erased subject.
        """
        for attempt in range(1, _RETRIES + 1):
            try:
                return self._resolve_once(pending, now)
            except (IntegrityError, OperationalError) as exc:
                if attempt == _RETRIES:
                    raise
                log.warning("subject ledger conflict (%s), retry %d", type(exc).__name__, attempt)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def cipher(self, subject: str) -> FieldCipher:
        """The cipher of a subject resolved earlier in this process."""
        return self._ciphers[subject]

    def ensure_ciphers(self, subjects: set[str], now: datetime) -> None:
        """Load or create the data keys of subjects that have no cached cipher."""
        missing = subjects - self._ciphers.keys()
        if missing:
            with self._sessions.begin() as session:
                self.ledger_round_trips += 1
                for subject in sorted(missing):
                    self._ciphers[subject] = self._load_or_create_key(session, subject, now)

    def forget(self, subject: str) -> None:
        """Drop a subject's cached key (after erasure, the key is gone from the vault)."""
        self._ciphers.pop(subject, None)
        for digest in [d for d, s in self._subject_of.items() if s == subject]:
            del self._subject_of[digest]

    def _resolve_once(self, pending: Sequence[Digests], now: datetime) -> list[str | None]:
        results: list[str | None] = []
        with self._sessions.begin() as session:
            self.ledger_round_trips += 1
            index = SubjectIndex(session)
            for digests in pending:
                try:
                    with session.begin_nested():
                        subject = index.resolve_or_create(
                            digests, self._pseudonymiser.subject_pseudonym, now
                        )
                except SubjectErasedError:
                    results.append(None)
                    continue
                self._remember(digests, subject)
                results.append(subject)
            # a later event of the batch may have merged subjects met earlier in it: every
            # event gets the surviving pseudonym
            final = [
                self._subject_of[digests[0][1]] if subject is not None else None
                for digests, subject in zip(pending, results, strict=True)
            ]
            for subject in {s for s in final if s is not None} - self._ciphers.keys():
                self._ciphers[subject] = self._load_or_create_key(session, subject, now)
        return final

    def _remember(self, digests: Digests, subject: str) -> None:
        if len(self._subject_of) > _MAX_CACHED:
            self._subject_of.clear()
        stale = {self._subject_of.get(d) for _, d in digests} - {None, subject}
        if stale:  # a merge retired these pseudonyms: repoint every cached digest
            for digest, owner in list(self._subject_of.items()):
                if owner in stale:
                    self._subject_of[digest] = subject
            for retired in stale:
                self._ciphers.pop(retired or "", None)
        for _, digest in digests:
            self._subject_of[digest] = subject

    def _load_or_create_key(self, session: Session, subject: str, now: datetime) -> FieldCipher:
        vault = KeyVault(session)
        live = [k for k in vault.keys_for(subject) if k.shredded_at is None]
        if live:
            newest = max(live, key=lambda k: (k.created_at, k.key_id))
            wrapped = vault.get(newest.key_id)
            if wrapped is not None:
                return FieldCipher(
                    newest.key_id, unwrap_key(self._master_key, newest.key_id, wrapped)
                )
        key_id = f"k-{uuid.uuid4().hex}"
        data_key = new_data_key()
        vault.put(key_id, subject, wrap_key(self._master_key, key_id, data_key), KEY_ALGORITHM, now)
        return FieldCipher(key_id, data_key)
