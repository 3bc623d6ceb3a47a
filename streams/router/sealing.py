"""Sealing ahead: the helper process encrypts an event's personal fields while it decodes
the event, under the key the router is about to use, when it can tell which.

The router seals after resolving the event's subject in the ledger
(`streams.router.pipeline`), in its busiest thread, while its helper process has time to
spare (docs/benchmarks.md, "Why the router still uses 1.3 cores"). Most events are of
people the router has just routed, whose key it holds. So after each batch the router
sends its helper a `KeyNotes`: the digests that led to each key it sealed with itself, and
the keys it dropped since (erasure, age, eviction). The helper (`HeldKeys`) seals an event
whose digests all lead to one key it holds, and names the key (`Decoded.key_id`). The
router keeps those bytes only if that is the key it would have sealed with, and seals the
event itself otherwise: a guess never changes what is routed, a wrong or late one costs
the helper's time only.

The helper holds a key no longer than the router: each note carries the router's expiry
for the key (at most `CONTACTFLOW_ROUTER_KEY_TTL_S` after it was unwrapped), a key the
router dropped goes with the next note, and at most `MAX_KEYS` keys and `MAX_DIGESTS`
digests are held (least recently used out first).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Final, NamedTuple

from processors.crypto import FieldCipher

Digests = tuple[tuple[str, str], ...]  # ((kind, digest), ...) of one event, in order
# About 3.8 KB each (`streams.router.directory.CIPHER_ENTRY_BYTES`) and 340 B: at most
# about 85 MiB in the helper, a tenth of the keys the router's default budget may hold.
MAX_KEYS: Final = 16_384
MAX_DIGESTS: Final = 65_536


class KeyNote(NamedTuple):
    """A key the router sealed an event with, and the digests that led to it."""

    digests: Digests
    key_id: str
    data_key: bytes
    expires_at: datetime  # the router's own expiry for the key


class KeyNotes(NamedTuple):
    """What the router tells its helper after a batch (no reply is sent)."""

    learned: tuple[KeyNote, ...]
    dropped: tuple[str, ...]  # key ids the router no longer holds

    def __bool__(self) -> bool:
        return bool(self.learned or self.dropped)


class HeldKeys:
    """The helper's view of the router's keys: which key an event's digests lead to."""

    def __init__(self, *, max_keys: int = MAX_KEYS, max_digests: int = MAX_DIGESTS) -> None:
        self._max_keys = max_keys
        self._max_digests = max_digests
        self._ciphers: OrderedDict[str, FieldCipher] = OrderedDict()  # least recent first
        self._expiry: dict[str, datetime] = {}
        self._due: list[tuple[datetime, str]] = []  # (expiry, key id), a heap
        self._key_of: OrderedDict[str, str] = OrderedDict()  # digest -> key id

    def __len__(self) -> int:
        return len(self._ciphers)

    def holds(self, key_id: str) -> bool:
        return key_id in self._ciphers

    def learn(self, notes: KeyNotes) -> None:
        """Drop the keys the router dropped, then take the new ones (and their digests)."""
        self.drop(notes.dropped)
        ciphers, key_of = self._ciphers, self._key_of
        for digests, key_id, data_key, expires_at in notes.learned:
            if key_id in ciphers:
                ciphers.move_to_end(key_id)
            else:
                ciphers[key_id] = FieldCipher(key_id, data_key)
                self._expiry[key_id] = expires_at
                heapq.heappush(self._due, (expires_at, key_id))
            for _, digest in digests:
                key_of[digest] = key_id
                key_of.move_to_end(digest)
        while len(ciphers) > self._max_keys:
            self._forget(next(iter(ciphers)))
        while len(key_of) > self._max_digests:
            key_of.popitem(last=False)

    def drop(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            self._forget(key_id)

    def clear(self) -> None:
        self._ciphers.clear()
        self._expiry.clear()
        self._due.clear()
        self._key_of.clear()

    def expire(self, now: datetime) -> None:
        """Drop the keys whose expiry is `now` or earlier."""
        due = self._due
        while due and due[0][0] <= now:
            expires_at, key_id = heapq.heappop(due)
            if self._expiry.get(key_id) == expires_at:
                self._forget(key_id)

    def cipher_for(self, digests: Digests) -> FieldCipher | None:
        """The key every one of `digests` leads to, if it is held (call `expire` first)."""
        key_of = self._key_of
        key_id = None
        for _, digest in digests:
            found = key_of.get(digest)
            if found is None or (key_id is not None and found != key_id):
                return None
            key_id = found
        if key_id is None:
            return None
        cipher = self._ciphers.get(key_id)
        if cipher is not None:
            self._ciphers.move_to_end(key_id)
        return cipher

    def _forget(self, key_id: str) -> None:
        # Digests leading to it stay until they age out: they lead nowhere meanwhile.
        self._ciphers.pop(key_id, None)
        self._expiry.pop(key_id, None)
