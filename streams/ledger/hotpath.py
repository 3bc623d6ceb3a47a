"""Set-at-a-time reads and writes of the subject index and key vault, for the router.

The repositories (`SubjectIndex`, `KeyVault`) handle one subject at a time through the
ORM: right for the privacy app, a few milliseconds per subject. The router meets
thousands of new people per batch, so it reads every digest of a batch in one query and
inserts new subjects, identifiers and keys in one statement each. Merges of existing
subjects are stored set-at-a-time too (`link_groups`): `processors.subjects.plan_merges`
decides them, as it does for `SubjectIndex.resolve_or_create`. Inputs are validated like
the repositories validate them.

The router may also hold a batch's inserts back (`DeferredInserts`) and write them later,
in one transaction of their own, in another thread: while it routes the next batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.orm import InstrumentedAttribute, Session

from processors.subjects import MergePlan, SubjectFacts, plan_merges
from streams.ledger.columns import require_aware
from streams.ledger.errors import IdentifierKindMismatchError
from streams.ledger.models import (
    Subject,
    SubjectAlias,
    SubjectFootprint,
    SubjectIdentifier,
    SubjectKey,
)
from streams.ledger.records import (
    IdentifierKind,
    require_all_hex,
    require_all_pseudonyms,
)
from streams.ledger.subjects import validated_digests

_CHUNK = 500
# Core tables: bulk inserts skip the ORM's per-row bookkeeping (3x faster here).
_SUBJECTS = cast(Table, Subject.__table__)
_IDENTIFIERS = cast(Table, SubjectIdentifier.__table__)
_KEYS = cast(Table, SubjectKey.__table__)
_ALIASES = cast(Table, SubjectAlias.__table__)
_FOOTPRINTS = cast(Table, SubjectFootprint.__table__)
_KIND_VALUES = frozenset(kind.value for kind in IdentifierKind)
T = TypeVar("T")


def chunks(items: Collection[T]) -> Iterator[list[T]]:
    """`items` a bounded IN list at a time (`_CHUNK` values per statement)."""
    values = list(items)
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def owners_of(session: Session, digests: Collection[str]) -> dict[str, str]:
    """digest -> subject pseudonym, for the digests already indexed."""
    owners: dict[str, str] = {}
    for chunk in chunks(digests):
        rows = _select_in(
            session,
            (SubjectIdentifier.identifier_digest, SubjectIdentifier.subject_pseudonym),
            SubjectIdentifier.identifier_digest,
            chunk,
        )
        owners.update({digest: subject for digest, subject in rows})
    return owners


def subjects_state(
    session: Session, pseudonyms: Collection[str], *, locked: bool = False
) -> dict[str, bool]:
    """pseudonym -> erased?, for the pseudonyms that exist as subjects; `locked`: the rows
    stay as read until the transaction ends (`_select_in`)."""
    state: dict[str, bool] = {}
    for chunk in chunks(pseudonyms):
        rows = _select_in(
            session,
            (Subject.subject_pseudonym, Subject.erased_at),
            Subject.subject_pseudonym,
            chunk,
            locked=locked,
        )
        state.update({pseudonym: erased is not None for pseudonym, erased in rows})
    return state


def aliases_among(session: Session, pseudonyms: Collection[str]) -> set[str]:
    """The pseudonyms that are aliases: subjects merged away, whose names stay taken."""
    found: set[str] = set()
    for chunk in chunks(pseudonyms):
        rows = _select_in(session, (SubjectAlias.alias_pseudonym,), SubjectAlias.alias_pseudonym,
                          chunk)  # fmt: skip
        found.update(alias for (alias,) in rows)
    return found


def _select_in(
    session: Session,
    columns: tuple[InstrumentedAttribute[Any], ...],
    column: InstrumentedAttribute[Any],
    values: list[str],
    *,
    locked: bool = False,
) -> Sequence[Sequence[Any]]:
    """SELECT `columns` WHERE `column` IN `values`, as rows; `locked`: FOR SHARE, so no
    other transaction changes them before this one ends (on SQLite a write transaction
    excludes every other writer already).

    On SQLite the statement goes to the driver as text: SQLAlchemy expanding the IN list
    on every call cost more than the lookup itself. Values come back as the driver gives
    them (no type conversion): callers read strings and bytes, test for NULL, or order
    timestamps, which SQLite holds as fixed-width text (same order as the instants).
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        query = select(*columns).where(column.in_(values))
        return session.execute(query.with_for_update(read=True) if locked else query).all()
    table = column.class_.__table__.name
    names = ", ".join(c.key for c in columns)
    statement = "SELECT {} FROM {} WHERE {} IN ({})".format(  # noqa: S608 - names from the model
        names, table, column.key, ", ".join("?" * len(values))
    )
    return connection.exec_driver_sql(statement, tuple(values)).all()


def add_subjects(
    session: Session | DeferredInserts,
    subjects: Collection[str],
    identifiers: Sequence[tuple[str, str, str]],
    now: datetime,
) -> None:
    """Insert new subjects, then (digest, kind, subject) identifier rows."""
    now = require_aware(now)
    require_all_pseudonyms(subjects)
    require_all_hex((digest for digest, _, _ in identifiers), "identifier digest")
    identifier_rows = [(digest, _kind(kind), subject) for digest, kind, subject in identifiers]
    _insert(session, _SUBJECTS, ("subject_pseudonym",), [(s,) for s in subjects],
            {"created_at": now, "erased_at": None})  # fmt: skip
    _insert(session, _IDENTIFIERS, ("identifier_digest", "identifier_kind", "subject_pseudonym"),
            identifier_rows, {"first_seen_at": now, "last_seen_at": now})  # fmt: skip


def add_footprints(
    session: Session | DeferredInserts, footprints: Collection[tuple[str, str, str]], now: datetime
) -> None:
    """Record (subject, controller, channel) rows not recorded yet; existing ones stay."""
    now = require_aware(now)
    rows = sorted(footprints)
    require_all_pseudonyms(subject for subject, _, _ in rows)
    _insert(session, _FOOTPRINTS, ("subject_pseudonym", "controller", "channel"), rows,
            {"first_seen_at": now}, keep_existing=True)  # fmt: skip


def live_keys(session: Session, subjects: Collection[str]) -> dict[str, tuple[str, bytes]]:
    """subject -> (key id, wrapped key) of its newest unshredded key."""
    newest: dict[str, tuple[Any, str, bytes]] = {}
    for chunk in chunks(subjects):
        rows = _select_in(
            session,
            (SubjectKey.subject_pseudonym, SubjectKey.created_at, SubjectKey.key_id,
             SubjectKey.wrapped_key, SubjectKey.shredded_at),
            SubjectKey.subject_pseudonym,
            chunk,
        )  # fmt: skip
        for subject, created_at, key_id, wrapped, shredded_at in rows:
            # created_at orders the same as a datetime or as SQLite's fixed-width text
            if (
                wrapped is not None
                and shredded_at is None
                and (subject not in newest or (created_at, key_id) > newest[subject][:2])
            ):
                newest[subject] = (created_at, key_id, bytes(wrapped))
    return {subject: (key_id, wrapped) for subject, (_, key_id, wrapped) in newest.items()}


def add_keys(
    session: Session | DeferredInserts,
    keys: Sequence[tuple[str, str, bytes]],
    algorithm: str,
    now: datetime,
) -> None:
    """Insert (key id, subject, wrapped key) rows."""
    now = require_aware(now)
    _insert(session, _KEYS, ("key_id", "subject_pseudonym", "wrapped_key"), keys,
            {"algorithm": algorithm, "created_at": now, "shredded_at": None})  # fmt: skip


def _kind(kind: str) -> str:
    if kind in _KIND_VALUES:
        return kind
    return IdentifierKind(kind).value  # refuses an unknown kind as the repositories do


class SubjectErasedMeanwhile(Exception):
    """A batch's deferred rows name a subject erased after the batch read it."""


@dataclass(frozen=True)
class _Insert:
    table: Table
    columns: tuple[str, ...]
    rows: Sequence[tuple[object, ...]]
    constants: dict[str, object]
    keep_existing: bool


@dataclass
class DeferredInserts:
    """A batch's inserts, validated when added and written later by `write` (in one
    transaction, in any thread). Until then other transactions cannot see them: the
    router looks its own up here (`owner`, `keys`)."""

    inserts: list[_Insert] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # identifier digest -> subject
    keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # subject -> key

    def __bool__(self) -> bool:
        return bool(self.inserts)

    def add(self, kept: _Insert) -> None:
        self.inserts.append(kept)
        rows = cast(Sequence[tuple[str, str, Any]], kept.rows)
        if kept.table is _IDENTIFIERS:  # (digest, kind, subject)
            self.owner.update({digest: subject for digest, _, subject in rows})
        elif kept.table is _KEYS:  # (key id, subject, wrapped key)
            self.keys.update({subject: (key_id, wrapped) for key_id, subject, wrapped in rows})

    def write(self, session: Session) -> None:
        """Run every insert in `session`'s transaction (the caller commits), in order.

        The batch read the subjects it extends earlier, in another transaction: one
        erased since then must not gain an identifier, a key or a footprint. So they are
        read again here, locked against a concurrent erasure, and `SubjectErasedMeanwhile`
        is raised, having written nothing, if one was erased."""
        named: set[str] = set()
        created: set[str] = set()
        for kept in self.inserts:
            if kept.table is _SUBJECTS:
                created.update(str(row[0]) for row in kept.rows)
            else:
                position = kept.columns.index("subject_pseudonym")
                named.update(str(row[position]) for row in kept.rows)
        if any(subjects_state(session, sorted(named - created), locked=True).values()):
            raise SubjectErasedMeanwhile("a subject the batch extends was erased meanwhile")
        for kept in self.inserts:
            _insert(session, kept.table, kept.columns, kept.rows, kept.constants,
                    keep_existing=kept.keep_existing)  # fmt: skip


def _insert(
    session: Session | DeferredInserts,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[object, ...]],
    constants: dict[str, object],
    *,
    keep_existing: bool = False,
) -> None:
    """INSERT `rows` (values of `columns`), every row with the same `constants`;
    `keep_existing`: a row whose key exists already is skipped, not an error. Given
    `DeferredInserts`, the insert is kept there, to be written by its `write`.

    On SQLite the constants are converted by their column types once, and the rows go
    as multi-row statements (`_CHUNK` rows each): most of a batch's ledger time was
    SQLAlchemy converting the same timestamp for every row, and the driver gives up the
    GIL once per statement, not once per row as executemany does, so a write in another
    thread runs beside the router's Python work. Other databases use a Core insert.
    """
    if not rows:
        return
    if isinstance(session, DeferredInserts):
        session.add(_Insert(table, columns, list(rows), constants, keep_existing))
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        statement: Any = insert(table)
        if keep_existing and dialect.name == "postgresql":
            statement = postgresql_insert(table).on_conflict_do_nothing()
        for chunk in chunks(rows):
            session.execute(
                statement,
                [{**dict(zip(columns, row, strict=True)), **constants} for row in chunk],
            )
        return
    names = (*columns, *constants)
    bound = []
    for name, value in constants.items():
        processor = table.c[name].type._cached_bind_processor(dialect)
        bound.append(value if processor is None or value is None else processor(value))
    # ON CONFLICT DO NOTHING skips a row whose key exists; INSERT OR IGNORE would also
    # skip, silently, a row that breaks a CHECK or NOT NULL constraint.
    on_conflict = " ON CONFLICT DO NOTHING" if keep_existing else ""
    head = "INSERT INTO {} ({}) VALUES ".format(table.name, ", ".join(names))  # noqa: S608 - names from the model
    one_row = "({})".format(", ".join("?" * len(names)))
    tail = tuple(bound)
    for chunk in chunks(rows):
        values = [value for row in chunk for value in (*row, *tail)]
        statement = head + ", ".join([one_row] * len(chunk)) + on_conflict
        connection.exec_driver_sql(statement, tuple(values))


def link_groups(
    session: Session, groups: Sequence[Sequence[tuple[str, str]]], now: datetime
) -> MergePlan | None:
    """Link each group of (kind, digest) to one subject, in order, merging subjects: the
    facts are read (the subjects named locked), `plan_merges` decides, its plan is stored.

    What it leaves is what `SubjectIndex.resolve_or_create` called once per group (each
    in its own savepoint) leaves: retired subjects' identifiers, keys and aliases move to
    the survivor and their pseudonyms become its aliases; a group's unknown digests join
    it and its known ones have their first/last-seen window widened to `now`. A group
    naming an erased subject changes nothing; its index is listed in `refused`. Returns
    None, having written nothing, if a group has no indexed digest at all (only the
    one-at-a-time path creates a subject there) or names a subject merged away meanwhile.
    """
    now = require_aware(now)
    wanted = [validated_digests(group) for group in groups]
    every = {digest for group in wanted for digest in group}
    known: dict[str, tuple[str, str, datetime, datetime]] = {}
    for chunk in chunks(every):
        rows = session.execute(
            select(SubjectIdentifier.identifier_digest, SubjectIdentifier.identifier_kind,
                   SubjectIdentifier.subject_pseudonym, SubjectIdentifier.first_seen_at,
                   SubjectIdentifier.last_seen_at)
            .where(SubjectIdentifier.identifier_digest.in_(chunk))
        )  # fmt: skip
        known.update({digest: (kind, subject, first, last) for digest, kind, subject, first, last
                      in rows})  # fmt: skip
    for group in wanted:
        for digest, kind in group.items():
            stored = known.get(digest)
            if stored is not None and stored[0] != kind:
                raise IdentifierKindMismatchError(digest, stored[0], kind)
    subjects: dict[str, SubjectFacts] = {}
    for chunk in chunks(sorted({row[1] for row in known.values()})):
        locked = session.execute(
            select(Subject.subject_pseudonym, Subject.created_at, Subject.erased_at)
            .where(Subject.subject_pseudonym.in_(chunk))
            .order_by(Subject.subject_pseudonym)
            .with_for_update()
        )  # fmt: skip
        for pseudonym, created_at, erased_at in locked:
            subjects[pseudonym] = SubjectFacts(created_at, erased_at is not None)

    plan = plan_merges(
        [[(kind, digest) for digest, kind in group.items()] for group in wanted],
        {digest: row[1] for digest, row in known.items()},
        subjects,
    )
    if plan.unowned or plan.stale:
        return None
    _apply_merges(session, plan.survivor_of, now)
    if plan.attached:
        session.execute(
            insert(_IDENTIFIERS),
            [{"identifier_digest": digest, "identifier_kind": kind, "subject_pseudonym": subject,
              "first_seen_at": now, "last_seen_at": now}
             for digest, kind, subject in plan.attached],
        )  # fmt: skip
    widened = []
    for digest in plan.owner.keys() & known.keys():
        _, _, first, last = known[digest]
        if first > now or last < now:
            widened.append({"digest": digest, "first": min(first, now), "last": max(last, now)})
    if widened:
        session.execute(
            update(_IDENTIFIERS)
            .where(_IDENTIFIERS.c.identifier_digest == bindparam("digest"))
            .values(first_seen_at=bindparam("first"), last_seen_at=bindparam("last")),
            widened,
        )
    return plan


def _apply_merges(session: Session, survivor_of: dict[str, str], now: datetime) -> None:
    """Repoint identifiers, keys and aliases of retired subjects, alias them, drop them."""
    if not survivor_of:
        return
    pairs = [{"retired": r, "survivor": s} for r, s in sorted(survivor_of.items())]
    for table, column in (
        (_IDENTIFIERS, _IDENTIFIERS.c.subject_pseudonym),
        (_KEYS, _KEYS.c.subject_pseudonym),
        (_ALIASES, _ALIASES.c.canonical_pseudonym),
    ):
        session.execute(
            update(table)
            .where(column == bindparam("retired"))
            .values({column.key: bindparam("survivor")}),
            pairs,
        )
    session.execute(
        insert(_ALIASES),
        [{"alias_pseudonym": r, "canonical_pseudonym": s, "merged_at": now}
         for r, s in sorted(survivor_of.items())],
    )  # fmt: skip
    session.execute(
        delete(_SUBJECTS).where(_SUBJECTS.c.subject_pseudonym == bindparam("retired")),
        [{"retired": r} for r in sorted(survivor_of)],
    )
