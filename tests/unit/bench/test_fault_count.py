"""How `bench faults` counts what it read back, and the line it ends with."""

from __future__ import annotations

from collections import Counter

from streams.dev.bench.faults import Fault, FaultBenchResult, _count
from streams.dev.bench.verdict import Expected, RoutedOutputs

POISON = ("t.contact.raw.chat.v1", 0, 7)


def _expected() -> Expected:
    return Expected(
        topic_of_event={"e1": "contact.ores.v1", "e2": "contact.ores.v1", "e3": "q"},
        recordings=frozenset({"r1"}),
        signals=frozenset({"e2"}),
    )


def _letter(position: tuple[str, int, int], code: str = "too_large") -> dict[str, object]:
    topic, partition, offset = position
    return {"source_topic": topic, "source_partition": partition, "source_offset": offset,
            "reason_code": code}  # fmt: skip


def _routed(**changes: object) -> RoutedOutputs:
    values: dict[str, object] = {
        "topics_of_event": {"e1": ["contact.ores.v1"], "e2": ["contact.ores.v1"], "e3": ["q"]},
        "recordings": Counter({"r1": 1}),
        "signals": Counter({"e2": 1}),
        "dead_letters": [_letter(POISON)],
    }
    values.update(changes)
    return RoutedOutputs(**values)  # type: ignore[arg-type]


def test_everything_once_counts_nothing() -> None:
    assert _count(_expected(), _routed(), Counter({POISON: 1})) == (Counter(), [])


def test_lost_and_duplicated_outputs_of_every_kind_are_counted() -> None:
    routed = _routed(
        topics_of_event={"e1": ["contact.ores.v1", "contact.ores.v1"], "e3": ["q"]},
        recordings=Counter({"r1": 3}),
        signals=Counter(),
        dead_letters=[],
    )
    detail, problems = _count(_expected(), routed, Counter({POISON: 1}))
    assert detail == Counter(
        {"lost events": 1, "lost hold signals": 1, "lost dead letters": 1,
         "duplicated events": 1, "duplicated retention records": 2}
    )  # fmt: skip
    assert problems == []


def test_a_dead_letter_for_valid_input_and_a_misrouted_event_are_problems() -> None:
    stray = ("t.contact.raw.sms.v1", 1, 3)
    routed = _routed(
        topics_of_event={"e1": ["contact.comnexio.v1"], "e2": ["contact.ores.v1"], "e3": ["q"]},
        dead_letters=[_letter(POISON), _letter(POISON), _letter(stray, "undecodable")],
    )
    detail, problems = _count(_expected(), routed, Counter({POISON: 1}))
    assert detail == Counter({"duplicated dead letters": 1})
    assert any("misrouted" in p for p in problems)
    assert any("undecodable" in p for p in problems)


def test_the_last_line_carries_every_figure_and_a_fault_never_recovered_counts_as_the_limit() -> (
    None
):
    result = FaultBenchResult([Fault("router SIGKILL", 12.5), Fault("node 2", None)],
                              events=100, requests=3, lost=0, duplicated=0,
                              stalled_partitions=1)  # fmt: skip
    last = result.report_lines()[-1]
    assert last == "faults=2 lost=0 duplicated=0 stalled_partitions=1 max_recovery_s=120.0"
    assert not result.ok
    clean = FaultBenchResult([Fault("router SIGKILL", 12.5)], 100, 3, 0, 0, 0)
    assert clean.ok
    assert clean.report_lines()[-1].endswith("max_recovery_s=12.5")


def test_a_fault_never_recovered_from_fails_the_bench_even_with_nothing_lost() -> None:
    """A router stuck for good after a fault loses nothing until it is restarted: the
    bench must fail on the stall itself (seen: stuck 7 minutes, every figure zero)."""
    result = FaultBenchResult([Fault("router SIGKILL", 12.5), Fault("two nodes of three", None)],
                              events=100, requests=3, lost=0, duplicated=0,
                              stalled_partitions=0)  # fmt: skip
    assert not result.ok
    lines = result.report_lines()
    assert "problem: not recovered within 120 s: two nodes of three" in lines
    assert lines[-1] == "faults=2 lost=0 duplicated=0 stalled_partitions=0 max_recovery_s=120.0"
