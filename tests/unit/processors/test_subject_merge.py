"""Linking identifiers to subjects and merging subjects (processors.subjects), pure."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from processors.subjects import (
    Group,
    MergePlan,
    SubjectFacts,
    place_events,
    plan_merges,
)

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def facts(hours: int, *, erased: bool = False) -> SubjectFacts:
    return SubjectFacts(T0 + timedelta(hours=hours), erased)


def phones(*digests: str) -> Group:
    return [("phone", digest) for digest in digests]


def apply(
    plan: MergePlan, owner: dict[str, str], subjects: dict[str, SubjectFacts]
) -> tuple[dict[str, str], dict[str, SubjectFacts]]:
    """The index after storing `plan`, as the ledger stores it."""
    after = {d: plan.survivor_of.get(s, s) for d, s in owner.items()}
    after.update({digest: subject for digest, _, subject in plan.attached})
    return after, {s: f for s, f in subjects.items() if s not in plan.survivor_of}


def test_a_group_naming_two_subjects_merges_them_into_the_oldest() -> None:
    owner = {"a": "s-new", "b": "s-old"}
    subjects = {"s-new": facts(5), "s-old": facts(1)}

    plan = plan_merges([phones("a", "x", "b")], owner, subjects)

    assert plan.survivor_of == {"s-new": "s-old"}
    assert plan.attached == [("x", "phone", "s-old")]
    assert plan.owner == {"a": "s-old", "x": "s-old", "b": "s-old"}
    assert (plan.refused, plan.unowned, plan.stale) == ([], [], [])


def test_subjects_created_at_the_same_instant_keep_the_lowest_pseudonym() -> None:
    owner = {"a": "s-b", "b": "s-a", "c": "s-c"}
    subjects = {name: facts(0) for name in ("s-a", "s-b", "s-c")}

    plan = plan_merges([phones("a", "b", "c")], owner, subjects)

    assert plan.survivor_of == {"s-b": "s-a", "s-c": "s-a"}


def test_a_chain_of_merges_points_every_retired_subject_at_the_last_survivor() -> None:
    owner = {"a": "s-1", "b": "s-2", "c": "s-3"}
    subjects = {"s-1": facts(1), "s-2": facts(2), "s-3": facts(3)}

    plan = plan_merges([phones("c", "b"), phones("b", "a")], owner, subjects)

    # s-3 first merged into s-2, which then merged into s-1: one hop each, never a chain
    assert plan.survivor_of == {"s-3": "s-1", "s-2": "s-1"}
    assert set(plan.owner.values()) == {"s-1"}


def test_a_digest_first_seen_in_the_batch_links_later_groups_transitively() -> None:
    owner = {"a": "s-a", "b": "s-b"}
    subjects = {"s-a": facts(2), "s-b": facts(1)}

    plan = plan_merges([phones("a", "x"), phones("x", "y"), phones("y", "b")], owner, subjects)

    assert plan.survivor_of == {"s-a": "s-b"}
    assert plan.attached == [("x", "phone", "s-b"), ("y", "phone", "s-b")]  # as stored: final
    assert plan.unowned == []


def test_an_erased_subject_is_never_merged_nor_extended() -> None:
    owner = {"e": "s-erased", "a": "s-a", "b": "s-b"}
    subjects = {"s-erased": facts(0, erased=True), "s-a": facts(1), "s-b": facts(2)}

    plan = plan_merges(
        [phones("e", "a"), phones("e", "new"), phones("new", "b"), phones("a", "b")],
        owner,
        subjects,
    )

    assert plan.refused == [0, 1]
    assert plan.erased_met == {"s-erased"}
    # the refused groups changed nothing: "new" joins the live subject that names it next
    assert plan.attached == [("new", "phone", "s-a")]
    assert plan.survivor_of == {"s-b": "s-a"}
    assert "e" not in plan.owner
    assert "s-erased" not in plan.survivor_of.values()


def test_groups_naming_no_subject_or_a_vanished_one_are_left_to_the_caller() -> None:
    owner = {"a": "s-a", "gone": "s-merged-away"}
    subjects = {"s-a": facts(0)}

    plan = plan_merges([phones("x", "y"), phones("gone", "a"), phones("y", "a")], owner, subjects)

    assert (plan.unowned, plan.stale) == ([0], [1])
    assert plan.attached == [("y", "phone", "s-a")]  # nothing was kept from group 0
    assert plan.survivor_of == {}


def test_planning_the_same_groups_again_changes_nothing() -> None:
    owner = {"a": "s-1", "b": "s-2", "c": "s-3", "e": "s-e"}
    subjects = {"s-1": facts(3), "s-2": facts(1), "s-3": facts(2), "s-e": facts(0, erased=True)}
    groups = [phones("a", "x"), phones("x", "b"), phones("c", "b", "y"), phones("e", "z")]

    first = plan_merges(groups, owner, subjects)
    owner, subjects = apply(first, owner, subjects)
    again = plan_merges(groups, owner, subjects)

    assert (again.survivor_of, again.attached) == ({}, [])
    assert again.owner == first.owner
    assert again.refused == first.refused == [3]


def test_a_batch_plans_what_its_groups_planned_one_at_a_time_would() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        owner = {f"d{i}": f"s-{i % 7}" for i in range(14)}
        subjects = {f"s-{i}": facts(rng.randrange(3), erased=rng.random() < 0.15) for i in range(7)}
        pool = [*owner, "n1", "n2", "n3", "n4"]
        sizes = [rng.randrange(1, 4) for _ in range(rng.randrange(1, 9))]
        groups = [phones(*rng.sample(pool, size)) for size in sizes]

        batch = plan_merges(groups, owner, subjects)

        index, live, refused, unowned, survivor_of = dict(owner), dict(subjects), [], [], {}
        for number, group in enumerate(groups):
            single = plan_merges([group], index, live)
            refused += [number] * len(single.refused)
            unowned += [number] * len(single.unowned)
            survivor_of = {r: single.survivor_of.get(s, s) for r, s in survivor_of.items()}
            survivor_of.update(single.survivor_of)
            index, live = apply(single, index, live)
        assert (batch.refused, batch.unowned) == (refused, unowned), seed
        assert batch.survivor_of == survivor_of, seed
        assert apply(batch, owner, subjects) == (index, live), seed


def test_placing_events_links_single_subject_groups_and_sets_merges_aside() -> None:
    owner = {"a": "s-a", "b": "s-b"}

    placement = place_events(
        [phones("a", "x"), phones("n", "m"), phones("m", "o"), phones("a", "b", "p"),
         phones("p", "q")],
        owner,
        lambda first_digest: f"s-new-{first_digest}",
    )  # fmt: skip

    assert placement.created == {"s-new-n": "n", "s-new-p": "p"}
    assert placement.joined == {"x": "s-a", "n": "s-new-n", "m": "s-new-n", "o": "s-new-n",
                                "q": "s-new-p", "p": "s-new-p"}  # fmt: skip
    assert placement.deferred == [3]  # its "p" stays unknown: a later group may start "p"
    assert placement.attached[0] == ("x", "phone", "s-a")
    assert [row[0] for row in placement.attached] == list(placement.joined)


def test_a_new_pseudonym_that_already_holds_digests_is_joined_not_created() -> None:
    placement = place_events([phones("x")], {"a": "s-x"}, lambda _: "s-x")

    assert placement.created == {}
    assert placement.joined == {"x": "s-x"}


def test_placement_does_not_look_at_erasure_the_caller_drops_those_subjects() -> None:
    owner = {"e": "s-erased"}
    placement = place_events(
        [phones("e", "n"), phones("n", "m"), phones("k")], owner, lambda d: f"s-{d}"
    )
    assert placement.joined == {"n": "s-erased", "m": "s-erased", "k": "s-k"}

    kept = placement.without({"s-erased", "s-taken"})

    assert kept.joined == {"k": "s-k"}
    assert kept.attached == [("k", "phone", "s-k")]
    assert kept.created == {"s-k": "k"}
    assert placement.without(set()) is placement
