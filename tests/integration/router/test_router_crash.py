"""A router SIGKILLed mid-flow loses nothing and duplicates nothing (exactly once).

A kill leaves the router's group membership behind and, inside a batch, its Kafka
transaction open; the restart with the same instance id fences the zombie
(init_transactions aborts the open transaction) and re-reads the uncommitted input once
the dead member's session has expired. Producer retries after a restart are recognised
from the dedup window the restarted router seeds from its input.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from schemas.topic_names import CONTACT_QUARANTINE
from streams.bootstrap import Container
from streams.dev.bench.flow import RawEvent, encode_events, fresh_events, produce
from streams.dev.bench.routers import RouterFleet, RouterProcess, wait_for
from streams.dev.bench.verdict import (
    TAGGED_TOPICS,
    GroupProbe,
    exactly_once_problems,
    expected_routes,
    read_outputs,
)
from streams.kafka.readback import read_all

pytestmark = pytest.mark.integration

FLOW_PER_SECOND = 20.0
FLOW_MAX_EVENTS = 12_000  # the flow runs until the last restarted router has committed
KILLS = 3
# A SIGKILLed consumer stays a member of the group until its session times out (10 s for
# the test routers, 45 s by default); the restarted router is assigned partitions only
# then, and first re-reads the dedup window of every assigned partition before routing.
FAILOVER_TIMEOUT_S = 150.0


def _kill_seed() -> int:
    return int(os.environ.get("CONTACTFLOW_TEST_KILL_SEED", str(time.time_ns() % 10_000)))


def test_sigkilled_router_neither_loses_nor_duplicates_events(
    router_ready_container: Container, router_fleet: RouterFleet, group_probe: GroupProbe
) -> None:
    container = router_ready_container
    seed = _kill_seed()
    rng = random.Random(seed)
    started = time.monotonic()
    timeline: list[str] = []

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    def report() -> str:
        return "\n".join([f"kill seed {seed}", *timeline, router_fleet.report()])

    def wait_for_commit(router: RouterProcess) -> None:
        before = sum(group_probe.committed().values())
        wait_for(lambda: sum(group_probe.committed().values()) > before, FAILOVER_TIMEOUT_S,
                 f"router #{router.incarnations} to commit a batch", report)  # fmt: skip
        note(f"router #{router.incarnations} committed a batch")

    router = router_fleet.router("crash-1").start()
    router.wait_ready()
    flow = router_fleet.start_flow(fresh_events(FLOW_MAX_EVENTS), FLOW_PER_SECOND)
    open_at_kill: list[dict[tuple[str, int], tuple[int, int]]] = []
    for kill in range(KILLS):
        wait_for_commit(router)
        if kill == 0:  # anywhere in the small batches of the live flow
            time.sleep(rng.uniform(0.0, 0.6))
        else:  # inside the transaction of the backlog batch after a restart
            wait_for(group_probe.transaction_open, FAILOVER_TIMEOUT_S,
                     "a router transaction to be open", report, interval=0.002)  # fmt: skip
        router.kill()
        still_open = group_probe.open_transactions()
        if still_open:
            open_at_kill.append(still_open)
        note(f"SIGKILL #{router.incarnations}: {flow.sent} sent, "
             f"{sum(group_probe.committed().values())} committed, "
             f"transaction {'left open' if still_open else 'not open'}")  # fmt: skip
        router.start()
        router.wait_ready()
    wait_for_commit(router)
    assert flow.running, f"the flow ran out of events before the end\n{report()}"
    events = flow.finish()
    note(f"flow finished: {len(events)} events")
    wait_for(lambda: group_probe.backlog() == 0, FAILOVER_TIMEOUT_S,
             "the last router to route every event", report)  # fmt: skip
    assert router.stop() == 0, report()
    note(f"last router stopped: {router.stats()}")

    routed = read_outputs(container)
    problems = exactly_once_problems(expected_routes(container, events), routed)
    assert not problems, "\n".join([*problems, report()])
    assert len(routed.topics_of_event) == len(events)
    assert any(topics == [CONTACT_QUARANTINE] for topics in routed.topics_of_event.values())
    aborted = _aborted_outputs(container)
    note(f"{aborted} output record(s) of aborted transactions on the tagged topics")
    # A transaction open at a kill ends whole: aborted by the fence (its records there,
    # never read_committed), or committed when the kill came after the commit was sent.
    fates = [_fate(container, ranges) for ranges in open_at_kill]
    note(f"transactions open at a kill: {fates}")
    assert set(fates) <= {"aborted", "committed"}, report()
    if "aborted" in fates:
        assert aborted > 0, report()
    print("\n".join(timeline))


def test_producer_retry_after_a_restart_is_dropped_and_a_reused_id_dead_lettered(
    router_ready_container: Container, router_fleet: RouterFleet, group_probe: GroupProbe
) -> None:
    container = router_ready_container
    events = fresh_events(15, quarantine_every=0)  # one of each example
    first = encode_events(container, events)
    original = first[0]  # a phone call: same key, same partition for its retry
    router = router_fleet.router("dedup-1").start()
    router.wait_ready()
    first_copy = produce(container, first).positions[0]
    wait_for(lambda: group_probe.backlog() == 0, FAILOVER_TIMEOUT_S,
             "the first router to route the originals", router_fleet.report)  # fmt: skip
    router.kill()

    marker = fresh_events(1, quarantine_every=0)[0]
    marker.event["envelope"]["contact_id"] = events[0].event["envelope"]["contact_id"]
    router.start()
    router.wait_ready()
    retry, changed, after = encode_events(container, [events[0], _other_bytes(events[0]), marker])
    assert retry.value == original.value
    assert changed.value != original.value
    positions = produce(container, [retry, changed, after]).positions
    assert {positions[i][:2] for i in range(3)} == {first_copy[:2]}, "not one partition"
    wait_for(lambda: group_probe.backlog() == 0, FAILOVER_TIMEOUT_S,
             "the restarted router to route the retries", router_fleet.report)  # fmt: skip
    assert router.stop() == 0, router_fleet.report()

    routed = read_outputs(container)
    report = router_fleet.report()
    assert routed.topics_of_event[events[0].event_id] == ["contact.ores.v1"], report
    assert routed.topics_of_event[marker.event_id] == ["contact.ores.v1"], report
    assert set(routed.topics_of_event) == {e.event_id for e in events} | {marker.event_id}
    assert routed.duplicated() == {}, report
    (dead,) = routed.dead_letters
    assert dead["reason_code"] == "event_id_reused", report
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == positions[1]
    assert dead["original_value"] == changed.value
    assert router.stats()["events"] == 3, report


def test_retry_after_a_restart_is_dropped_even_after_its_id_was_reused(
    router_ready_container: Container, router_fleet: RouterFleet, group_probe: GroupProbe
) -> None:
    """After a restart the window must hold what it held live: the routed copy's bytes.

    Live, an id reused for other bytes is dead-lettered and the window keeps the routed
    copy, so a later retry of that copy is dropped. The window a restart seeds from the
    input must agree, or the retry becomes a second, spurious dead letter.
    """
    container = router_ready_container
    (routed_event,) = fresh_events(1, quarantine_every=0)
    original, changed = encode_events(container, [routed_event, _other_bytes(routed_event)])
    router = router_fleet.router("dedup-2").start()
    router.wait_ready()
    produce(container, [original, changed])
    wait_for(lambda: group_probe.backlog() == 0, FAILOVER_TIMEOUT_S,
             "the router to route the original and the reused id", router_fleet.report)  # fmt: skip
    assert router.stop() == 0, router_fleet.report()
    router.start()
    router.wait_ready()
    retry = produce(container, [original]).positions[0]
    wait_for(lambda: group_probe.backlog() == 0, FAILOVER_TIMEOUT_S,
             "the restarted router to handle the retry", router_fleet.report)  # fmt: skip
    assert router.stop() == 0, router_fleet.report()

    routed = read_outputs(container)
    report = router_fleet.report()
    assert routed.topics_of_event == {routed_event.event_id: ["contact.ores.v1"]}, report
    sources = [(d["reason_code"], d["source_offset"]) for d in routed.dead_letters]
    assert len(sources) == 1, f"the retry at {retry} was dead-lettered too: {sources}\n{report}"
    assert router.stats()["events"] == 1, report


def _other_bytes(event: RawEvent) -> RawEvent:
    """The same event id (and contact, hence partition) with different content."""
    body = event.event
    return RawEvent(event.channel, {**body, "payload": {**body["payload"], "duration_s": 132}})


def _fate(container: Container, ranges: dict[tuple[str, int], tuple[int, int]]) -> str:
    """What became of the records a transaction held open at a kill (`ranges`: from the
    last stable offset to the end offset, per partition): "committed" when every one is
    read_committed now, "aborted" when none is, else "partly committed" (a defect)."""
    client = container.settings.kafka_client_config()
    held: set[tuple[str, int, int]] = set()
    kept: set[tuple[str, int, int]] = set()
    for topic in {topic for topic, _ in ranges}:
        for into, committed_only in ((held, False), (kept, True)):
            for message in read_all(client, topic, timeout=60, committed_only=committed_only):
                position = (topic, message.partition() or 0)
                start, end = ranges.get(position, (0, 0))
                if start <= (offset := message.offset() or 0) < end:
                    into.add((*position, offset))
    if not held:
        return "no record"  # a defect too: the end offset was ahead of the stable one
    if kept == held:
        return "committed"
    return "aborted" if not kept else "partly committed"


def _aborted_outputs(container: Container) -> int:
    """Records of aborted transactions on the tagged topics (kills that hit a transaction)."""
    client = container.settings.kafka_client_config()
    return sum(
        len(read_all(client, name, timeout=60, committed_only=False))
        - len(read_all(client, name, timeout=60))
        for name in (container.topics.name(t) for t in TAGGED_TOPICS)
    )
