"""Which input offset a downstream consumer may commit, per partition (pure, no Kafka).

At least once: a partition's committed offset never passes a command handed to the
application and not yet acknowledged. Records the consumer skips (other consumers'
commands, unreadable bytes) move it forward as soon as nothing earlier is pending, so a
consumer that receives little does not hold its group back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Partition = tuple[str, int]


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)
    seen_end: int = -1  # offset after the highest record seen; -1 when none yet
    committed: int = -1  # the last offset committed (or known committed) by us


class OffsetTracker:
    """Offsets handed out, skipped and acknowledged; says what is safe to commit."""

    def __init__(self) -> None:
        self._partitions: dict[Partition, _PartitionState] = {}

    def handed_out(self, partition: Partition, offset: int) -> None:
        """A command given to the application: not committable until acknowledged."""
        state = self._state(partition)
        state.pending.add(offset)
        state.seen_end = max(state.seen_end, offset + 1)

    def skipped(self, partition: Partition, offset: int) -> None:
        """A record the application never sees: committable once nothing earlier is pending."""
        state = self._state(partition)
        state.seen_end = max(state.seen_end, offset + 1)

    def acknowledged(self, partition: Partition, offset: int) -> None:
        state = self._partitions.get(partition)
        if state is not None:
            state.pending.discard(offset)

    def tracks(self, partition: Partition) -> bool:
        return partition in self._partitions

    def committable(self) -> dict[Partition, int]:
        """Per partition, the offset to commit now, where it moved past the last commit."""
        ready = {}
        for partition, state in self._partitions.items():
            safe = min(state.pending) if state.pending else state.seen_end
            if safe > state.committed:
                ready[partition] = safe
        return ready

    def mark_committed(self, offsets: dict[Partition, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = max(state.committed, offset)

    def release_pending(self) -> dict[Partition, int]:
        """Forget unacknowledged commands; returns where to seek so they are read again."""
        rewind = {}
        for partition, state in self._partitions.items():
            if state.pending:
                rewind[partition] = min(state.pending)
                state.seen_end = rewind[partition]
                state.pending.clear()
        return rewind

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions revoked in a rebalance: their next owner reads from the last commit."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def pending_count(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())

    def _state(self, partition: Partition) -> _PartitionState:
        return self._partitions.setdefault(partition, _PartitionState())
