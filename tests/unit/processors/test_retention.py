"""The retention rules: which holds cover a recording, and what outranks what."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from processors.retention import (
    RETAINED_UNDER_HOLD,
    Erasure,
    ErasureAction,
    Expiry,
    HoldCoverage,
    Release,
    ReleaseAction,
    canonical_subject,
    covering_holds,
    due_for_expiry,
    due_within,
    erasure_of,
    expiry_at,
    hold_covers,
    holds_on_placement,
    release_of,
    retain_after_release,
    signal_hold_id,
    within_window,
)

ENDED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MONTH = timedelta(days=30)
ALICE, ALICE_OLD, ALICE_MAIL, BOB = ("s-" + c * 32 for c in "aefb")
MERGED = {ALICE_OLD: ALICE, ALICE_MAIL: ALICE}  # two pseudonyms merged into ALICE


@dataclass(frozen=True)
class Recording:
    recording_id: str = "rec-1"
    contact_id: str = "call-1"
    subject_pseudonym: str = ALICE
    state: str = "standard"
    retain_until: datetime = ENDED + MONTH


@dataclass(frozen=True)
class Hold:
    hold_id: str
    scope: str
    target: str
    reason: str = "complaint"
    placed_at: datetime = ENDED
    released_at: datetime | None = None


def _ids(holds: list[Hold]) -> list[str]:
    return [h.hold_id for h in holds]


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


def test_a_hold_covers_by_recording_contact_or_subject_while_active() -> None:
    recording = Recording()
    holds = [
        Hold("h-subject", "subject", ALICE, placed_at=ENDED + timedelta(hours=2)),
        Hold("h-contact", "contact", "call-1", "fraud", placed_at=ENDED + timedelta(hours=1)),
        Hold("h-rec", "recording", "rec-1", "dispute", placed_at=ENDED + timedelta(hours=1)),
        Hold("h-released", "recording", "rec-1", released_at=ENDED + timedelta(days=1)),
        Hold("h-other-rec", "recording", "rec-2"),
        Hold("h-other-contact", "contact", "call-2"),
        Hold("h-bob", "subject", BOB),
        Hold("h-odd", "building", "rec-1"),  # no such scope: names nothing
    ]
    assert _ids(covering_holds(recording, holds)) == ["h-contact", "h-rec", "h-subject"]
    assert not hold_covers(holds[3], recording), "a released hold covers nothing"
    assert covering_holds(recording, []) == []


def test_a_hold_on_a_merged_subjects_alias_covers_all_of_that_persons_recordings() -> None:
    under_alias = Recording("rec-old", "call-old", ALICE_OLD)
    under_survivor = Recording("rec-new", "call-new", ALICE)
    under_other_alias = Recording("rec-mail", "mail-1", ALICE_MAIL)
    bobs = Recording("rec-bob", "call-bob", BOB)
    on_alias = Hold("h-alias", "subject", ALICE_OLD)
    on_survivor = Hold("h-survivor", "subject", ALICE, "fraud")
    for recording in (under_alias, under_survivor, under_other_alias):
        assert _ids(covering_holds(recording, [on_alias, on_survivor], MERGED)) == [
            "h-alias",
            "h-survivor",
        ]
    assert covering_holds(bobs, [on_alias, on_survivor], MERGED) == []
    assert canonical_subject(ALICE_OLD, MERGED) == canonical_subject(ALICE, MERGED) == ALICE
    # without the merge facts, an alias is only itself
    assert _ids(covering_holds(under_alias, [on_alias, on_survivor])) == ["h-alias"]


def test_the_coverage_index_agrees_with_the_rule_for_every_pairing() -> None:
    subjects = [ALICE, ALICE_OLD, ALICE_MAIL, BOB]
    recordings = [
        Recording(f"rec-{n}", f"call-{n % 3}", subject, state)
        for n, (subject, state) in enumerate(itertools.product(subjects, ["standard", "held"]))
    ]
    holds = [
        Hold(f"h-{n}", scope, target, placed_at=ENDED - timedelta(minutes=n), released_at=gone)
        for n, (scope, target, gone) in enumerate(
            itertools.product(
                ["recording", "contact", "subject"],
                ["rec-1", "rec-5", "call-0", "call-2", *subjects],
                [None, ENDED],
            )
        )
    ]
    index = HoldCoverage(holds, MERGED)
    for recording in recordings:
        expected = sorted(
            (h for h in holds if hold_covers(h, recording, MERGED)),
            key=lambda h: (h.placed_at, h.hold_id),
        )
        assert index.covering(recording) == expected


def test_a_hold_outranks_expiry() -> None:
    due = ENDED + MONTH
    recording = Recording()
    hold = Hold("h1", "subject", ALICE)
    assert expiry_at(recording, [], due - timedelta(microseconds=1)) is Expiry.NOT_DUE
    assert expiry_at(recording, [], due) is Expiry.DUE
    assert due_for_expiry(recording, [], due + 12 * MONTH)
    assert expiry_at(recording, [hold], due + 12 * MONTH) is Expiry.HELD
    assert not due_for_expiry(recording, [hold], due)
    held = replace(recording, state="held")
    assert expiry_at(held, [], due) is Expiry.HELD, "held until its release is stored"
    assert expiry_at(replace(recording, state="expired"), [], due) is Expiry.ALREADY_EXPIRED


def test_due_soon_is_uncovered_and_not_yet_due() -> None:
    recording = Recording()
    week = timedelta(days=7)
    assert due_within(recording, [], ENDED + MONTH - week, week)
    assert not due_within(recording, [], ENDED + MONTH - week - timedelta(seconds=1), week)
    assert not due_within(recording, [], ENDED + MONTH, week), "already due"
    assert not due_within(recording, [Hold("h1", "recording", "rec-1")], ENDED + MONTH - week, week)


def test_a_hold_outranks_erasure_and_erasure_outranks_standard_retention() -> None:
    recording = Recording()
    assert expiry_at(recording, [], ENDED) is Expiry.NOT_DUE
    assert erasure_of(recording, []) == Erasure(ErasureAction.DELETE), "erased before its date"
    holds = [
        Hold("h-old", "contact", "call-1", "fraud", placed_at=ENDED),
        Hold("h-new", "subject", ALICE, "complaint", placed_at=ENDED + timedelta(days=1)),
    ]
    assert erasure_of(recording, holds) == Erasure(
        ErasureAction.RETAIN_UNDER_HOLD, "h-old", ("complaint", "fraud")
    )
    assert erasure_of(replace(recording, state="held"), []) == Erasure(
        ErasureAction.RETAIN_UNDER_HOLD, None, ()
    )
    assert erasure_of(replace(recording, state="expired"), holds).action is (
        ErasureAction.ALREADY_DELETED
    )
    assert RETAINED_UNDER_HOLD == "retained_under_hold"


def test_releasing_the_last_hold_returns_the_recording_with_grace() -> None:
    held = Recording(state="held")
    released_at = ENDED + 3 * MONTH
    complaint = Hold("h1", "subject", ALICE, released_at=released_at)
    fraud = Hold("h2", "contact", "call-1", "fraud")
    remaining = covering_holds(held, [complaint, fraud])
    assert release_of(held, remaining, released_at, 7) == Release(
        ReleaseAction.STILL_HELD, held.retain_until
    )
    after = covering_holds(held, [complaint, replace(fraud, released_at=released_at)])
    assert after == []
    assert release_of(held, after, released_at, 7) == Release(
        ReleaseAction.RETURN_TO_STANDARD, released_at + timedelta(days=7)
    )
    early = ENDED + timedelta(days=1)
    assert release_of(held, [], early, 7).retain_until == held.retain_until, "never shortened"
    assert release_of(Recording(), [], released_at, 7).action is ReleaseAction.NOT_HELD
    gone = Recording(state="expired")
    assert release_of(gone, [], released_at, 7).action is ReleaseAction.NOT_HELD


def test_a_new_hold_takes_standard_recordings_still_in_their_window() -> None:
    recording = Recording()
    assert holds_on_placement(recording, None)
    assert holds_on_placement(recording, ENDED + timedelta(days=20))
    assert not holds_on_placement(recording, ENDED + MONTH), "the signal came after its window"
    assert not holds_on_placement(replace(recording, state="held"), None)
    assert not holds_on_placement(replace(recording, state="expired"), None)
