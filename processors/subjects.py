"""Identifiers seen together name one person: linking them to subjects, merging subjects.

An event (a group) names identifier digests. Digests the subject index does not hold yet
join the subject the group names. A group naming several subjects merges them: the oldest
(created first, then the lowest pseudonym) survives and the others become its aliases.
An erased subject is never merged nor extended: a group naming one is refused.

Pure: the index's facts in, a plan out; the ledger (streams/ledger) reads the facts and
stores the plan. Groups are sequences of (identifier kind, digest); kinds pass through
to the rows to insert and decide nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

Group = Sequence[tuple[str, str]]
"""(identifier kind, digest) pairs one event names, in order."""

Row = tuple[str, str, str]
"""(digest, kind, subject): a digest the index does not hold yet, joining `subject`."""


class SubjectFacts(NamedTuple):
    """What a merge needs to know about an existing subject."""

    created_at: datetime
    erased: bool


@dataclass(slots=True)
class MergePlan:
    """What `plan_merges` decided, every subject named as it stands after all the merges.

    `owner` holds every digest of the groups that linked (neither refused, unowned nor
    stale); `attached` the digests among them the index did not hold, in first-seen order.
    """

    survivor_of: dict[str, str] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    attached: list[Row] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    erased_met: set[str] = field(default_factory=set)
    unowned: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)


def plan_merges(
    groups: Sequence[Group], owner: Mapping[str, str], subjects: Mapping[str, SubjectFacts]
) -> MergePlan:
    """Link each group, in order, to one subject, merging the subjects it names.

    `owner`: digest -> subject, for the digests the index holds; `subjects`: the facts of
    those subjects. The result is what linking the groups one at a time leaves: a group
    sees the merges and digests of the groups linked before it. A group naming an erased
    subject changes nothing (`refused`, the erased subjects in `erased_met`); one naming
    no subject (`unowned`) or a subject missing from `subjects` (`stale`: merged away
    since `owner` was read) is left to the caller and changes nothing either.
    """
    plan = MergePlan()
    parent: dict[str, str] = {}  # retired -> the subject it merged into (then maybe further)
    joined: dict[str, tuple[str, str]] = {}  # digest not held -> (kind, subject it joined)

    def root(subject: str) -> str:
        while subject in parent:
            subject = parent[subject]
        return subject

    linked: list[Group] = []
    for index, group in enumerate(groups):
        named: set[str] = set()
        for _, digest in group:
            subject = owner.get(digest)
            if subject is None and digest in joined:
                subject = joined[digest][1]
            if subject is not None:
                named.add(root(subject))
        if not named:
            plan.unowned.append(index)
            continue
        if not named <= subjects.keys():
            plan.stale.append(index)
            continue
        erased = {subject for subject in named if subjects[subject].erased}
        if erased:
            plan.refused.append(index)
            plan.erased_met |= erased
            continue
        survivor = min(named, key=lambda subject: (subjects[subject].created_at, subject))
        for subject in sorted(named - {survivor}):
            parent[subject] = survivor
        for kind, digest in group:
            if digest not in owner and digest not in joined:
                joined[digest] = (kind, survivor)
        linked.append(group)

    plan.survivor_of = {subject: root(subject) for subject in parent}
    plan.attached = [(digest, kind, root(subject)) for digest, (kind, subject) in joined.items()]
    for group in linked:
        for _, digest in group:
            subject = owner.get(digest)
            plan.owner[digest] = root(joined[digest][1] if subject is None else subject)
    return plan


@dataclass(slots=True)
class Placement:
    """What `place_events` decided: new subjects, digests joining a subject, merges to do."""

    created: dict[str, str] = field(default_factory=dict)  # new subject -> digest named after
    joined: dict[str, str] = field(default_factory=dict)  # digest not held -> its subject
    attached: list[Row] = field(default_factory=list)  # the same, as rows, in order
    deferred: list[int] = field(default_factory=list)  # groups naming several subjects

    def without(self, subjects: Collection[str]) -> Placement:
        """The placement with nothing created for, nor joining, these subjects."""
        if not subjects:
            return self
        return Placement(
            created={s: d for s, d in self.created.items() if s not in subjects},
            joined={d: s for d, s in self.joined.items() if s not in subjects},
            attached=[row for row in self.attached if row[2] not in subjects],
            deferred=self.deferred,
        )


def place_events(
    groups: Sequence[Group], owner: Mapping[str, str], new_subject: Callable[[str], str]
) -> Placement:
    """Link each group naming at most one subject, in order; set aside the merges.

    The router's first pass over a batch, all in memory: a group naming one subject
    (held in `owner`, or joined by an earlier group) links its other digests to it; a
    group naming none starts the subject `new_subject(its first digest)` (unless that
    subject already holds digests in `owner`: then it joins it); a group naming several
    is `deferred`, to be merged by `plan_merges` once the rest is stored. Erasure is
    not looked at here: the caller drops what joined an erased subject (`without`).
    """
    placement = Placement()
    existing = set(owner.values())
    joined = placement.joined
    for index, group in enumerate(groups):
        named = {s for _, d in group if (s := owner.get(d) or joined.get(d)) is not None}
        if len(named) > 1:
            placement.deferred.append(index)
            continue
        if named:
            subject = named.pop()
        else:
            first = group[0][1]
            subject = new_subject(first)
            if subject not in existing:
                placement.created.setdefault(subject, first)
        for kind, digest in group:
            if digest not in owner and digest not in joined:
                joined[digest] = subject
                placement.attached.append((digest, kind, subject))
    return placement
