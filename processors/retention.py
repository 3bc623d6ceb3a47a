"""Retention of recordings: which legal holds cover a recording, and what expiry, an
erasure and a hold's release do to it.

The precedence, decided here and nowhere else:
- an active legal hold outranks expiry: a covered (or still `held`) recording never expires;
- an active legal hold outranks erasure: the recording is kept and restricted, "retained
  under legal hold" (GDPR Art. 17(3)(e));
- an erasure outranks standard retention: an uncovered recording goes before its date;
- releasing the last hold returns a recording to standard retention with `release + grace`
  more days, never fewer than planned.

A hold covers a recording through its id, its contact id or its subject; a subject hold
follows merges: the caller passes the canonical pseudonym of every merged alias it loaded.
Pure: the caller loads the facts (the recording, the candidate holds, the aliases) and
stores or sends the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

_STANDARD, _HELD, _EXPIRED = "standard", "held", "expired"  # a recording's states
_NO_ALIASES: Mapping[str, str] = MappingProxyType({})

RETAINED_UNDER_HOLD = "retained_under_hold"
"""An erasure's answer for a recording kept under a legal hold (GDPR Art. 17(3)(e))."""


class HoldScope(StrEnum):
    """What a hold's target names."""

    RECORDING = "recording"  # a recording id
    CONTACT = "contact"  # a contact id: every recording of that contact
    SUBJECT = "subject"  # a subject pseudonym: every recording of that person, merges followed


class RecordingFacts(Protocol):
    """What the rules read of a recording (`RecordingRecord` and the ledger's row fit)."""

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
    """What the rules read of a legal hold (`HoldRecord` and the ledger's row fit)."""

    @property
    def hold_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def placed_at(self) -> datetime: ...
    @property
    def released_at(self) -> datetime | None: ...


H = TypeVar("H", bound=HoldFacts)


# -- which holds cover a recording -------------------------------------------------------


def canonical_subject(pseudonym: str, canonical: Mapping[str, str] = _NO_ALIASES) -> str:
    """The subject a pseudonym names now: the survivor it was merged into, else itself.

    `canonical` maps merged (alias) pseudonyms to their survivor; others are absent."""
    return canonical.get(pseudonym, pseudonym)


def names_recording(
    scope: str, target: str, recording: RecordingFacts, canonical: Mapping[str, str] = _NO_ALIASES
) -> bool:
    """A hold with this scope and target names the recording (released or not)."""
    if scope == HoldScope.RECORDING:
        return target == recording.recording_id
    if scope == HoldScope.CONTACT:
        return target == recording.contact_id
    if scope == HoldScope.SUBJECT:
        subject = canonical_subject(recording.subject_pseudonym, canonical)
        return canonical_subject(target, canonical) == subject
    return False


def hold_covers(
    hold: HoldFacts, recording: RecordingFacts, canonical: Mapping[str, str] = _NO_ALIASES
) -> bool:
    """The hold is active (unreleased) and names the recording."""
    return hold.released_at is None and names_recording(
        hold.scope, hold.target, recording, canonical
    )


class HoldCoverage(Generic[H]):
    """Which of a batch's candidate holds cover each recording: built once, asked per
    recording without scanning every hold (a sweep may ask thousands of times)."""

    def __init__(self, holds: Iterable[H], canonical: Mapping[str, str] = _NO_ALIASES) -> None:
        self._canonical = canonical
        self._by_name: dict[str, list[H]] = {}
        for hold in holds:
            name = hold.target
            if hold.scope == HoldScope.SUBJECT:
                name = canonical_subject(name, canonical)
            self._by_name.setdefault(name, []).append(hold)

    def covering(self, recording: RecordingFacts) -> list[H]:
        """The active holds covering the recording, oldest first (placed_at, hold_id)."""
        subject = canonical_subject(recording.subject_pseudonym, self._canonical)
        found: dict[str, H] = {}
        for name in (recording.recording_id, recording.contact_id, subject):
            for hold in self._by_name.get(name, ()):
                if hold_covers(hold, recording, self._canonical):
                    found[hold.hold_id] = hold
        return sorted(found.values(), key=lambda h: (h.placed_at, h.hold_id))


def covering_holds(
    recording: RecordingFacts, holds: Iterable[H], canonical: Mapping[str, str] = _NO_ALIASES
) -> list[H]:
    """The active holds among `holds` that cover the recording, oldest first."""
    return HoldCoverage(holds, canonical).covering(recording)


# -- what a hold, expiry, an erasure and a release do ---------------------------------------


def within_window(recording: RecordingFacts, at: datetime) -> bool:
    """Still kept at `at`: a signal at that time may hold it (expired ones are gone)."""
    return recording.state != _EXPIRED and recording.retain_until > at


def holds_on_placement(recording: RecordingFacts, signal_at: datetime | None) -> bool:
    """A newly placed hold moves this recording to `held`: it is `standard` and, for a hold
    a signal placed (`signal_at`), it was still kept when the signalled event happened."""
    if recording.state != _STANDARD:
        return False
    return signal_at is None or within_window(recording, signal_at)


class Expiry(StrEnum):
    """What a sweep at a given time does to a recording."""

    DUE = "due"  # expire it now: standard, past retain_until, no active hold
    NOT_DUE = "not_due"  # standard and uncovered, retain_until still ahead
    HELD = "held"  # an active hold covers it, or it is still `held`: a hold outranks expiry
    ALREADY_EXPIRED = "already_expired"


def expiry_at(recording: RecordingFacts, covering: Sequence[HoldFacts], now: datetime) -> Expiry:
    """Expiry at `now`, given the active holds covering the recording (`covering_holds`)."""
    if recording.state == _EXPIRED:
        return Expiry.ALREADY_EXPIRED
    if covering or recording.state == _HELD:
        return Expiry.HELD
    if recording.retain_until > now:
        return Expiry.NOT_DUE
    return Expiry.DUE


def due_for_expiry(recording: RecordingFacts, covering: Sequence[HoldFacts], now: datetime) -> bool:
    """A sweep at `now` expires it: standard, retain_until <= now, no active hold."""
    return expiry_at(recording, covering, now) is Expiry.DUE


def due_within(
    recording: RecordingFacts, covering: Sequence[HoldFacts], now: datetime, window: timedelta
) -> bool:
    """Not due at `now` but due by `now + window` (a report's "due soon")."""
    return (
        expiry_at(recording, covering, now) is Expiry.NOT_DUE
        and expiry_at(recording, covering, now + window) is Expiry.DUE
    )


class ErasureAction(StrEnum):
    """What an erasure request does to one of the subject's recordings."""

    DELETE = "delete"  # erasure outranks standard retention: expire it before its date
    RETAIN_UNDER_HOLD = "retain_under_hold"  # a hold outranks erasure: keep it, restricted
    ALREADY_DELETED = "already_deleted"


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure's decision for one recording. When retained: the hold its restriction
    names (the oldest covering one; None if it is still `held` after its last release) and
    the covering holds' reasons, sorted, one per hold."""

    action: ErasureAction
    hold_id: str | None = None
    hold_reasons: tuple[str, ...] = ()


def erasure_of(recording: RecordingFacts, covering: Sequence[HoldFacts]) -> Erasure:
    """What an erasure does to the recording, given the active holds covering it."""
    if recording.state == _EXPIRED:
        return Erasure(ErasureAction.ALREADY_DELETED)
    if covering or recording.state == _HELD:
        return Erasure(
            ErasureAction.RETAIN_UNDER_HOLD,
            covering[0].hold_id if covering else None,
            tuple(sorted(h.reason for h in covering)),
        )
    return Erasure(ErasureAction.DELETE)


class ReleaseAction(StrEnum):
    """What releasing a hold does to a recording it named."""

    RETURN_TO_STANDARD = "return_to_standard"  # its last hold: standard, with grace
    STILL_HELD = "still_held"  # another active hold still covers it
    NOT_HELD = "not_held"  # standard or expired: nothing to return


@dataclass(frozen=True, slots=True)
class Release:
    """A release's decision for one recording, and its retention date afterwards
    (unchanged unless it returns to standard)."""

    action: ReleaseAction
    retain_until: datetime


def release_of(
    recording: RecordingFacts,
    covering: Sequence[HoldFacts],
    released_at: datetime,
    grace_days: int,
) -> Release:
    """What a release at `released_at` does, given the active holds still covering it."""
    if recording.state != _HELD:
        return Release(ReleaseAction.NOT_HELD, recording.retain_until)
    if covering:
        return Release(ReleaseAction.STILL_HELD, recording.retain_until)
    until = retain_after_release(released_at, grace_days, recording.retain_until)
    return Release(ReleaseAction.RETURN_TO_STANDARD, until)


def retain_after_release(
    released_at: datetime, grace_days: int, retain_until: datetime
) -> datetime:
    """New retention date once the last hold is released: never earlier than planned."""
    return max(retain_until, released_at + timedelta(days=grace_days))


def signal_hold_id(signal_id: str) -> str:
    """One hold per signalling event, so a replayed signal places nothing twice."""
    return f"h-signal-{signal_id}"
