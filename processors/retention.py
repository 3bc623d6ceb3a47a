"""Retention of recordings: which holds apply, what may expire, and when, as values.

A recording is kept until `retain_until` (end of contact + the policy's period), longer
while any unreleased hold names it, its contact or its subject. A hold outranks expiry
and erasure. Releasing the last hold gives the recording `release + grace` more days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

HOLD_SCOPES = ("recording", "contact", "subject")


class RecordingFacts(Protocol):
    @property
    def recording_id(self) -> str: ...
    @property
    def contact_id(self) -> str: ...
    @property
    def subject_pseudonym(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def retain_until(self) -> datetime: ...


class HoldFacts(Protocol):
    @property
    def hold_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def released_at(self) -> datetime | None: ...


def hold_applies(hold: HoldFacts, recording: RecordingFacts) -> bool:
    """An unreleased hold on the recording itself, its contact, or its subject."""
    if hold.released_at is not None:
        return False
    target = {
        "recording": recording.recording_id,
        "contact": recording.contact_id,
        "subject": recording.subject_pseudonym,
    }.get(hold.scope)
    return target == hold.target


def applying_holds(recording: RecordingFacts, holds: Iterable[HoldFacts]) -> list[HoldFacts]:
    return [hold for hold in holds if hold_applies(hold, recording)]


def is_expirable(recording: RecordingFacts, holds: Iterable[HoldFacts], now: datetime) -> bool:
    """Past its retention date, not yet expired, and held by nothing."""
    return (
        recording.state == "standard"
        and recording.retain_until <= now
        and not applying_holds(recording, holds)
    )


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
