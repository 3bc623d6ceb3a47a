"""Recording retention: the schedule of every recording, legal holds, and their history.

A recording is `standard` until retain_until, `held` while a legal hold covers it, and
`expired` once a sweep has ordered its media deleted. A hold covers a recording through
its id, its contact id or its subject's pseudonym (merged subjects' aliases included).
An active hold outranks expiry: nothing here expires a recording an active hold covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    distinct,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from streams.ledger.audit import _normalised_details as normalised_details
from streams.ledger.columns import require_aware
from streams.ledger.errors import (
    HoldNotApplicableError,
    HoldReleasedError,
    InvalidRetentionValueError,
    RecordingExpiredError,
    RecordingHeldError,
    RecordingNotDueError,
    UnknownHoldError,
    UnknownRecordingError,
)
from streams.ledger.models import Hold, Recording, RecordingHistoryEntry, SubjectAlias
from streams.ledger.records import (
    HistoryAction,
    HistoryRecord,
    HoldRecord,
    HoldScope,
    NewHold,
    NewRecording,
    RecordingRecord,
    RecordingState,
    RetentionCount,
    RetentionReport,
    field_values,
    from_attributes,
    require_choice,
    require_hold_target,
    require_text,
    require_valid_hold,
    require_valid_recording,
)
from streams.ledger.subjects import subject_family

DUE_WINDOW = timedelta(days=7)
"""How far ahead `report` counts recordings as due soon."""

STANDARD, HELD, EXPIRED = RecordingState


class RetentionLedger:
    """Recordings, holds and history in the caller's Session: it flushes, never commits.

    Every method that changes a recording locks its row first (FOR UPDATE on PostgreSQL;
    SQLite serialises writers), so a sweep and a hold racing on one recording cannot both
    win. Racing inserts of one id fail with an IntegrityError; the caller retries.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def register(self, recording: NewRecording, now: datetime) -> tuple[RecordingRecord, bool]:
        """Store a new recording as `standard`; an id already stored returns (it, False).

        A known id is returned unchanged whatever the new values. Registering does not look
        at holds: the caller checks `active_holds_for` and calls `mark_held`, and until then
        `due_for_expiry` still leaves a covered recording alone.
        """
        now = require_aware(now)
        new = require_valid_recording(recording)
        existing = self._session.get(Recording, new.recording_id)
        if existing is not None:
            return from_attributes(RecordingRecord, existing), False
        row = Recording(**field_values(new, NewRecording), state=STANDARD, registered_at=now,
                        updated_at=now, expired_at=None)  # fmt: skip
        self._session.add(row)
        self._session.flush()
        self._log(row, now, HistoryAction.REGISTERED, retain_until=row.retain_until,
                  details={"policy_version": row.policy_version})  # fmt: skip
        return from_attributes(RecordingRecord, row), True

    def get(self, recording_id: str) -> RecordingRecord | None:
        """The recording with this id, or None."""
        row = self._session.get(Recording, recording_id)
        return None if row is None else from_attributes(RecordingRecord, row)

    def recordings_for(
        self, scope: HoldScope | str, target: str, include_expired: bool = False
    ) -> list[RecordingRecord]:
        """Recordings a hold with this scope and target would cover, oldest contact first."""
        scope = require_choice(HoldScope, scope, "scope")
        require_hold_target(scope, target)
        if scope == HoldScope.RECORDING:
            where = Recording.recording_id == target
        elif scope == HoldScope.CONTACT:
            where = Recording.contact_id == target
        else:
            where = Recording.subject_pseudonym.in_(subject_family(self._session, [target]))
        query = select(Recording).where(where)
        if not include_expired:
            query = query.where(Recording.state != EXPIRED)
        query = query.order_by(Recording.ended_at, Recording.recording_id)
        return [from_attributes(RecordingRecord, row) for row in self._session.scalars(query)]

    def due_for_expiry(self, now: datetime, limit: int | None = None) -> list[RecordingRecord]:
        """`standard` recordings with retain_until <= now that no active hold covers.

        Ordered by retain_until then id, at most `limit` of them (all when None).
        """
        now = require_aware(now)
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise InvalidRetentionValueError("limit must be a positive integer or None")
        query = (
            select(Recording)
            .where(Recording.state == STANDARD, Recording.retain_until <= now, ~_covered())
            .order_by(Recording.retain_until, Recording.recording_id)
            .limit(limit)
        )
        return [from_attributes(RecordingRecord, row) for row in self._session.scalars(query)]

    def mark_held(self, recording_id: str, hold_id: str, now: datetime) -> bool:
        """Put the recording under this active hold; False if it already is (no new row)."""
        now = require_aware(now)
        row = self._locked(recording_id)
        hold = self._hold_row(hold_id)
        if hold.released_at is not None:
            raise HoldReleasedError(hold_id)
        if row.state == EXPIRED:
            raise RecordingExpiredError(recording_id)
        if hold.hold_id not in {h.hold_id for h in self._active_holds_of(row)}:
            raise HoldNotApplicableError(hold_id, recording_id)
        seen = self.history(recording_id) if row.state == HELD else []
        if any(h.action == HistoryAction.HELD and h.hold_id == hold_id for h in seen):
            return False
        row.state, row.updated_at = HELD, now
        self._log(row, now, HistoryAction.HELD, hold_id=hold_id,
                  details={"scope": hold.scope, "reason": hold.reason})  # fmt: skip
        return True

    def mark_standard(
        self,
        recording_id: str,
        retain_until: datetime,
        now: datetime,
        hold_id: str | None = None,
    ) -> bool:
        """Return a held recording to `standard` with a new retain_until (after a release).

        Refused while any active hold still covers it. A recording already `standard`
        is left alone and False returned. `hold_id` names the released hold, if any.
        """
        now = require_aware(now)
        retain_until = require_aware(retain_until, "retain_until")
        row = self._locked(recording_id)
        if hold_id is not None:
            self._hold_row(hold_id)
        if row.state == EXPIRED:
            raise RecordingExpiredError(recording_id)
        active = self._active_holds_of(row)
        if active:
            raise RecordingHeldError(recording_id, tuple(h.hold_id for h in active))
        if row.state == STANDARD:
            return False
        row.state, row.retain_until, row.updated_at = STANDARD, retain_until, now
        self._log(row, now, HistoryAction.RELEASED, hold_id=hold_id, retain_until=retain_until)
        return True

    def mark_expired(self, recording_id: str, now: datetime, sweep_id: str) -> bool:
        """Expire a due `standard` recording; False if it had already expired (no new row).

        Refused (RecordingHeldError) while an active hold covers it or while it is still
        `held`; refused (RecordingNotDueError) before its retain_until.
        """
        cause = {"sweep_id": require_text(sweep_id, "sweep_id", 200)}
        return self._expire(recording_id, require_aware(now), cause, due_only=True)

    def erase_recording(self, recording_id: str, now: datetime, request_id: str) -> bool:
        """Expire a recording ahead of its date for an erasure request; False if already
        expired. Refused (RecordingHeldError) while held: a hold outranks erasure."""
        cause = {"erasure_request": require_text(request_id, "request_id", 128)}
        return self._expire(recording_id, require_aware(now), cause, due_only=False)

    def _expire(
        self, recording_id: str, now: datetime, cause: dict[str, Any], *, due_only: bool
    ) -> bool:
        row = self._locked(recording_id)
        if row.state == EXPIRED:
            return False
        active = self._active_holds_of(row)
        if active or row.state == HELD:
            raise RecordingHeldError(recording_id, tuple(h.hold_id for h in active))
        if due_only and row.retain_until > now:
            raise RecordingNotDueError(recording_id)
        row.state, row.expired_at, row.updated_at = EXPIRED, now, now
        self._log(row, now, HistoryAction.EXPIRED, retain_until=row.retain_until, details=cause)
        return True

    def record_restriction(
        self,
        recording_id: str,
        now: datetime,
        hold_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> HistoryRecord:
        """Note that the recording was restricted (kept, not processed) instead of erased.

        The state is unchanged. `details` must hold ids and codes only, no personal data.
        """
        now = require_aware(now)
        row = self._locked(recording_id)
        if hold_id is not None:
            self._hold_row(hold_id)
        return self._log(row, now, HistoryAction.RESTRICTED, hold_id=hold_id, details=details)

    def history(self, recording_id: str) -> list[HistoryRecord]:
        """The recording's history in the order it was written ([] for an unknown id)."""
        rows = self._session.scalars(
            select(RecordingHistoryEntry)
            .where(RecordingHistoryEntry.recording_id == recording_id)
            .order_by(RecordingHistoryEntry.id)
        )
        return [_history(row) for row in rows]

    def place_hold(self, hold: NewHold, now: datetime) -> tuple[HoldRecord, bool]:
        """Store a new active hold; a hold id already used returns (that hold, False).

        Placing a hold changes no recording: the caller marks the recordings it covers
        (`recordings_for(scope, target)`) with `mark_held`.
        """
        now = require_aware(now)
        new = require_valid_hold(hold)
        existing = self._session.get(Hold, new.hold_id)
        if existing is not None:
            return from_attributes(HoldRecord, existing), False
        row = Hold(**field_values(new, NewHold), placed_at=now, released_at=None,
                   released_by=None, release_reason=None)  # fmt: skip
        self._session.add(row)
        self._session.flush()
        return from_attributes(HoldRecord, row), True

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold with this id, or None."""
        row = self._session.get(Hold, hold_id)
        return None if row is None else from_attributes(HoldRecord, row)

    def active_holds(self) -> list[HoldRecord]:
        """Every unreleased hold, oldest first."""
        query = select(Hold).where(Hold.released_at.is_(None)).order_by(*_HOLD_ORDER)
        return [from_attributes(HoldRecord, row) for row in self._session.scalars(query)]

    def active_holds_for(self, recording: RecordingRecord) -> list[HoldRecord]:
        """Unreleased holds covering the recording by id, contact id or subject."""
        return [from_attributes(HoldRecord, row) for row in self._active_holds_of(recording)]

    def release_hold(self, hold_id: str, by: str, reason: str, now: datetime) -> HoldRecord:
        """Release an active hold (final). Recordings it kept stay `held` until the caller
        returns each one no other hold covers to `standard` with `mark_standard`."""
        now = require_aware(now)
        require_text(by, "released_by", 128)
        require_text(reason, "release_reason", 200)
        row = self._hold_row(hold_id)
        if row.released_at is not None:
            raise HoldReleasedError(hold_id)
        row.released_at, row.released_by, row.release_reason = now, by, reason
        self._session.flush()
        return from_attributes(HoldRecord, row)

    def report(self, now: datetime) -> RetentionReport:
        """Counts by controller and channel: due within DUE_WINDOW (standard, uncovered,
        now < retain_until <= now + window), held (covered by an active hold, per reason)
        and expired."""
        now = require_aware(now)
        group = (Recording.controller, Recording.channel)
        count = func.count(distinct(Recording.recording_id))
        due = select(*group, count).where(
            Recording.state == STANDARD,
            Recording.retain_until > now,
            Recording.retain_until <= now + DUE_WINDOW,
            ~_covered(),
        )
        held = select(Hold.reason, *group, count).join(Hold, _active_hold_covers(*_ROW_KEYS))
        held = held.where(Recording.state != EXPIRED).group_by(Hold.reason, *group)
        expired = select(*group, count).where(Recording.state == EXPIRED)
        run = self._session.execute
        rows = [
            RetentionCount("due_soon", None, c, ch, n) for c, ch, n in run(due.group_by(*group))
        ]
        rows += [RetentionCount("held", r, c, ch, n) for r, c, ch, n in run(held)]
        rows += [
            RetentionCount("expired", None, c, ch, n) for c, ch, n in run(expired.group_by(*group))
        ]
        rows.sort(key=lambda x: (x.measure, x.reason or "", x.controller, x.channel))
        return RetentionReport(as_of=now, due_window=DUE_WINDOW, rows=tuple(rows))

    def _locked(self, recording_id: str) -> Recording:
        row = self._session.get(
            Recording, recording_id, with_for_update=True, populate_existing=True
        )
        if row is None:
            raise UnknownRecordingError(recording_id)
        return row

    def _hold_row(self, hold_id: str) -> Hold:
        """The hold, locked so that a release and a mark_held cannot interleave."""
        row = self._session.get(Hold, hold_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise UnknownHoldError(hold_id)
        return row

    def _active_holds_of(self, recording: Recording | RecordingRecord) -> list[Hold]:
        keys = (recording.recording_id, recording.contact_id, recording.subject_pseudonym)
        query = select(Hold).where(_active_hold_covers(*keys)).order_by(*_HOLD_ORDER)
        return list(self._session.scalars(query))

    def _log(
        self,
        row: Recording,
        now: datetime,
        action: HistoryAction,
        hold_id: str | None = None,
        retain_until: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> HistoryRecord:
        entry = RecordingHistoryEntry(
            recording_id=row.recording_id,
            at=now,
            action=action.value,
            hold_id=hold_id,
            retain_until=retain_until,
            details=normalised_details(details),
        )
        self._session.add(entry)
        self._session.flush()
        return _history(entry)


_HOLD_ORDER = (Hold.placed_at, Hold.hold_id)


def _canonical(pseudonym: SQLColumnExpression[str] | str) -> ColumnElement[str]:
    """SQL: the subject a pseudonym resolves to now (its merge survivor, else itself)."""
    alias = aliased(SubjectAlias)
    survivor = select(alias.canonical_pseudonym).where(alias.alias_pseudonym == pseudonym)
    # Explicit correlation: a Recording column two levels up must not become a FROM here.
    return func.coalesce(survivor.correlate_except(alias).scalar_subquery(), pseudonym)


def _active_hold_covers(
    recording_id: SQLColumnExpression[str] | str,
    contact_id: SQLColumnExpression[str] | str,
    subject: SQLColumnExpression[str] | str,
) -> ColumnElement[bool]:
    """SQL: the Hold row is unreleased and covers a recording with these id, contact id
    and subject pseudonym (columns of a correlated Recording, or plain values)."""
    return and_(
        Hold.released_at.is_(None),
        or_(
            and_(Hold.scope == HoldScope.RECORDING.value, Hold.target == recording_id),
            and_(Hold.scope == HoldScope.CONTACT.value, Hold.target == contact_id),
            and_(
                Hold.scope == HoldScope.SUBJECT.value,
                _canonical(Hold.target) == _canonical(subject),
            ),
        ),
    )


_ROW_KEYS = (Recording.recording_id, Recording.contact_id, Recording.subject_pseudonym)


def _covered() -> ColumnElement[bool]:
    """SQL: an active hold covers the Recording row of the enclosing query."""
    return exists().where(_active_hold_covers(*_ROW_KEYS)).correlate(Recording)


def _history(row: RecordingHistoryEntry) -> HistoryRecord:
    details = MappingProxyType(dict(row.details))
    return HistoryRecord(**{**field_values(row, HistoryRecord), "details": details})
