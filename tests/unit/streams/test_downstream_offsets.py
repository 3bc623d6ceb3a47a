"""What a downstream consumer may commit: never past a command not yet acknowledged."""

from __future__ import annotations

from streams.sdk.downstream.offsets import OffsetTracker

P0, P1 = ("privacy.erasure.v1", 0), ("privacy.erasure.v1", 1)


def test_skipped_records_are_committable_at_once() -> None:
    tracker = OffsetTracker()
    tracker.skipped(P0, 0)
    tracker.skipped(P0, 1)
    assert tracker.committable() == {P0: 2}


def test_a_pending_command_holds_its_partition_back_but_not_others() -> None:
    tracker = OffsetTracker()
    tracker.skipped(P0, 3)
    tracker.handed_out(P0, 4)
    tracker.skipped(P0, 5)
    tracker.skipped(P1, 7)
    assert tracker.committable() == {P0: 4, P1: 8}
    tracker.mark_committed({P0: 4, P1: 8})
    assert tracker.committable() == {}
    tracker.acknowledged(P0, 4)
    assert tracker.committable() == {P0: 6}


def test_acknowledging_out_of_order_commits_only_up_to_the_oldest_pending() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.handed_out(P0, offset)
    tracker.acknowledged(P0, 12)
    tracker.acknowledged(P0, 11)
    assert tracker.committable() == {P0: 10}
    tracker.acknowledged(P0, 10)
    assert tracker.committable() == {P0: 13}


def test_released_commands_are_sought_back_to_and_no_longer_pending() -> None:
    tracker = OffsetTracker()
    tracker.handed_out(P0, 20)
    tracker.handed_out(P0, 21)
    tracker.skipped(P1, 5)
    assert tracker.release_pending() == {P0: 20}
    assert tracker.pending_count() == 0
    assert tracker.committable() == {P0: 20, P1: 6}


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.handed_out(P0, 1)
    tracker.forget([P0])
    tracker.acknowledged(P0, 1)  # an answer after the rebalance commits nothing there
    assert not tracker.tracks(P0)
    assert tracker.committable() == {}
