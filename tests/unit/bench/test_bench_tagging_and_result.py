"""Bare tagging (what every benchmark peer does per event) and the bench's summary line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processors.pseudonym import Pseudonymiser
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from streams.dev.bench.harness import SystemRun, process_cpu_s, tree_cpu_s
from streams.dev.bench.router_bench import BenchResult
from streams.dev.bench.spec import COMNEXIO, ORES, QUARANTINE, PeerSpec
from streams.dev.bench.tagging import UNENCRYPTED_KEY_ID, BareTagger, load_policy
from streams.dev.bench.workload import encode_workload, generate_workload
from streams.settings import PROJECT_ROOT

OUTPUTS = {ORES: "out.ores", COMNEXIO: "out.comnexio", QUARANTINE: "out.quarantine"}


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


def test_tagging_routes_by_controller_and_quarantines_unknown_services(
    catalog: SchemaCatalog,
) -> None:
    tagger = BareTagger(
        catalog,
        load_policy(PROJECT_ROOT / "infra" / "policy.yaml"),
        Pseudonymiser(b"k" * 32),
        OUTPUTS,
    )
    workload = generate_workload(2000, seed=3)
    encoded = encode_workload(workload, catalog)
    serde = AvroSerde(catalog)
    seen: dict[str, int] = {}
    pseudonyms: set[str] = set()
    for records in encoded.values():
        for _key, raw in records:
            routed = tagger.tag(raw)
            seen[routed.topic] = seen.get(routed.topic, 0) + 1
            if routed.topic == OUTPUTS[QUARANTINE]:
                assert routed.value == raw
                continue
            _, tagged = serde.deserialize(routed.value, "TaggedContactEvent")
            assert tagged["event"] == raw
            assert tagged["key_id"] == UNENCRYPTED_KEY_ID
            assert tagged["governance"]["subject_pseudonym"].encode() == routed.key
            assert (routed.topic == OUTPUTS[ORES]) == (tagged["governance"]["controller"] == "ORES")
            pseudonyms.add(tagged["governance"]["subject_pseudonym"])
    assert set(seen) == set(OUTPUTS.values())
    assert seen[OUTPUTS[ORES]] > seen[OUTPUTS[COMNEXIO]] > seen[OUTPUTS[QUARANTINE]]
    assert len(pseudonyms) < sum(seen.values()) * 0.8  # repeat callers share a pseudonym


def test_peer_spec_round_trips_and_hides_the_key() -> None:
    spec = PeerSpec({"bootstrap.servers": "h:1"}, ["a"], OUTPUTS, "g", "/r", "/p", "ab" * 16)
    assert PeerSpec.from_json(spec.to_json()) == spec
    assert "ab" * 16 not in repr(spec)


def _run(name: str, rate: float, events: int = 1000) -> SystemRun:
    return SystemRun(name, events, rate, events, 50 * 2**20, cpu_s=events / rate)


def test_summary_line_gives_three_ratios_with_two_decimals() -> None:
    result = BenchResult(
        events=1000,
        limit=_run("limit", 12000.0),
        quix=_run("quix", 4000.0),
        faust=_run("faust", 1500.0, events=500),
        router=_run("router", 9000.0),
    )
    assert result.summary_line() == (
        "router_vs_limit=0.75 router_vs_faust=6.00 router_vs_quix=2.25"
    )
    lines = result.report_lines()
    assert lines[-1] == result.summary_line()
    assert len(lines) == 5
    assert "(capped at 500)" in lines[2]
    assert re.search(r"router \(transactions on\): 9,000 events/s", lines[3])
    assert lines[3].endswith("CPU 111 µs/event on 1.00 core")  # one process, the whole window
    half = SystemRun("router", 1000, 9000.0, 1000, 50 * 2**20, cpu_s=1000 / 9000.0 * 1.5)
    assert half.cores == pytest.approx(1.5)
    assert "CPU 167 µs/event on 1.50 cores" in BenchResult(
        events=1000, limit=_run("limit", 12000.0), quix=_run("quix", 4000.0),
        faust=_run("faust", 1500.0), router=half,
    ).report_lines()[3]  # fmt: skip
    assert result.router_peak_rss_bytes == 50 * 2**20


def test_tree_cpu_counts_the_children_of_a_process() -> None:
    """The router's helper is a child process: its CPU belongs to the router's figure."""
    burner = "x = 0\nwhile True: x += 1"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burner!r}]); "
         "time.sleep(60)"]
    )  # fmt: skip
    try:

        def children_cpu_s() -> float:  # the parent's own start-up CPU taken out
            own = process_cpu_s(parent.pid)
            return tree_cpu_s(parent.pid) - own

        deadline = time.monotonic() + 30
        while children_cpu_s() < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children_cpu_s() >= 0.3  # the busy child, not the sleeping parent
        assert process_cpu_s(parent.pid) < 0.3
    finally:
        for child in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGKILL)
        parent.kill()
        parent.wait()
