"""Subjects and their data keys for the hot path: in-memory caches over the ledger.

One ledger transaction per batch at most (`batch`: subjects, keys and footprints commit
together, one fsync), and none when every identifier, key and footprint of the batch is
already cached (repeat callers). Pseudonyms are deterministic (derived from the
first digest of a subject), and the ledger transaction commits before the Kafka
transaction, so a batch replayed after a crash finds the same subjects and keys.

The caches are bounded by a memory budget (`cache_bytes`, least recently used entries
evicted after each batch), and an unwrapped data key stays at most `key_ttl` after it was
unwrapped (then it is unwrapped again from the vault when needed). `forget_key` drops a
key at once: the worker calls it when the subject-state topic says the subject is erased.
Merges and erasures are noted, not applied to every cached digest at once: one pass over
the digests applies the notes when they reach `COMPACT_AT`.
Cache changes a rolled-back batch made are undone (`_Journal`); an undo only ever removes
a key, never puts one back, so a key dropped for erasure or age stays dropped.

With `defer_writes` (the worker's choice), a batch's transaction only reads: its inserts
are kept (`LedgerWrite`) and written by `write`, in the worker's commit thread, before
its Kafka commit, while the next batch is routed. Until written, a batch's subjects and
keys are looked up in its `LedgerWrite` as well as in the ledger (the caches may have
evicted them). A batch that merges subjects waits for every unwritten batch first and
writes its own rows in its transaction, as without `defer_writes`. A write that fails
means the batches routed since are read again: `drop_caches` forgets what they cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from processors.crypto import FieldCipher, KeyWrapper, new_data_key
from processors.identity import Identifier
from processors.pseudonym import Pseudonymiser
from processors.subjects import Placement, place_events
from streams.errors import ContactflowError
from streams.ledger import SubjectErasedError, SubjectIndex
from streams.ledger.engine import READS_ONLY
from streams.ledger.hotpath import (
    DeferredInserts,
    SubjectErasedMeanwhile,
    add_footprints,
    add_keys,
    add_subjects,
    aliases_among,
    link_groups,
    live_keys,
    owners_of,
    subjects_state,
)

log = logging.getLogger(__name__)
KEY_ALGORITHM = "AES-256-GCM"
_RETRIES = 5
MIB = 1024 * 1024
DEFAULT_CACHE_BYTES = 256 * MIB
DEFAULT_KEY_TTL = timedelta(seconds=300)
# Subjects merged away (`_survivor`) or erased (`_gone`) whose cached digests still name
# them: at this many, one pass over the cached digests points them at the survivor or
# drops them, between batches. Merges and erasures then cost no pass each, and these
# notes stay bounded (about 250 bytes each, outside the budget).
COMPACT_AT: Final = 4096

# Estimated memory of one cache entry, with its key and value, rounded up. Measured once
# (CPython 3.11, cryptography 50) by filling an OrderedDict with 50,000 entries of each
# kind, as the directory holds them: tracemalloc's traced growth per entry, and the
# process's RSS growth per entry (statm, tracemalloc off), which also sees what the
# AES-GCM context allocates outside Python's allocator; the larger figure is kept.
# digest -> subject: 287 B traced, 325 B RSS. (subject, controller, channel): 252 B
# traced, 282 B RSS. A cipher with its expiry entry, after sealing six field paths
# (each adds a cached AAD): 1,279 B traced, 3,696 B RSS (about 2.4 KB of it native).
# tests/unit/router/test_router_cache_budget.py checks the traced share stays below these.
DIGEST_ENTRY_BYTES: Final = 340
CIPHER_ENTRY_BYTES: Final = 3_800
FOOTPRINT_ENTRY_BYTES: Final = 300

Digests = tuple[tuple[str, str], ...]  # ((kind, digest), ...) of one event, in order


class LedgerWriteFailed(ContactflowError):
    """A batch's deferred ledger rows could not be written (a concurrent router inserted
    the same rows, or the database refused): that batch and those after it are re-read."""


class LedgerWrite:
    """A routed batch's ledger rows, kept until `SubjectDirectory.write` commits them."""

    def __init__(self, inserts: DeferredInserts) -> None:
        self.inserts = inserts
        self.error: str | None = None  # why the write failed (an exception's type name)
        self._done = threading.Event()

    def finished(self, error: str | None) -> None:
        self.error = error
        self._done.set()

    def wait(self) -> None:
        """Until written (or failed); raises `LedgerWriteFailed` if it failed."""
        self._done.wait()
        if self.error is not None:
            raise LedgerWriteFailed(f"an earlier batch's ledger write failed ({self.error})")


class BatchLedger:
    """What `SubjectDirectory.batch` leaves to write: `write` is None when the batch wrote
    nothing, or wrote it in its own transaction."""

    write: LedgerWrite | None = None


class _WriteFirst(Exception):
    """A merge needs the ledger to hold every row routed so far (`resolve` catches it)."""


class SubjectDirectory:
    """Maps an event's identifiers to its subject pseudonym and the subject's cipher."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        pseudonymiser: Pseudonymiser,
        master_key: bytes,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        key_ttl: timedelta = DEFAULT_KEY_TTL,
        defer_writes: bool = False,
    ) -> None:
        """`cache_bytes`: the budget of the three caches together (digests, keys,
        footprints), as estimated per entry; `key_ttl`: how long an unwrapped key stays;
        `defer_writes`: a batch's inserts are left to `write` (see the module's doc)."""
        if cache_bytes <= 0 or key_ttl <= timedelta(0):
            raise ValueError("the cache budget and the key TTL must be positive")
        self._sessions = sessions
        self._pseudonymiser = pseudonymiser
        self._wrapper = KeyWrapper(master_key)
        self._budget = cache_bytes
        self._key_ttl = key_ttl
        # Each cache is in least recently used first order (`move_to_end` on a hit).
        self._subject_of: OrderedDict[str, str] = OrderedDict()
        self._ciphers: OrderedDict[str, FieldCipher] = OrderedDict()
        self._key_expiry: OrderedDict[str, datetime] = OrderedDict()  # unwrapped-first order
        self._footprints: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._survivor: dict[str, str] = {}  # merged-away subject -> survivor, until compacted
        self._gone: set[str] = set()  # erased subjects some cached digests may still name
        self._in_batch = False
        self._open: Session | None = None  # the batch's transaction, once something needs it
        self._journal: _Journal | None = None  # while a batch, or `resolve`, may roll back
        self._defer_writes = defer_writes
        self._deferred: DeferredInserts | None = None  # the open batch's inserts, if deferred
        self._unwritten: deque[LedgerWrite] = deque()  # routed batches' rows, oldest first
        self._overlay: tuple[DeferredInserts, ...] = ()  # unwritten when the session began
        self.ledger_round_trips = 0
        self.evicted = 0  # entries evicted to hold the budget
        self.compactions = 0  # passes over the cached digests (`COMPACT_AT`)

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        return self._pseudonymiser

    def digests(self, identifiers: Sequence[Identifier]) -> Digests:
        return tuple((i.kind.value, self._pseudonymiser.identifier_digest(i)) for i in identifiers)

    @contextmanager
    def batch(self) -> Iterator[BatchLedger]:
        """Run a batch's ledger work in one transaction, committed when the block ends
        (before the worker's Kafka commit); opened only if the caches miss something.
        With `defer_writes`, the transaction only reads, and the batch's rows are left in
        the `BatchLedger`'s `write`, for `write` to commit before the Kafka commit."""
        if self._in_batch:
            raise RuntimeError("a batch's ledger transaction is already open")
        self._in_batch = True
        ledger = BatchLedger()
        self._deferred = DeferredInserts() if self._defer_writes else None
        try:
            with self._journaled():  # a batch that rolls back leaves the caches as they were
                try:
                    yield ledger
                    if self._open is not None:
                        if self._deferred is None:
                            self._open.commit()
                        else:
                            self._open.rollback()  # it only read
                except BaseException:
                    if self._open is not None:
                        self._open.rollback()
                    raise
            if self._deferred:
                ledger.write = LedgerWrite(self._deferred)
                self._unwritten.append(ledger.write)
        finally:
            if self._open is not None:
                self._open.close()
            self._open, self._in_batch = None, False
            self._deferred, self._overlay = None, ()
        self._hold_budget()

    def write(self, write: LedgerWrite) -> None:
        """Commit a batch's deferred rows in a transaction of their own (any thread; the
        worker's commit thread, before the batch's Kafka commit). Raises
        `LedgerWriteFailed` (with the error's type only) when they could not be."""
        try:
            with self._sessions.begin() as session:
                write.inserts.write(session)
        except BaseException as exc:
            write.finished(type(exc).__name__)  # a batch waiting for it must not wait on
            if isinstance(exc, SQLAlchemyError | SubjectErasedMeanwhile):
                raise LedgerWriteFailed(
                    f"the batch's ledger rows could not be written ({type(exc).__name__})"
                ) from None
            raise
        # no longer looked up once in the ledger: out of the overlay before `wait` returns
        with contextlib.suppress(ValueError):  # dropped meanwhile (`drop_caches`)
            self._unwritten.remove(write)
        write.finished(None)

    @property
    def unwritten(self) -> int:
        """Routed batches whose deferred rows are not committed yet."""
        return len(self._unwritten)

    def drop_caches(self) -> None:
        """Forget every cached digest, key and footprint, and every unwritten batch's rows:
        a batch whose rows were not written aborted, and the batches routed after it may
        have cached what only it held. They are read again from the ledger. Between
        batches only, with no write running."""
        for cache in (self._subject_of, self._ciphers, self._key_expiry, self._footprints,
                      self._survivor):  # fmt: skip
            cache.clear()
        self._gone.clear()
        self._unwritten.clear()

    @contextmanager
    def _journaled(self) -> Iterator[None]:
        """Cache changes made in the block are undone if it raises (nested blocks undo
        only their own changes: a retried `resolve` attempt inside a batch)."""
        outer = self._journal
        journal = outer if outer is not None else _Journal()
        mark = journal.mark()
        self._journal = journal
        try:
            yield
        except BaseException:
            journal.undo(mark)
            raise
        finally:
            self._journal = outer

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A transaction of its own, or a savepoint in the batch's (undone on error).
        The unwritten batches are noted before it begins (`_overlay`): whatever it cannot
        see yet, it finds there; whatever was written before, it sees."""
        if not self._in_batch:
            overlay = tuple(w.inserts for w in self._unwritten)
            with self._journaled(), self._sessions.begin() as session:
                self._overlay = overlay
                self.ledger_round_trips += 1
                try:
                    yield session
                finally:
                    self._overlay = ()
            return
        if self._open is None:
            self._overlay = tuple(w.inserts for w in self._unwritten)
            self._open = self._sessions()
            self._open.begin()
            # While a batch before it is unwritten, it only reads (it takes no write lock
            # the commit thread would wait for); else it holds the lock, so a merge can
            # write in it at once.
            if self._deferred is not None and self._overlay:
                self._open.connection(execution_options={READS_ONLY: True})
            self.ledger_round_trips += 1
        with self._open.begin_nested():
            yield self._open

    def _sink(self, session: Session) -> Session | DeferredInserts:
        """Where the batch's inserts go: kept for `write`, or into the transaction."""
        return session if self._deferred is None else self._deferred

    def _write_first(self) -> None:
        """Before a merge: wait for every unwritten batch, then begin the batch's
        transaction again (it only read) with the batch's rows so far in it: the merge
        sees everything routed, and the batch writes in its own transaction from here."""
        for write in tuple(self._unwritten):
            write.wait()
        deferred, self._deferred = self._deferred, None
        if self._open is not None:
            self._open.rollback()
            self._open.close()
            self._open = None
        if deferred:
            with self._transaction() as session:
                deferred.write(session)

    def cached_subject(self, digests: Digests) -> str | None:
        """The subject if every digest is cached and they agree; None means ask the ledger."""
        subject = None
        survivor, gone = self._survivor, self._gone
        subject_of = self._subject_of
        touch = subject_of.move_to_end
        for _, digest in digests:
            owner = subject_of.get(digest)
            if owner is None:
                return None
            touch(digest)
            if owner in survivor:
                owner = self.current(owner)
            if owner in gone or (subject is not None and owner != subject):
                return None
            subject = owner
        return subject

    def resolve(self, pending: Sequence[Digests], now: datetime) -> list[str | None]:
        """Subjects of events whose digests were not all cached, with their ciphers ready.

        One ledger transaction for the whole list, retried when a concurrent worker won a
        race on the same new identifiers. None marks an event of an erased subject.
        """
        attempt = 0
        while attempt < _RETRIES:
            attempt += 1
            try:
                with self._journaled():  # the caches follow the attempt's fate
                    results = self._resolve_once(pending, now)
            except _WriteFirst:
                self._write_first()
                attempt -= 1  # not a conflict: the attempt is made again, once
                continue
            except (IntegrityError, OperationalError) as exc:
                if attempt == _RETRIES:
                    raise
                log.warning("subject ledger conflict (%s), retry %d", type(exc).__name__, attempt)
                time.sleep(0.05 * attempt)
                continue
            self._settle()
            return results
        raise AssertionError("unreachable")  # the last failed attempt raised

    def cipher(self, subject: str) -> FieldCipher:
        """The cipher of a subject resolved earlier in this process."""
        return self._ciphers[subject]

    def cached_cipher(self, subject: str) -> FieldCipher | None:
        """The subject's cipher after `ensure_ciphers`; None when the ledger says the
        subject is erased (its key shredded), before the subject-state topic says so."""
        return self._ciphers.get(subject)

    def ensure_ciphers(self, subjects: set[str], now: datetime) -> None:
        """Load or create the data keys of subjects that have no cached cipher (keys older
        than the TTL are dropped first, so they are unwrapped again here)."""
        self.expire_keys(now)
        ciphers = self._ciphers
        touch = ciphers.move_to_end
        missing = False
        for subject in subjects:
            if subject in ciphers:
                touch(subject)
            else:
                missing = True
        if missing:
            with self._transaction() as session:
                self._load_ciphers(session, subjects, now)
        self._settle()

    def record_footprints(self, footprints: set[tuple[str, str, str]], now: datetime) -> None:
        """Note in the ledger where subjects have data (subject, controller, channel); a
        privacy request resolves against these rows. Known ones cost no round trip."""
        cached = self._footprints
        new = {footprint for footprint in footprints if footprint not in cached}
        touch = cached.move_to_end
        for footprint in footprints - new:
            touch(footprint)
        if not new:
            return
        with self._transaction() as session:
            add_footprints(self._sink(session), new, now)
            if self._journal is not None:
                self._journal.added(cached, new)
            cached.update(dict.fromkeys(new))
        self._settle()

    def forget(self, subject: str) -> None:
        """Drop a subject's cached key, and stop its cached digests from naming it (an
        event of the subject met its erasure): they ask the ledger again, which admits a
        returning person as a new subject. The digests themselves leave at the next
        compaction (`COMPACT_AT`), not in a pass over the cache per erasure."""
        self.forget_key(subject)
        self._gone.add(subject)

    def forget_key(self, subject: str) -> None:
        """Drop the subject's unwrapped data key now (its erasure was read, or the key
        aged out). Safe at any time: no rollback puts a key back (`_Journal`)."""
        self._ciphers.pop(subject, None)
        self._key_expiry.pop(subject, None)

    def expire_keys(self, now: datetime) -> int:
        """Drop the data keys unwrapped `key_ttl` or longer before `now`; how many."""
        expiry = self._key_expiry
        dropped = 0
        while expiry:
            subject, expires_at = next(iter(expiry.items()))
            if expires_at > now:
                break
            self.forget_key(subject)
            dropped += 1
        return dropped

    def holds_key(self, subject: str) -> bool:
        """Whether the subject's data key is in memory (for tests and checks)."""
        return subject in self._ciphers

    @property
    def cached_keys(self) -> int:
        return len(self._ciphers)

    @property
    def cached_digests(self) -> int:
        return len(self._subject_of)

    @property
    def cached_footprints(self) -> int:
        return len(self._footprints)

    @property
    def noted_subjects(self) -> int:
        """Merged-away and erased subjects noted since the last compaction (< `COMPACT_AT`
        between batches)."""
        return len(self._survivor) + len(self._gone)

    def cache_bytes(self) -> int:
        """The estimated memory of the three caches (entries times `*_ENTRY_BYTES`)."""
        return (
            len(self._subject_of) * DIGEST_ENTRY_BYTES
            + len(self._ciphers) * CIPHER_ENTRY_BYTES
            + len(self._footprints) * FOOTPRINT_ENTRY_BYTES
        )

    def _settle(self) -> None:
        """Outside a batch, hold the budget after each call (a batch does at its end)."""
        if not self._in_batch:
            self._hold_budget()

    def _hold_budget(self) -> None:
        """Evict least recently used entries until the estimate is within the budget.

        Each cache gives up its oldest entries in proportion to its share of the bytes, so
        the mix of digests, keys and footprints stays what the traffic makes it. Runs
        between batches only: a batch never loses a key it loaded.
        """
        if len(self._survivor) + len(self._gone) >= COMPACT_AT:
            self._compact()
        used = self.cache_bytes()
        if used <= self._budget:
            return
        caches: tuple[OrderedDict[Any, Any], ...] = (
            self._subject_of,
            self._ciphers,
            self._footprints,
        )
        for cache in caches:
            # its share of the budget, in entries: budget * (len * size / used) / size
            keep = self._budget * len(cache) // used
            for _ in range(len(cache) - keep):
                key, _ = cache.popitem(last=False)
                if cache is self._ciphers:
                    self._key_expiry.pop(key, None)
                self.evicted += 1

    def _compact(self) -> None:
        """Point cached digests of merged-away subjects at their survivors, drop those of
        erased subjects, and forget both notes: one pass over the digests, between
        batches (no journal is open: nothing here is undone)."""
        current, gone = self.current, self._gone
        subject_of = self._subject_of
        moved: list[tuple[str, str]] = []
        dropped: list[str] = []
        for digest, owner in subject_of.items():
            now_owner = current(owner)
            if now_owner in gone:
                dropped.append(digest)
            elif now_owner != owner:
                moved.append((digest, now_owner))
        for digest in dropped:
            del subject_of[digest]
        for digest, owner in moved:
            subject_of[digest] = owner  # an existing key: its place in the order stays
        self._survivor.clear()
        gone.clear()
        self.compactions += 1

    def _resolve_once(self, pending: Sequence[Digests], now: datetime) -> list[str | None]:
        with self._transaction() as session:
            every = {digest for digests in pending for _, digest in digests}
            owner = owners_of(session, every)
            for unwritten in self._overlay:  # rows of batches routed but not written yet
                held = unwritten.owner
                owner.update({d: held[d] for d in every if d in held and d not in owner})
            placement, taken = self._place(session, pending, owner)
            erased = {s for s, gone in subjects_state(session, set(owner.values())).items() if gone}
            # nothing joins an erased subject; no pseudonym twice
            placement = placement.without(erased | set(taken))
            merges = [pending[index] for index in placement.deferred]
            if merges:
                if self._overlay or self._deferred:  # rows the ledger lacks yet: written first
                    raise _WriteFirst
                self._deferred = None  # the transaction holds the write lock: write in it
            add_subjects(self._sink(session), placement.created, placement.attached, now)
            if merges:  # events linking subjects that already exist
                owner = self._link_deferred(session, merges, placement, owner, erased, every, now)
            else:
                owner.update(placement.joined)
            results: list[str | None] = []
            for digests in pending:
                subject = owner.get(digests[0][1])
                if (
                    subject is None
                    or subject in erased
                    or any(owner.get(d) in erased for _, d in digests)
                ):
                    results.append(None)
                    continue
                self._remember(digests, subject)
                results.append(subject)
            subjects = {s for s in results if s is not None}
            # Subjects made here have no key yet, unless a merge moved one to them.
            created = () if merges else placement.created.keys()
            self._load_ciphers(session, subjects, now, created=created)
        return results

    def _place(
        self, session: Session, pending: Sequence[Digests], owner: dict[str, str]
    ) -> tuple[Placement, dict[str, bool]]:
        """The batch's placement (`place_events`), and the existing subjects (-> erased?)
        its new pseudonyms name. A new pseudonym that is an erased subject's (its
        identifiers were removed at erasure: the person came back), or an alias of one (a
        subject merged away before its survivor was erased), moves to the next generation,
        so the person is admitted as a new subject."""
        generation: dict[str, int] = {}
        pseudonym = self._pseudonymiser.subject_pseudonym

        def new_subject(first_digest: str) -> str:
            return pseudonym(first_digest, generation.get(first_digest, 1))

        while True:
            placement = place_events(pending, owner, new_subject)
            taken = subjects_state(session, placement.created)
            # an erased subject's name, or a merged-away subject's (an alias), is not free
            retired = aliases_among(session, placement.created.keys() - taken.keys())
            unavailable = [s for s, gone in taken.items() if gone] + sorted(retired)
            if not unavailable:
                return placement, taken
            for subject in unavailable:
                first_digest = placement.created[subject]
                generation[first_digest] = generation.get(first_digest, 1) + 1

    def _link_deferred(
        self,
        session: Session,
        merges: list[Digests],
        placement: Placement,
        owner: dict[str, str],
        erased: set[str],
        every: set[str],
        now: datetime,
    ) -> dict[str, str]:
        """Fold the subjects the batch's merge groups link; the owners of `every` after it.

        Set-at-a-time (`link_groups`); a group naming no indexed digest at all (rare)
        sends the batch's merges one at a time through `SubjectIndex` instead. A group
        refused for meeting an erased subject marks its owners erased for this batch.
        """
        before = {**owner, **placement.joined}
        outcome = link_groups(session, merges, now)
        if outcome is None:
            index = SubjectIndex(session)
            pseudonym = self._pseudonymiser.subject_pseudonym

            def unused(first_digest: str) -> str:
                return index.unused_pseudonym(first_digest, pseudonym)

            for digests in merges:
                try:
                    with session.begin_nested():
                        index.resolve_or_create(digests, unused, now)
                except SubjectErasedError:
                    erased.update(owner.get(d, "") for _, d in digests)
            after = owners_of(session, every)
            self._retire(
                {before[d]: after[d] for d in before if after.get(d, before[d]) != before[d]}
            )
            return after
        for refused in outcome.refused:
            erased.update(owner.get(d, "") for _, d in merges[refused])
        survivor_of = outcome.survivor_of
        after = {digest: survivor_of.get(subject, subject) for digest, subject in before.items()}
        after.update(outcome.owner)
        self._retire(survivor_of)
        return after

    def _load_ciphers(
        self,
        session: Session,
        subjects: set[str],
        now: datetime,
        created: Collection[str] = (),
    ) -> None:
        """Cache the live key of each subject, making one where there is none; `created`:
        subjects inserted by this transaction, which cannot have a key yet. A subject the
        ledger holds as erased (its keys shredded) gets none, and no cached cipher."""
        # Not `subjects - ciphers.keys()`: a set minus a dict view walks the whole dict.
        ciphers = self._ciphers
        missing = {subject for subject in subjects if subject not in ciphers}
        if not missing:
            return
        expires_at = now + self._key_ttl
        stored = live_keys(session, missing - set(created))
        for unwritten in self._overlay:  # keys of batches routed but not written yet
            held = unwritten.keys
            stored.update({s: held[s] for s in missing if s in held and s not in stored})
        for subject, (key_id, wrapped) in stored.items():
            data_key = self._wrapper.unwrap(key_id, wrapped)
            self._cache_cipher(subject, FieldCipher(key_id, data_key), expires_at)
        keyless = {subject for subject in missing if subject not in ciphers}
        older = keyless - set(created)  # erased since it was cached, or a merge's survivor
        if older:
            keyless -= {s for s, gone in subjects_state(session, older).items() if gone}
        made = []
        for subject in sorted(keyless):
            key_id = f"k-{os.urandom(16).hex()}"  # never reused: 128 random bits
            data_key = new_data_key()
            made.append((key_id, subject, self._wrapper.wrap(key_id, data_key)))
            self._cache_cipher(subject, FieldCipher(key_id, data_key), expires_at)
        add_keys(self._sink(session), made, KEY_ALGORITHM, now)

    def _cache_cipher(self, subject: str, cipher: FieldCipher, expires_at: datetime) -> None:
        """Cache a key until `expires_at`. Only the addition is journaled: an undo removes
        it, and never restores an older key. (An undone key's expiry entry stays behind,
        in order: `expire_keys` drops it, harmlessly, when its time comes.)"""
        ciphers, expiry = self._ciphers, self._key_expiry
        ciphers.pop(subject, None)
        expiry.pop(subject, None)  # re-added at the end: the entries stay in expiry order
        if self._journal is not None:
            self._journal.before(ciphers, subject)
        ciphers[subject] = cipher
        expiry[subject] = expires_at

    def _retire(self, survivors: dict[str, str]) -> None:
        """Subjects merged away in the ledger: cached digests follow them to the survivor.

        The digests keep naming the retired pseudonym in the cache; lookups follow
        `_survivor` (`current`), so a merge costs nothing per cached digest until the next
        compaction (`COMPACT_AT`) points them at the survivor.
        """
        for retired, survivor in survivors.items():
            self.forget_key(retired)
            self._put(self._survivor, retired, survivor)

    def current(self, subject: str) -> str:
        """The subject a pseudonym names now (the survivor, if it was merged away)."""
        while subject in self._survivor:
            subject = self._survivor[subject]
        return subject

    def _remember(self, digests: Digests, subject: str) -> None:
        self._drop(self._survivor, subject)  # the ledger says it owns digests: it is live
        cached = (self._subject_of.get(d) for _, d in digests)
        owners = {self.current(owner) for owner in cached if owner is not None}
        # an erased subject's other digests follow nobody: they leave at the compaction
        stale = {owner for owner in owners if owner != subject and owner not in self._gone}
        for retired in stale:  # merged into `subject` (by another router, or earlier)
            self.forget_key(retired)
            self._put(self._survivor, retired, subject)
        subject_of = self._subject_of
        for _, digest in digests:
            self._put(subject_of, digest, subject)
            subject_of.move_to_end(digest)

    # Cache changes made in a batch or a resolve attempt go through these, so a rollback
    # (`_journal`) leaves the caches as they were: never a cached subject or key that the
    # ledger does not hold. Removing a key (`forget_key`) is never journaled: a key
    # missing from the cache is only unwrapped again, one restored could outlive erasure.
    def _put(self, cache: dict[Any, Any], key: Hashable, value: Any) -> None:
        if self._journal is not None:
            self._journal.before(cache, key)
        cache[key] = value

    def _drop(self, cache: dict[Any, Any], key: Hashable) -> None:
        if key in cache:
            if self._journal is not None:
                self._journal.before(cache, key)
            del cache[key]


_ABSENT: Final = object()
_ADDED: Final = object()


class _Journal:
    """What cache entries held before a batch or an attempt changed them, to put back on
    rollback. Keys are only ever added through it (`_cache_cipher` removes the old one
    first), so an undo removes keys and never brings one back."""

    def __init__(self) -> None:
        self._before: list[tuple[dict[Any, Any], Any, Any]] = []

    def before(self, cache: dict[Any, Any], key: Hashable) -> None:
        self._before.append((cache, key, cache.get(key, _ABSENT)))

    def added(self, cache: dict[Any, Any], keys: Collection[Hashable]) -> None:
        """`keys`, absent from `cache` until now, are being added (one entry for all)."""
        self._before.append((cache, tuple(keys), _ADDED))

    def mark(self) -> int:
        return len(self._before)

    def undo(self, mark: int = 0) -> None:
        """Put back what the entries held before the changes made since `mark`."""
        before = self._before
        while len(before) > mark:
            cache, key, value = before.pop()
            if value is _ABSENT:
                cache.pop(key, None)
            elif value is _ADDED:
                for added in key:
                    cache.pop(added, None)
            else:
                cache[key] = value
