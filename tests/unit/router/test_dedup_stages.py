"""The dedup window while transactions overlap: batch N commits while N+1 is routed.

Each routed batch's event ids are one sealed stage. A retry in the next batch must be
caught while the first copy's transaction is still committing; a commit remembers only
the oldest batch; an abort forgets every batch not committed yet.
"""

from __future__ import annotations

from streams.router.dedup import DedupWindow, Seen, content_digest

P = ("contact.raw.chat.v1", 0)


def _check(window: DedupWindow, event_id: str, value: bytes) -> Seen:
    return window.check_digest(P, event_id, content_digest(value))


def test_a_retry_in_the_next_batch_is_caught_while_the_first_copy_commits() -> None:
    window = DedupWindow(100)
    assert _check(window, "e1", b"one") is Seen.NEW
    window.seal()  # batch N routed, its transaction committing

    assert _check(window, "e1", b"one") is Seen.RETRY
    assert _check(window, "e1", b"other bytes") is Seen.REUSED
    assert _check(window, "e2", b"two") is Seen.NEW


def test_a_commit_remembers_the_oldest_batch_only() -> None:
    window = DedupWindow(100)
    _check(window, "e1", b"one")
    window.seal()  # batch N
    _check(window, "e2", b"two")
    window.seal()  # batch N+1

    window.commit()  # N's transaction committed
    window.discard()  # N+1's aborted

    assert _check(window, "e1", b"one") is Seen.RETRY, "N was committed: remembered"
    assert _check(window, "e2", b"two") is Seen.NEW, "N+1 aborted: read again, routed again"


def test_an_abort_forgets_every_batch_not_committed() -> None:
    window = DedupWindow(100)
    _check(window, "e1", b"one")
    window.seal()
    _check(window, "e2", b"two")
    window.seal()
    _check(window, "e3", b"three")

    window.discard()

    assert [_check(window, e, v) for e, v in (("e1", b"one"), ("e2", b"two"), ("e3", b"three"))] \
        == [Seen.NEW] * 3  # fmt: skip


def test_a_batch_that_staged_nothing_still_counts_as_one_commit() -> None:
    """Stages pair with transactions: an empty batch's commit must not remember the next."""
    window = DedupWindow(100)
    window.seal()  # batch N: every record rejected before the dedup check
    _check(window, "e1", b"one")
    window.seal()  # batch N+1

    window.commit()  # N committed
    window.discard()  # N+1 aborted

    assert _check(window, "e1", b"one") is Seen.NEW


def test_without_seal_a_commit_remembers_what_is_staged() -> None:
    window = DedupWindow(100)
    _check(window, "e1", b"one")
    window.commit()
    window.discard()
    assert _check(window, "e1", b"one") is Seen.RETRY


def test_a_revoked_partition_leaves_no_stage_behind() -> None:
    window = DedupWindow(100)
    _check(window, "e1", b"one")
    window.seal()
    window.drop_partition(P)
    assert _check(window, "e1", b"one") is Seen.NEW
