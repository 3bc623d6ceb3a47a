"""Routers scale out in the `contactflow-router` group and fail over without loss.

Two routers split the raw partitions and both route; when one is SIGKILLed, the group
gives the survivor every partition once the dead member's session expires, and the
survivor re-reads what the dead one had consumed but not committed: every event ends on
the outputs exactly once.
"""

from __future__ import annotations

import random
import time

import pytest

from streams.bootstrap import Container
from streams.dev.bench.flow import fresh_events
from streams.dev.bench.routers import RouterFleet, wait_for
from streams.dev.bench.verdict import (
    GroupProbe,
    exactly_once_problems,
    expected_routes,
    read_outputs,
)

pytestmark = pytest.mark.integration

FLOW_PER_SECOND = 20.0
FLOW_MAX_EVENTS = 6_000  # the flow runs until the survivor has committed after taking over
# The dead member keeps its partitions until its session times out (45 s, librdkafka's
# default); the survivor then re-reads the dedup window of every partition it is given.
TAKEOVER_TIMEOUT_S = 150.0
ROUTED_BEFORE_KILL = 50  # raw records each router has committed before one is killed

Ownership = dict[str, frozenset[tuple[str, int]]]


def _split_between_two(members: Ownership, partitions: frozenset[tuple[str, int]]) -> bool:
    owned = list(members.values())
    return (
        len(owned) == 2
        and all(owned)
        and not owned[0] & owned[1]
        and owned[0] | owned[1] == partitions
    )


def test_two_routers_share_the_partitions_and_the_survivor_takes_over(
    router_ready_container: Container, router_fleet: RouterFleet, group_probe: GroupProbe
) -> None:
    container = router_ready_container
    started = time.monotonic()
    timeline: list[str] = []

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    def report() -> str:
        return "\n".join([*timeline, router_fleet.report()])

    partitions = frozenset((tp.topic, tp.partition) for tp in group_probe.partitions)
    survivor = router_fleet.router("scale-1").start()
    victim = router_fleet.router("scale-2").start()
    survivor.wait_ready()
    victim.wait_ready()
    wait_for(lambda: _split_between_two(group_probe.members(), partitions), TAKEOVER_TIMEOUT_S,
             "two routers to split the raw partitions", report)  # fmt: skip
    shared = group_probe.members()
    note(f"split {sorted(len(p) for p in shared.values())} partitions")

    flow = router_fleet.start_flow(fresh_events(FLOW_MAX_EVENTS), FLOW_PER_SECOND)

    def routed_by_each() -> list[int]:
        committed = group_probe.committed()
        return [sum(committed[tp] for tp in owned) for owned in shared.values()]

    wait_for(lambda: min(routed_by_each()) >= ROUTED_BEFORE_KILL, TAKEOVER_TIMEOUT_S,
             "both routers to commit batches", report)  # fmt: skip
    time.sleep(random.uniform(0.0, 0.6))  # a random point after both committed
    by_member = dict(zip(shared, routed_by_each(), strict=True))
    assert group_probe.members() == shared, f"the group rebalanced before the kill\n{report()}"
    victim.kill()
    committed_at_kill = group_probe.committed()  # the victim's, unless a commit was in flight
    note(f"SIGKILL {victim.instance}: {flow.sent} sent, committed per member {by_member}")

    wait_for(lambda: list(group_probe.members().values()) == [partitions], TAKEOVER_TIMEOUT_S,
             f"{survivor.instance} to own every raw partition", report)  # fmt: skip
    (survivor_member,) = group_probe.members()
    assert survivor_member in shared, f"the survivor rejoined as a new member\n{report()}"
    (victim_member,) = set(shared) - {survivor_member}
    routed_by_victim = sum(committed_at_kill[tp] for tp in shared[victim_member])
    note(f"{survivor.instance} owns all {len(partitions)} partitions")
    before = sum(group_probe.committed().values())
    wait_for(lambda: sum(group_probe.committed().values()) > before, TAKEOVER_TIMEOUT_S,
             f"{survivor.instance} to commit after the takeover", report)  # fmt: skip
    assert flow.running, f"the flow ran out of events before the end\n{report()}"
    events = flow.finish()
    note(f"flow finished: {len(events)} events")
    wait_for(lambda: group_probe.backlog() == 0, TAKEOVER_TIMEOUT_S,
             f"{survivor.instance} to route every event", report)  # fmt: skip
    assert survivor.stop() == 0, report()
    stats = survivor.stats()
    note(f"{survivor.instance} stopped: {stats}")

    assert all(n > 0 for n in by_member.values()), f"a router routed nothing\n{report()}"
    # each raw record is in one committed batch, the victim's or the survivor's (the
    # victim's last commit may have completed just after the kill, hence <=)
    assert 0 < stats["events"] <= len(events) - routed_by_victim, report()
    routed = read_outputs(container)
    problems = exactly_once_problems(expected_routes(container, events), routed)
    assert not problems, "\n".join([*problems, report()])
    assert len(routed.topics_of_event) == len(events)
    print("\n".join(timeline))
