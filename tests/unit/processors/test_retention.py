from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from processors.retention import (
    applying_holds,
    is_expirable,
    retain_after_release,
    signal_hold_id,
    within_window,
)

ENDED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MONTH = timedelta(days=30)


@dataclass(frozen=True)
class Recording:
    recording_id: str = "rec-1"
    contact_id: str = "call-1"
    subject_pseudonym: str = "s-" + "a" * 32
    state: str = "standard"
    retain_until: datetime = ENDED + MONTH


@dataclass(frozen=True)
class Hold:
    hold_id: str
    scope: str
    target: str
    released_at: datetime | None = None


def test_expires_at_its_date_not_a_minute_before() -> None:
    recording = Recording()
    assert not is_expirable(recording, [], ENDED + MONTH - timedelta(minutes=1))
    assert is_expirable(recording, [], ENDED + MONTH)


def test_any_scope_of_hold_prevents_expiry_until_released() -> None:
    recording = Recording()
    later = ENDED + 10 * MONTH
    for scope, target in (("recording", "rec-1"), ("contact", "call-1"),
                          ("subject", recording.subject_pseudonym)):  # fmt: skip
        hold = Hold("h-1", scope, target)
        assert applying_holds(recording, [hold]) == [hold]
        assert not is_expirable(recording, [hold], later)
        assert is_expirable(recording, [replace(hold, released_at=later)], later)


def test_holds_on_other_targets_do_not_apply() -> None:
    holds = [Hold("h-1", "contact", "call-2"), Hold("h-2", "subject", "s-" + "b" * 32)]
    assert applying_holds(Recording(), holds) == []


def test_only_standard_recordings_expire() -> None:
    later = ENDED + 2 * MONTH
    assert not is_expirable(Recording(state="held"), [], later)
    assert not is_expirable(Recording(state="expired"), [], later)


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
