"""`contactflow bench router`: the router against the Python limit, faust and Quix Streams.

`run_router_bench(root, events, say, router=...)` generates `events` realistic raw events
(`workload`), loads them once into a fresh set of every declared topic under the prefix
`<root prefix>bench-<run id>.`, then measures on that same input, one system at a time:

- limit: `streams.dev.bench.limit` (decode + encode + produce, no governance);
- quix: `streams.dev.bench.quix_peer` (bare tagging, Quix Streams in its own venv);
- quix same work (`same_work=True` only): the same Quix app doing the router's work
  (`streams.dev.bench.same_work`), exactly-once, measured like the router by its group's
  committed input offsets; afterwards its committed outputs and the router's are counted
  by kind (`OutputTally`), which must agree;
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
from schemas.topic_names import (
    CONTACT_QUARANTINE,
    CONTACT_RESTRICTED,
    CONTROLLER_TOPICS,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
)
from streams.bootstrap import Container, bootstrap
from streams.dev.bench import quix_env
from streams.dev.bench.harness import (
    BenchError,
    BenchTopics,
    GroupProgress,
    OutputCounter,
    PeerLaunch,
    Progress,
    SystemRun,
    child_env,
    plain_client_config,
    run_peer,
)
from streams.dev.bench.spec import (
    COMNEXIO,
    ORES,
    PASSTHROUGH,
    QUARANTINE,
    RECORDINGS,
    RESTRICTED,
    SIGNALS,
    PeerSpec,
)
from streams.dev.bench.workload import encode_workload, generate_workload, produce_workload
from streams.kafka.readback import read_all
from streams.sdk.producer import raw_topic
from streams.topics import TopicCatalog, TopicSpec

FAUST_CAP: Final = 20_000
_TAGGED_OUTPUTS: Final = {
    ORES: CONTROLLER_TOPICS["ORES"],
    COMNEXIO: CONTROLLER_TOPICS["COMNEXIO"],
    QUARANTINE: CONTACT_QUARANTINE,
}
_SAME_WORK_OUTPUTS: Final = {
    **_TAGGED_OUTPUTS,
    RESTRICTED: CONTACT_RESTRICTED,
    RECORDINGS: RECORDINGS_STANDARD,
    SIGNALS: RETENTION_SIGNALS,
}
QUIX_SAME_WORK: Final = "quix-same-work"


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
class OutputTally:
    """Committed output records of a system doing the router's work, by kind."""

    tagged: int  # controller, restricted and quarantine topics
    recordings: int  # RecordingRetention on recordings.standard.v1
    signals: int  # HoldSignal on retention.signals.v1

    def __str__(self) -> str:
        return f"{self.tagged:,} tagged, {self.recordings:,} retention, {self.signals:,} hold"


@dataclass(frozen=True)
class BenchResult:
    """Throughput of each system on the same workload, and the router's peak RSS.

    With `quix_same_work` (`--same-work`): the Quix app doing the router's work, and the
    outputs each of them committed."""

    events: int
    limit: SystemRun
    quix: SystemRun
    faust: SystemRun
    router: SystemRun
    quix_same_work: SystemRun | None = None
    quix_same_work_outputs: OutputTally | None = None
    router_outputs: OutputTally | None = None

    @property
    def router_peak_rss_bytes(self) -> int:
        return self.router.peak_rss_bytes

    def summary_line(self) -> str:
        """`router_vs_limit=<r> router_vs_faust=<r> router_vs_quix=<r>`, two decimals, then
        ` router_vs_quix_same_work=<r>` when the same-work peer ran."""
        router = self.router.events_per_s
        line = (
            f"router_vs_limit={router / self.limit.events_per_s:.2f} "
            f"router_vs_faust={router / self.faust.events_per_s:.2f} "
            f"router_vs_quix={router / self.quix.events_per_s:.2f}"
        )
        if self.quix_same_work is not None:
            line += f" router_vs_quix_same_work={router / self.quix_same_work.events_per_s:.2f}"
        return line

    def report_lines(self) -> list[str]:
        """One line per system, then the summary line (always last)."""
        labels = {
            "limit": "limit (confluent-kafka, decode+encode, no governance)",
            "quix": f"quix (Quix Streams {quix_env.QUIX_VERSION}, bare tagging)",
            "faust": "faust (faust-streaming agent, bare tagging, event by event)",
            "router": "router (transactions on)",
            QUIX_SAME_WORK: f"quix same work (Quix Streams {quix_env.QUIX_VERSION}, "
            "exactly-once, the router's work with a dict for the ledger)",
        }
        runs = [self.limit, self.quix, self.faust, self.router]
        if self.quix_same_work is not None:
            runs.insert(2, self.quix_same_work)
        lines = []
        for run in runs:
            capped = f" (capped at {run.events:,})" if run.events < self.events else ""
            cores = f"{run.cores:.2f} core" + ("" if round(run.cores, 2) == 1 else "s")
            cpu = f", CPU {run.cpu_us_per_event:,.0f} µs/event on {cores}" if run.cpu_s else ""
            lines.append(
                f"{labels[run.name]}: {run.events_per_s:,.0f} events/s over "
                f"{run.events:,} events{capped}, peak RSS {run.peak_rss_bytes / 2**20:,.0f} MiB"
                f"{cpu}"
            )
        if self.router_outputs is not None and self.quix_same_work_outputs is not None:
            same = "the same" if self.router_outputs == self.quix_same_work_outputs else "DIFFERENT"
            lines.append(
                f"outputs ({same}): router {self.router_outputs}; "
                f"quix same work {self.quix_same_work_outputs}"
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
    same_work: bool = False,
) -> BenchResult:
    """Load `events` events once, measure limit, quix, faust and router on them (and the
    same-work Quix app with `same_work`), clean up."""
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
            quix_same = peers.run(QUIX_SAME_WORK, events) if same_work else None
            faust = peers.run("faust", min(events, faust_cap))
            say(f"running router on {events:,} events")
            measured = router(bench_root, inputs, events)
            run = SystemRun(
                "router", events, measured.events_per_s, events, measured.peak_rss_bytes,
                measured.cpu_s,
            )  # fmt: skip
            say(f"router done: {run.events_per_s:,.0f} events/s")
            peer_outputs: OutputTally | None = None
            router_outputs: OutputTally | None = None
            if quix_same is not None:
                say("counting the outputs of the router and of quix same work")
                peer_outputs = tally_outputs(bench_root, peers.same_work_outputs)
                router_outputs = tally_outputs(bench_root, _router_outputs(bench_root.topics))
                if peer_outputs.tagged != events:  # every event tagged once: none lost or twice
                    raise BenchError(
                        f"quix same work committed {peer_outputs.tagged} tagged events for "
                        f"{events} input events"
                    )
        finally:
            say("deleting bench topics and consumer groups")
            topics.delete_all()
            _delete_groups(admin, groups, say)
    return BenchResult(events, limit, quix, faust, run, quix_same, peer_outputs, router_outputs)


def _router_outputs(catalog: TopicCatalog) -> dict[str, str]:
    return {role: catalog.name(logical) for role, logical in _SAME_WORK_OUTPUTS.items()}


def tally_outputs(root: Container, outputs: dict[str, str]) -> OutputTally:
    """Committed records (tombstones aside) on the same-work output roles' topics."""
    client = root.settings.kafka_client_config()

    def records(*roles: str) -> int:
        return sum(
            sum(1 for m in read_all(client, outputs[role], timeout=60) if m.value() is not None)
            for role in roles
        )

    return OutputTally(
        records(ORES, COMNEXIO, RESTRICTED, QUARANTINE), records(RECORDINGS), records(SIGNALS)
    )


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
        self.same_work_outputs: dict[str, str] = {}

    def run(self, name: str, events: int) -> SystemRun:
        outputs = self._outputs(name)
        group = f"{self.root.settings.topic_prefix}{name}"
        self.groups.append(group)
        workdir = self.scratch / name
        workdir.mkdir()
        same_work = name == QUIX_SAME_WORK
        spec = PeerSpec(
            client_config=plain_client_config(self.root.settings),
            input_topics=self.inputs,
            outputs=outputs,
            group_id=group,
            report_path=str(workdir / "report.json"),
            policy_path=str(self.root.settings.infra_dir / "policy.yaml"),
            pseudonym_key_hex=self.key_hex,
            same_work=same_work,
            master_key_hex=secrets.token_bytes(32).hex() if same_work else "",
            commit_every=self.root.settings.router_batch_size if same_work else 0,
        )
        launch = self._launch(name, workdir)
        counter: Progress
        if same_work:  # transactional outputs: count inputs committed, as for the router
            self.same_work_outputs = outputs
            counter = GroupProgress(self.topics.admin, group, self.inputs)
        else:
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
        roles = _SAME_WORK_OUTPUTS if name == QUIX_SAME_WORK else _TAGGED_OUTPUTS
        specs = tuple(self.root.topics.spec(logical) for logical in roles.values())
        catalog = self.topics.create(TopicCatalog(specs, prefix))
        return {role: catalog.name(logical) for role, logical in roles.items()}

    def _launch(self, name: str, workdir: Path) -> PeerLaunch:
        if name in ("quix", QUIX_SAME_WORK):
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
