from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from processors.retention import retain_after_release, signal_hold_id, within_window

ENDED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MONTH = timedelta(days=30)


@dataclass(frozen=True)
class Recording:
    recording_id: str = "rec-1"
    contact_id: str = "call-1"
    subject_pseudonym: str = "s-" + "a" * 32
    state: str = "standard"
    retain_until: datetime = ENDED + MONTH


def test_signal_window_and_release_grace() -> None:
    recording = Recording()
    assert within_window(recording, ENDED + timedelta(days=20))
    assert not within_window(recording, ENDED + MONTH)
    assert not within_window(Recording(state="expired"), ENDED)
    released = ENDED + timedelta(days=90)
    assert retain_after_release(released, 7, recording.retain_until) == released + timedelta(7)
    early = ENDED + timedelta(days=21)
    assert retain_after_release(early, 7, recording.retain_until) == recording.retain_until
    assert signal_hold_id("e-1") == signal_hold_id("e-1") != signal_hold_id("e-2")
