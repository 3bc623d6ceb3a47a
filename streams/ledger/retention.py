"""Recording retention: the schedule of every recording, legal holds, and their history.

A recording is `standard` until retain_until, `held` while a legal hold covers it, and
`expired` once a sweep (or an erasure) has ordered its media deleted. Which holds cover a
recording and what outranks what are `processors.retention`'s decisions: this module loads
their facts (recordings, candidate holds, merged subjects' aliases, a batch at a time) and
stores the results, refusing any change those decisions forbid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import Select, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from processors import retention as rules
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
from streams.ledger.hotpath import chunks
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

DUE_WINDOW = timedelta(days=7)
"""How far ahead `report` counts recordings as due soon."""

STANDARD, HELD, EXPIRED = RecordingState

_PAGE = 500
"""Recordings decided per round trip when a sweep or a report walks the schedule."""


class RetentionLedger:
    """Recordings, holds and history in the caller's Session: it flushes, never commits.

    Every method that changes a recording locks its row first (FOR UPDATE on PostgreSQL;
    SQLite serialises writers) and decides on what it reads after the lock, so a sweep and
    a hold racing on one recording cannot both win. Racing inserts of one id fail with an
    IntegrityError; the caller retries.
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
        canonical = self._aliases({target})
        rows = self._recordings_named(_family({target}, canonical), include_expired)
        named = [r for r in rows if rules.names_recording(scope, target, r, canonical)]
        named.sort(key=lambda r: (r.ended_at, r.recording_id))
        return [from_attributes(RecordingRecord, row) for row in named]

    def due_for_expiry(self, now: datetime, limit: int | None = None) -> list[RecordingRecord]:
        """Recordings a sweep at `now` expires (`processors.retention.due_for_expiry`):
        standard, retain_until <= now, no active hold covering them.

        Ordered by retain_until then id, at most `limit` of them (all when None).
        """
        now = require_aware(now)
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise InvalidRetentionValueError("limit must be a positive integer or None")
        due: list[RecordingRecord] = []
        for page in self._standard_pages(None, now):
            coverage = self._coverage(page)
            for row in page:
                if rules.due_for_expiry(row, coverage.covering(row), now):
                    due.append(from_attributes(RecordingRecord, row))
                    if len(due) == limit:
                        return due
        return due

    def covering_holds(self, recordings: Sequence[RecordingRecord]) -> dict[str, list[HoldRecord]]:
        """recording id -> the active holds covering it, oldest first (one batch of queries)."""
        coverage = self._coverage(recordings)
        return {r.recording_id: coverage.covering(r) for r in recordings}

    def mark_held(self, recording_id: str, hold_id: str, now: datetime) -> bool:
        """Put the recording under this active hold; False if it already is (no new row)."""
        now = require_aware(now)
        row = self._locked(recording_id)
        hold = self._hold_row(hold_id)
        if hold.released_at is not None:
            raise HoldReleasedError(hold_id)
        if row.state == EXPIRED:
            raise RecordingExpiredError(recording_id)
        canonical = self._aliases({row.subject_pseudonym, hold.target})
        if not rules.hold_covers(from_attributes(HoldRecord, hold), row, canonical):
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
        active = self._coverage([row]).covering(row)
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
        return self.mark_expired_all([recording_id], now, sweep_id)[0]

    def mark_expired_all(
        self, recording_ids: Sequence[str], now: datetime, sweep_id: str
    ) -> list[bool]:
        """`mark_expired` for a batch, with one lock and one hold lookup for all of them:
        one flag per id, in order. Any refusal refuses the batch and changes nothing."""
        cause = {"sweep_id": require_text(sweep_id, "sweep_id", 200)}
        now = require_aware(now)

        def decide_expiry(row: Recording, covering: list[HoldRecord]) -> bool:
            decision = rules.expiry_at(row, covering, now)
            if decision is rules.Expiry.HELD:
                raise RecordingHeldError(row.recording_id, tuple(h.hold_id for h in covering))
            if decision is rules.Expiry.NOT_DUE:
                raise RecordingNotDueError(row.recording_id)
            return decision is rules.Expiry.DUE

        return self._expire(recording_ids, now, cause, decide_expiry)

    def erase_recording(self, recording_id: str, now: datetime, request_id: str) -> bool:
        """Expire a recording ahead of its date for an erasure request; False if already
        expired. Refused (RecordingHeldError) while held: a hold outranks erasure."""
        cause = {"erasure_request": require_text(request_id, "request_id", 128)}

        def decide_erasure(row: Recording, covering: list[HoldRecord]) -> bool:
            decision = rules.erasure_of(row, covering)
            if decision.action is rules.ErasureAction.RETAIN_UNDER_HOLD:
                raise RecordingHeldError(row.recording_id, tuple(h.hold_id for h in covering))
            return decision.action is rules.ErasureAction.DELETE

        return self._expire([recording_id], require_aware(now), cause, decide_erasure)[0]

    def _expire(
        self,
        recording_ids: Sequence[str],
        now: datetime,
        cause: dict[str, Any],
        decide: Callable[[Recording, list[HoldRecord]], bool],
    ) -> list[bool]:
        """Lock the rows and decide each on what the lock let through (`decide(row,
        covering)` raises the refusal, or says whether to expire it); then expire them."""
        rows = self._locked_all(recording_ids)
        coverage = self._coverage(list(rows.values()))
        decided = [decide(rows[i], coverage.covering(rows[i])) for i in recording_ids]
        expired: list[bool] = []
        entries: list[dict[str, Any]] = []
        for recording_id, expire in zip(recording_ids, decided, strict=True):
            row = rows[recording_id]
            expired.append(expire and row.state != EXPIRED)  # an id given twice expires once
            if expired[-1]:
                row.state, row.expired_at, row.updated_at = EXPIRED, now, now
                entries.append(_history_values(row, now, HistoryAction.EXPIRED, details=cause,
                                               retain_until=row.retain_until))  # fmt: skip
        self._session.flush()
        if entries:  # one statement for the batch's history, not one per recording
            self._session.execute(insert(RecordingHistoryEntry), entries)
        return expired

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
        return self.covering_holds([recording])[recording.recording_id]

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
        due: Counter[tuple[str, str]] = Counter()
        for page in self._standard_pages(now, now + DUE_WINDOW):
            coverage = self._coverage(page)
            for row in page:
                if rules.due_within(row, coverage.covering(row), now, DUE_WINDOW):
                    due[row.controller, row.channel] += 1
        held: set[tuple[str, str, str, str]] = set()  # reason, controller, channel, id
        holds = list(self._session.scalars(select(Hold).where(Hold.released_at.is_(None))))
        targets = {h.target for h in holds}
        candidates = self._recordings_named(_family(targets, self._aliases(targets)))
        coverage = self._coverage(candidates, holds)
        for row in candidates:
            for hold in coverage.covering(row):
                held.add((hold.reason, row.controller, row.channel, row.recording_id))
        group = (Recording.controller, Recording.channel)
        expired = select(*group, func.count()).where(Recording.state == EXPIRED).group_by(*group)
        rows = [RetentionCount("due_soon", None, c, ch, n) for (c, ch), n in due.items()]
        rows += [
            RetentionCount("held", r, c, ch, n)
            for (r, c, ch), n in Counter(entry[:3] for entry in held).items()
        ]
        rows += [
            RetentionCount("expired", None, c, ch, n) for c, ch, n in self._session.execute(expired)
        ]
        rows.sort(key=lambda x: (x.measure, x.reason or "", x.controller, x.channel))
        return RetentionReport(as_of=now, due_window=DUE_WINDOW, rows=tuple(rows))

    # -- loading facts -------------------------------------------------------------------

    def _standard_pages(self, after: datetime | None, until: datetime) -> Iterator[list[Recording]]:
        """`standard` recordings with after < retain_until <= until, by (retain_until, id),
        a page at a time (a pre-filter: the holds are decided per page)."""
        query = select(Recording).where(
            Recording.state == STANDARD, Recording.retain_until <= until
        )
        if after is not None:
            query = query.where(Recording.retain_until > after)
        query = query.order_by(Recording.retain_until, Recording.recording_id).limit(_PAGE)
        page_query = query
        while True:
            page = list(self._session.scalars(page_query))
            if page:
                yield page
            if len(page) < _PAGE:
                return
            last = page[-1]
            page_query = query.where(
                or_(
                    Recording.retain_until > last.retain_until,
                    and_(
                        Recording.retain_until == last.retain_until,
                        Recording.recording_id > last.recording_id,
                    ),
                )
            )

    def _coverage(
        self, recordings: Collection[rules.RecordingFacts], holds: Iterable[Hold] | None = None
    ) -> rules.HoldCoverage[HoldRecord]:
        """What `processors.retention` needs to tell which holds cover these recordings:
        the merged subjects' aliases and, unless given, the active holds naming any of their
        ids, contact ids or subjects' pseudonyms (a pre-filter; the coverage is decided there)."""
        subjects = {r.subject_pseudonym for r in recordings}
        canonical = self._aliases(subjects)
        if holds is None:
            names = _family(subjects, canonical)
            names |= {r.recording_id for r in recordings} | {r.contact_id for r in recordings}
            active = select(Hold).where(Hold.released_at.is_(None))
            holds = self._in_chunks(active, Hold.target, names)
        return rules.HoldCoverage([from_attributes(HoldRecord, h) for h in holds], canonical)

    def _aliases(self, pseudonyms: Collection[str]) -> dict[str, str]:
        """alias -> canonical pseudonym for every merged pseudonym that may matter to these:
        their own aliases, their survivors' and the survivors' other aliases."""
        rows = self._alias_rows(pseudonyms)
        survivors = {a.canonical_pseudonym for a in rows if a.alias_pseudonym in pseudonyms}
        rows += self._alias_rows(survivors - set(pseudonyms))
        return {a.alias_pseudonym: a.canonical_pseudonym for a in rows}

    def _alias_rows(self, pseudonyms: Collection[str]) -> list[SubjectAlias]:
        found: list[SubjectAlias] = []
        for chunk in chunks(sorted(pseudonyms)):
            query = select(SubjectAlias).where(
                or_(
                    SubjectAlias.alias_pseudonym.in_(chunk),
                    SubjectAlias.canonical_pseudonym.in_(chunk),
                )
            )
            found += self._session.scalars(query)
        return found

    def _recordings_named(
        self, names: Collection[str], include_expired: bool = False
    ) -> list[Recording]:
        """Recordings whose id, contact id or subject pseudonym is one of `names`."""
        query = select(Recording)
        if not include_expired:
            query = query.where(Recording.state != EXPIRED)
        found: dict[str, Recording] = {}
        for column in (Recording.recording_id, Recording.contact_id, Recording.subject_pseudonym):
            for row in self._in_chunks(query, column, names):
                found[row.recording_id] = row
        return list(found.values())

    def _in_chunks(self, query: Select[Any], column: Any, values: Collection[str]) -> list[Any]:
        """`query` where column IN values, a chunk of values per statement."""
        found: list[Any] = []
        for chunk in chunks(sorted(values)):  # sorted: rows lock in one order
            found += self._session.scalars(query.where(column.in_(chunk)))
        return found

    def _locked(self, recording_id: str) -> Recording:
        return self._locked_all([recording_id])[recording_id]

    def _locked_all(self, recording_ids: Sequence[str]) -> dict[str, Recording]:
        """The rows, locked in id order, read afresh; UnknownRecordingError for a missing id."""
        query = (
            select(Recording)
            .order_by(Recording.recording_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        rows = {
            r.recording_id: r
            for r in self._in_chunks(query, Recording.recording_id, set(recording_ids))
        }
        for recording_id in recording_ids:
            if recording_id not in rows:
                raise UnknownRecordingError(recording_id)
        return rows

    def _hold_row(self, hold_id: str) -> Hold:
        """The hold, locked so that a release and a mark_held cannot interleave."""
        row = self._session.get(Hold, hold_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise UnknownHoldError(hold_id)
        return row

    # -- storing results -----------------------------------------------------------------

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
            **_history_values(row, now, action, hold_id, retain_until, details)
        )
        self._session.add(entry)
        self._session.flush()
        return _history(entry)


_HOLD_ORDER = (Hold.placed_at, Hold.hold_id)


def _family(pseudonyms: Iterable[str], canonical: Mapping[str, str]) -> set[str]:
    """The pseudonyms, their survivors and the survivors' aliases among the loaded ones:
    every name under which the same people's recordings or holds may be filed."""
    family = set(pseudonyms)
    survivors = {rules.canonical_subject(p, canonical) for p in family}
    family |= survivors
    family |= {a for a, c in canonical.items() if c in survivors}
    return family


def _history_values(
    row: Recording,
    now: datetime,
    action: HistoryAction,
    hold_id: str | None = None,
    retain_until: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "recording_id": row.recording_id,
        "at": now,
        "action": action.value,
        "hold_id": hold_id,
        "retain_until": retain_until,
        "details": normalised_details(details),
    }


def _history(row: RecordingHistoryEntry) -> HistoryRecord:
    details = MappingProxyType(dict(row.details))
    return HistoryRecord(**{**field_values(row, HistoryRecord), "details": details})
