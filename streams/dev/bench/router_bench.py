"""`contactflow bench router`: the router against the Python limit, faust and Quix Streams.

`run_router_bench(root, events, say, router=...)` generates `events` realistic raw events
(`workload`), loads them once into a fresh set of every declared topic under the prefix
`<root prefix>bench-<run id>.`, then measures on that same input, one system at a time:

- limit: `streams.dev.bench.limit` (decode + encode + produce, no governance);
- quix: `streams.dev.bench.quix_peer` (bare tagging, Quix Streams in its own venv);
- faust: `streams.dev.bench.faust_peer` (bare tagging, event by event; at most `faust_cap`
  events, since at ~5k/s a large run would take minutes and a rate is still comparable);
- router: the `RouterRunner` given, on a container whose topic prefix is the bench's.

Each peer has its own consumer group and output topics. Every bench topic is deleted at
the end, and the peers' consumer groups with them. Nothing is printed: `say` gets progress
lines (counts and rates only, never event content).
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.catalog import CHANNEL_CONTRACTS
from streams.bootstrap import Container, bootstrap
from streams.dev.bench import quix_env
from streams.dev.bench.harness import (
    BenchTopics,
    OutputCounter,
    PeerLaunch,
    SystemRun,
    child_env,
    plain_client_config,
    run_peer,
)
from streams.dev.bench.spec import COMNEXIO, ORES, PASSTHROUGH, QUARANTINE, PeerSpec
from streams.dev.bench.workload import encode_workload, generate_workload, produce_workload
from streams.sdk.producer import raw_topic
from streams.topics import TopicCatalog, TopicSpec

FAUST_CAP: Final = 20_000
_TAGGED_OUTPUTS: Final = {
    ORES: "contact.ores.v1",
    COMNEXIO: "contact.comnexio.v1",
    QUARANTINE: "contact.quarantine.v1",
}


@dataclass(frozen=True)
class RouterRun:
    """What a RouterRunner measured: events/s (first consumed -> last output committed)."""

    events_per_s: float
    peak_rss_bytes: int
    cpu_s: float = 0.0  # the router's processes (main and helper) over the same window


class RouterRunner(Protocol):
    """Runs the real router over `input_topics` until it has handled `events` events.

    `root` is a container whose topic prefix is the bench run's: its catalog names the
    router's outputs (contact.ores.v1, ...), all created and empty. The input topics hold
    exactly `events` events. Transactions must be on. Return the measured throughput,
    events / (first event consumed -> last output committed), and the router's peak RSS.
    To measure it like the peers: start the router as a process with `harness.run_peer`
    and `harness.GroupProgress(admin, <router group>, input_topics)` (committed input
    offsets: exact under transactions), `require_report=False` unless the router writes
    `spec.FirstConsumed`; `RouterRun(run.events_per_s, run.peak_rss_bytes)`.
    """

    def __call__(self, root: Container, input_topics: Sequence[str], events: int) -> RouterRun: ...


@dataclass(frozen=True)
class BenchResult:
    """Throughput of each system on the same workload, and the router's peak RSS."""

    events: int
    limit: SystemRun
    quix: SystemRun
    faust: SystemRun
    router: SystemRun

    @property
    def router_peak_rss_bytes(self) -> int:
        return self.router.peak_rss_bytes

    def summary_line(self) -> str:
        """`router_vs_limit=<r> router_vs_faust=<r> router_vs_quix=<r>`, two decimals."""
        router = self.router.events_per_s
        return (
            f"router_vs_limit={router / self.limit.events_per_s:.2f} "
            f"router_vs_faust={router / self.faust.events_per_s:.2f} "
            f"router_vs_quix={router / self.quix.events_per_s:.2f}"
        )

    def report_lines(self) -> list[str]:
        """One line per system, then the summary line (always last)."""
        labels = {
            "limit": "limit (confluent-kafka, decode+encode, no governance)",
            "quix": f"quix (Quix Streams {quix_env.QUIX_VERSION}, bare tagging)",
            "faust": "faust (faust-streaming agent, bare tagging, event by event)",
            "router": "router (transactions on)",
        }
        lines = []
        for run in (self.limit, self.quix, self.faust, self.router):
            capped = f" (capped at {run.events:,})" if run.events < self.events else ""
            cpu = f", CPU {run.cpu_us_per_event:,.0f} µs/event" if run.cpu_s else ""
            lines.append(
                f"{labels[run.name]}: {run.events_per_s:,.0f} events/s over "
                f"{run.events:,} events{capped}, peak RSS {run.peak_rss_bytes / 2**20:,.0f} MiB"
                f"{cpu}"
            )
        return [*lines, self.summary_line()]


def run_router_bench(
    root: Container,
    events: int,
    say: Callable[[str], None],
    *,
    router: RouterRunner,
    faust_cap: int = FAUST_CAP,
    seed: int = 20251126,
) -> BenchResult:
    """Load `events` events once, measure limit, quix, faust and router on them, clean up."""
    if events < 1:
        raise ValueError("the bench needs at least one event")
    prefix = f"{root.settings.topic_prefix}bench-{uuid.uuid4().hex[:8]}."
    bench_root = bootstrap(
        root.settings.model_copy(update={"topic_prefix": prefix}),
        telemetry=root.telemetry,
        service_name="contactflow-bench",
    )
    admin = root.admin()
    topics = BenchTopics(admin)
    groups: list[str] = []
    with tempfile.TemporaryDirectory(prefix="contactflow-bench-") as scratch:
        try:
            inputs = _load(bench_root, topics, events, seed, say)
            peers = _Peers(bench_root, topics, inputs, events, Path(scratch), groups, say)
            limit = peers.run("limit", events)
            quix = peers.run("quix", events)
            faust = peers.run("faust", min(events, faust_cap))
            say(f"running router on {events:,} events")
            measured = router(bench_root, inputs, events)
            run = SystemRun(
                "router", events, measured.events_per_s, events, measured.peak_rss_bytes,
                measured.cpu_s,
            )  # fmt: skip
            say(f"router done: {run.events_per_s:,.0f} events/s")
        finally:
            say("deleting bench topics and consumer groups")
            topics.delete_all()
            _delete_groups(admin, groups, say)
    return BenchResult(events, limit, quix, faust, run)


def _load(
    root: Container, topics: BenchTopics, events: int, seed: int, say: Callable[[str], None]
) -> list[str]:
    say(f"generating {events:,} events (seed {seed})")
    encoded = encode_workload(generate_workload(events, seed), root.schemas)
    topics.create(root.topics)
    names = {channel: root.topics.name(raw_topic(channel)) for channel in CHANNEL_CONTRACTS}
    say(f"loading {events:,} events into {len(names)} raw topics")
    started = time.monotonic()
    produce_workload(root.settings.kafka_client_config(), names, encoded)
    say(f"loaded in {time.monotonic() - started:.1f}s")
    return list(names.values())


class _Peers:
    """Launches each peer on the loaded input with its own group and output topics."""

    def __init__(
        self,
        root: Container,
        topics: BenchTopics,
        inputs: list[str],
        loaded: int,
        scratch: Path,
        groups: list[str],
        say: Callable[[str], None],
    ) -> None:
        self.root, self.topics, self.inputs, self.loaded = root, topics, inputs, loaded
        self.scratch = scratch
        self.groups, self.say = groups, say
        self.key_hex = secrets.token_bytes(32).hex()

    def run(self, name: str, events: int) -> SystemRun:
        outputs = self._outputs(name)
        group = f"{self.root.settings.topic_prefix}{name}"
        self.groups.append(group)
        workdir = self.scratch / name
        workdir.mkdir()
        spec = PeerSpec(
            client_config=plain_client_config(self.root.settings),
            input_topics=self.inputs,
            outputs=outputs,
            group_id=group,
            report_path=str(workdir / "report.json"),
            policy_path=str(self.root.settings.infra_dir / "policy.yaml"),
            pseudonym_key_hex=self.key_hex,
        )
        launch = self._launch(name, workdir)
        counter = OutputCounter(self.topics.admin, list(outputs.values()))
        capped = f" (capped, of {self.loaded:,} loaded)" if events < self.loaded else ""
        self.say(f"running {name} on {events:,} events{capped}")
        run = run_peer(launch, spec, counter, events, exact=events == self.loaded)
        self.say(f"{name} done: {run.events_per_s:,.0f} events/s")
        return run

    def _outputs(self, name: str) -> dict[str, str]:
        prefix = f"{self.root.settings.topic_prefix}{name}."
        if name == "limit":
            raw = self.root.topics.spec(raw_topic("phone"))
            spec = TopicSpec(
                "passthrough.v1",
                raw.partitions,
                raw.replication_factor,
                "contact id",
                raw.value_schema,
                raw.configs,
            )
            catalog = TopicCatalog((spec,), prefix)
            self.topics.create(catalog)
            return {PASSTHROUGH: catalog.name("passthrough.v1")}
        specs = tuple(self.root.topics.spec(logical) for logical in _TAGGED_OUTPUTS.values())
        catalog = self.topics.create(TopicCatalog(specs, prefix))
        return {role: catalog.name(logical) for role, logical in _TAGGED_OUTPUTS.items()}

    def _launch(self, name: str, workdir: Path) -> PeerLaunch:
        if name == "quix":
            python = quix_env.quix_python(self.root.settings.cache_dir, self.say)
            shim = quix_env.source_shim(self.scratch / "quix-src")
            env = child_env(PYTHONPATH=str(shim))
            return PeerLaunch(
                name, [str(python), "-m", "streams.dev.bench.quix_peer"], workdir, env
            )
        module = {"limit": "streams.dev.bench.limit", "faust": "streams.dev.bench.faust_peer"}[name]
        return PeerLaunch(name, [sys.executable, "-m", module], workdir, child_env())


def _delete_groups(admin: AdminClient, groups: list[str], say: Callable[[str], None]) -> None:
    if not groups:
        return
    for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:  # a leftover empty group is harmless: say so, go on
            say(f"could not delete consumer group {group}: {exc}")
