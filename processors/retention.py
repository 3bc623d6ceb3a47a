"""Retention of recordings: the time rules, as values.

A recording is kept until `retain_until` (end of contact + the policy's period), longer
while any unreleased hold names it, its contact or its subject (which holds apply, merged
subjects included, is decided by the ledger: `RetentionLedger.active_holds_for`).
Releasing the last hold gives the recording `release + grace` more days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol


class RecordingFacts(Protocol):
    """What the time rules read of a recording (`RecordingRecord` fits)."""

    @property
    def state(self) -> str: ...
    @property
    def retain_until(self) -> datetime: ...


def within_window(recording: RecordingFacts, at: datetime) -> bool:
    """Still kept at `at`: a signal at that time may hold it (expired ones are gone)."""
    return recording.state != "expired" and recording.retain_until > at


def retain_after_release(
    released_at: datetime, grace_days: int, retain_until: datetime
) -> datetime:
    """New retention date once the last hold is released: never earlier than planned."""
    return max(retain_until, released_at + timedelta(days=grace_days))


def signal_hold_id(signal_id: str) -> str:
    """One hold per signalling event, so a replayed signal places nothing twice."""
    return f"h-signal-{signal_id}"
