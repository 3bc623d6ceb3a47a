"""Dropping events a retrying producer sent twice, per input partition.

A window remembers the last `capacity` event ids of each partition with a digest of their
bytes. A repeat with the same bytes is a retry and is dropped; a repeat with other bytes
is an event id reused for different content and goes to the dead-letter topic. Events of
a batch are staged and only remembered once the batch's transaction commits, so an
aborted batch leaves the window as it was. A routed batch's stage is sealed (`seal`)
while its transaction commits, so the next batch can be checked against it meanwhile:
`commit` remembers the oldest stage, `discard` drops them all. On (re)assignment the
worker seeds the window from the records just before the committed offset, so the
guarantee survives restarts.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from enum import Enum


class Seen(Enum):
    NEW = "new"
    RETRY = "retry"  # same id, same bytes: drop
    REUSED = "reused"  # same id, other bytes: dead letter


def content_digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=8).digest()


class DedupWindow:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._partitions: dict[tuple[str, int], OrderedDict[str, bytes]] = {}
        self._staged: dict[tuple[str, int], dict[str, bytes]] = {}
        # routed batches whose transactions have not committed yet, oldest first
        self._sealed: deque[dict[tuple[str, int], dict[str, bytes]]] = deque()

    def check(self, partition: tuple[str, int], event_id: str, value: bytes) -> Seen:
        """Classify an event and stage it as seen (until `commit` or `discard`)."""
        return self.check_digest(partition, event_id, content_digest(value))

    def check_digest(self, partition: tuple[str, int], event_id: str, digest: bytes) -> Seen:
        """`check`, given the `content_digest` of the event's bytes."""
        if self.capacity == 0:
            return Seen.NEW
        staged = self._staged.setdefault(partition, {})
        known = staged.get(event_id)
        if known is None:
            for stage in self._sealed:  # batches routed, their transactions not ended yet
                if (known := stage.get(partition, {}).get(event_id)) is not None:
                    break
        if known is None:
            window = self._partitions.get(partition)
            known = None if window is None else window.get(event_id)
        if known is None:
            staged[event_id] = digest
            return Seen.NEW
        return Seen.RETRY if known == digest else Seen.REUSED

    def seal(self) -> None:
        """The staged events are one routed batch, now committing: later checks see them,
        and the next events are staged apart."""
        self._sealed.append(self._staged)  # empty too: one stage per batch, for `commit`
        self._staged = {}

    def commit(self) -> None:
        """The oldest routed batch's transaction committed: remember its events (the staged
        ones when none is sealed)."""
        stage = self._sealed.popleft() if self._sealed else self._staged
        for partition, events in stage.items():
            self.remember(partition, events.items())
        stage.clear()

    def discard(self) -> None:
        """A transaction aborted: every batch not committed yet will be read again."""
        self._staged.clear()
        self._sealed.clear()

    def remember(self, partition: tuple[str, int], events: Iterable[tuple[str, bytes]]) -> None:
        window = self._partitions.setdefault(partition, OrderedDict())
        for event_id, digest in events:
            window.setdefault(event_id, digest)  # the first copy of an id is the routed one
            window.move_to_end(event_id)
        while len(window) > self.capacity:
            window.popitem(last=False)

    def drop_partition(self, partition: tuple[str, int]) -> None:
        self._partitions.pop(partition, None)
        self._staged.pop(partition, None)
        for stage in self._sealed:
            stage.pop(partition, None)
