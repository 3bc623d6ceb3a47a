"""`contactflow bench scale`: the router and the privacy app with millions of people in
the ledger, against the same router on an empty ledger, in one run on one broker.

Two ledgers (SQLite files in a scratch directory, or two databases made for the run in a
PostgreSQL server), each with topics of its own prefix:

- **empty**: nobody in it;
- **full**: `subjects` invented people loaded through the router's write path
  (`scale_load`), plus, once measured, everyone the workload names.

On each, one router process (`contactflow run router`, as `bench router` runs it) routes:

1. **cold**: the `bench router` workload of `events` events (about events/2 people, repeat
   callers among them), in a fresh process: every person's first event misses the cache
   and is written to the ledger (a new subject with N others there, or none);
2. **warm**: the same people again (new event ids), in the same process: the cache has
   them, as it has a busy day's callers.

Then, on the full ledger only, with a fresh cache:

3. **spread**: one call from each of `spread` distinct loaded people (default 80,000,
   more than the default cache budget holds): every event a lookup among N, and the
   cache evicting; the subject count must not grow (the loaded people are found, which
   checks the loader wrote what the router reads). The router's peak RSS over the three
   passes is reported.

Then the privacy side at N, as `bench privacy` measures it: the ledger reads that resolve a
request for a person among N (`resolution.facts_of`, p50 over `lookups` people), and
`requests` erasures of loaded people from `submit` to every downstream consumer's answer.
"""

from __future__ import annotations

import copy
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import SecretStr
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from streams.bootstrap import Container, bootstrap
from streams.dev.bench.contacts import RawEvent
from streams.dev.bench.flow import RECORDING_ID_FIELD
from streams.dev.bench.harness import (
    BenchError,
    BenchTopics,
    GroupProgress,
    PeerLaunch,
    child_env,
    peak_rss_bytes,
    plain_client_config,
    tree_cpu_s,
)
from streams.dev.bench.people import probe_event
from streams.dev.bench.scale_load import MAX_PEOPLE, filler_phone, filler_subject, load_people
from streams.dev.bench.spec import PeerSpec
from streams.dev.bench.workload import encode_workload, generate_workload, produce_workload
from streams.errors import ContactflowError
from streams.router.worker import GROUP_ID
from streams.sdk.producer import raw_topic

Say = Callable[[str], None]
DATABASES: Final = ("sqlite", "postgresql")
_POLL_S: Final = 0.02
_PASS_TIMEOUT_S: Final = 900.0
_STOP_GRACE_S: Final = 20.0


@dataclass(frozen=True)
class Pass:
    """One measured pass of the router: events, seconds, CPU seconds of its processes."""

    name: str
    events: int
    seconds: float
    cpu_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_s / max(self.events, 1)

    def line(self) -> str:
        return (
            f"{self.name}: {self.events:,} events in {self.seconds:.2f} s, "
            f"{self.events_per_s:,.0f} events/s, {self.cpu_us_per_event:.0f} µs CPU/event"
        )


@dataclass
class ScaleResult:
    subjects: int
    database: str
    load_s: float = 0.0
    ledger_bytes: int = 0
    empty: dict[str, Pass] = field(default_factory=dict)
    full: dict[str, Pass] = field(default_factory=dict)
    rss_bytes: int = 0
    new_subjects_in_spread: int = 0
    resolve_ms: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    erasure_s: list[float] = field(default_factory=list)

    def ratio(self, name: str) -> float:
        return self.full[name].events_per_s / max(self.empty[name].events_per_s, 1e-9)

    def report_lines(self) -> list[str]:
        erasure_p50, erasure_p99 = _median(self.erasure_s), _p99(self.erasure_s)
        rss_mib = self.rss_bytes / 2**20
        lines = [
            f"ledger ({self.database}): {self.subjects:,} people loaded in {self.load_s:.0f} s "
            f"({self.subjects / max(self.load_s, 1e-9):,.0f}/s); "
            f"{self.ledger_bytes / 2**20:,.0f} MiB on disk",
            *(f"empty ledger, {p.line()}" for p in self.empty.values()),
            *(f"{self.subjects:,} people, {p.line()}" for p in self.full.values()),
            f"router vs empty ledger: cold {self.ratio('cold'):.2f}, warm {self.ratio('warm'):.2f}",
            f"spread pass: {self.new_subjects_in_spread} new subject(s) (0: every loaded "
            f"person was found); router peak RSS {rss_mib:.0f} MiB",
            f"resolution among {self.subjects:,}: p50 {_median(self.resolve_ms):.2f} ms, "
            f"p99 {_p99(self.resolve_ms):.2f} ms over {len(self.resolve_ms)} people",
            f"erasure: submit p50 {_median(self.submit_s):.3f} s; accepted -> all consumers "
            f"answered p50 {erasure_p50:.3f} s, p99 {erasure_p99:.3f} s "
            f"over {len(self.erasure_s)} people",
            f"scale_subjects={self.subjects} router_vs_empty={self.ratio('warm'):.2f} "
            f"router_rss_mib={rss_mib:.0f} erasure_p50_s={erasure_p50:.3f} "
            f"resolve_p50_ms={_median(self.resolve_ms):.2f}",
        ]
        return lines


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def run_scale_bench(
    root: Container,
    say: Say,
    *,
    subjects: int = 2_000_000,
    database: str = "sqlite",
    postgres_url: str | None = None,
    events: int = 30_000,
    spread: int = 80_000,
    lookups: int = 200,
    requests: int = 20,
) -> ScaleResult:
    if database not in DATABASES:
        raise ContactflowError(f"--database is one of {', '.join(DATABASES)}, not {database}")
    if not 1 <= subjects <= MAX_PEOPLE:
        raise ContactflowError(f"--subjects is 1..{MAX_PEOPLE:,}")
    spread, lookups, requests = (
        min(spread, subjects),
        min(lookups, subjects),
        min(requests, subjects),
    )
    result = ScaleResult(subjects, database)
    workload = generate_workload(events)
    with (
        tempfile.TemporaryDirectory(prefix="contactflow-bench-scale-") as scratch,
        _ledgers(Path(scratch), database, postgres_url, say) as (empty_url, full_url),
    ):
        empty = _bench_container(root, Path(scratch) / "empty", empty_url)
        full = _bench_container(root, Path(scratch) / "full", full_url)
        topics = BenchTopics(root.admin())
        try:
            _load(full, subjects, result, say)
            for bench in (empty, full):
                topics.create(bench.topics)
            say(f"scale: empty ledger: {events:,} events, cold then warm")
            result.empty, _, _ = _route_passes(empty, workload, [], say)
            say(f"scale: {subjects:,} people: {events:,} events, cold then warm; then "
                f"{spread:,} loaded people once each")  # fmt: skip
            chosen = random.Random(7).sample(range(subjects), spread)
            result.full, result.rss_bytes, result.new_subjects_in_spread = _route_passes(
                full, workload, chosen, say
            )
            result.ledger_bytes = _ledger_bytes(full)
            result.resolve_ms = _resolution_ms(full, lookups, subjects)
            say(f"scale: resolution timed for {len(result.resolve_ms)} people; "
                f"erasing {requests}")  # fmt: skip
            _erase(full, subjects, requests, result)
        finally:
            topics.delete_all()
            for bench in (empty, full):
                bench.ledger_engine.dispose()
    return result


def _bench_container(root: Container, data_dir: Path, url: str) -> Container:
    prefix = f"{root.settings.topic_prefix}bench-scale-{uuid.uuid4().hex[:8]}."
    settings = root.settings.model_copy(update={
        "topic_prefix": prefix, "data_dir": data_dir, "database_url": SecretStr(url),
        "privacy_standing_instructions": "erasure,restriction",
    })  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
    return bootstrap(settings, telemetry=root.telemetry)


# -- the ledgers ------------------------------------------------------------------------


@contextmanager
def _ledgers(
    scratch: Path, database: str, postgres_url: str | None, say: Say
) -> Iterator[tuple[str, str]]:
    """URLs of two new ledgers at the head revision (dropped after, on PostgreSQL)."""
    from streams.ledger import upgrade

    if database == "sqlite":
        urls = [f"sqlite:///{scratch / name / 'ledger.db'}" for name in ("empty", "full")]
        for name in ("empty", "full"):
            (scratch / name).mkdir(parents=True, exist_ok=True)
        for url in urls:
            upgrade(url)
        yield urls[0], urls[1]
        return
    if not postgres_url:
        raise ContactflowError(
            "bench scale --database postgresql needs a server: --postgres-url URL (or "
            "CONTACTFLOW_TEST_POSTGRES_URL), e.g. one started by infra/postgres/pg-up.sh"
        )
    server = make_url(postgres_url)
    names = [f"contactflow_scale_{uuid.uuid4().hex[:8]}_{n}" for n in ("empty", "full")]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        urls = [server.set(database=name).render_as_string(hide_password=False) for name in names]
        for url in urls:
            upgrade(url)
        say(f"scale: PostgreSQL databases {', '.join(names)} made for the run")
        yield urls[0], urls[1]
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _load(full: Container, subjects: int, result: ScaleResult, say: Say) -> None:
    from processors.pseudonym import Pseudonymiser
    from streams.keys import load_keys
    from streams.ledger import session_factory

    keys = load_keys(full.settings)
    say(f"scale: loading {subjects:,} people into the {result.database} ledger")
    result.load_s = load_people(
        session_factory(full.ledger_engine), Pseudonymiser(keys.pseudonym_key),
        keys.master_key, range(subjects), datetime.now(UTC), say,
    )  # fmt: skip


def _subject_count(bench: Container) -> int:
    from streams.ledger.models import Subject

    with bench.ledger_engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Subject)).scalar_one())


def _ledger_bytes(bench: Container) -> int:
    url = make_url(bench.settings.resolved_database_url())
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with bench.ledger_engine.connect() as connection:
        return int(
            connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        )


# -- the router -------------------------------------------------------------------------


def _again(events: list[RawEvent]) -> list[RawEvent]:
    """The same people's contacts once more: new event, contact and recording ids."""
    again = []
    for item in events:
        event = copy.deepcopy(item.event)
        envelope = event["envelope"]
        envelope["event_id"] = str(uuid.uuid4())
        envelope["contact_id"] = f"{envelope['contact_id']}-again"
        id_field = RECORDING_ID_FIELD.get(event["kind"])
        if id_field is not None:
            unique = uuid.uuid4().hex
            event["payload"][id_field] = (
                f"<{unique}@mail.example.org>" if id_field == "message_id" else f"rec-{unique}"
            )
        again.append(RawEvent(item.channel, event))
    return again


def _spread_events(chosen: list[int]) -> list[RawEvent]:
    return [RawEvent("phone", probe_event(filler_phone(index))) for index in chosen]


def _route_passes(
    bench: Container, workload: list[RawEvent], chosen: list[int], say: Say
) -> tuple[dict[str, Pass], int, int]:
    """Cold and warm passes of the workload in one router process; the spread pass (when
    `chosen` people are given) in a second one. The passes, the peak RSS, and how many
    subjects the spread pass made (none, when the loaded people are found)."""
    passes: dict[str, Pass] = {}
    made = 0
    with _Router(bench, Path(bench.settings.data_dir)) as router:
        passes["cold"] = router.route("cold", workload)
        say(f"scale: {passes['cold'].line()}")
        passes["warm"] = router.route("warm", _again(workload))
        say(f"scale: {passes['warm'].line()}")
        rss = router.peak_rss()
    if chosen:
        before = _subject_count(bench)
        with _Router(bench, Path(bench.settings.data_dir)) as router:
            passes["spread"] = router.route("spread", _spread_events(chosen))
            say(f"scale: {passes['spread'].line()}")
            rss = max(rss, router.peak_rss())
        made = _subject_count(bench) - before
    return passes, rss, made


class _Router:
    """`contactflow run router` in a process of its own (`router_peer`), fed pass by pass:
    a pass is produced, then timed from the first record produced to the router's commit
    of the last (its group's committed offsets). One event is routed before the first pass,
    so a pass does not time the router's start."""

    def __init__(self, bench: Container, workdir: Path) -> None:
        self._bench = bench
        self._workdir = workdir / f"router-{uuid.uuid4().hex[:6]}"
        self._inputs = [bench.topics.name(raw_topic(c)) for c in _CHANNELS]
        self._topics = dict(zip(_CHANNELS, self._inputs, strict=True))
        self._group = bench.settings.scoped(GROUP_ID)
        self._done = 0

    def __enter__(self) -> _Router:
        import subprocess

        settings = self._bench.settings
        self._workdir.mkdir(parents=True)
        env = child_env(
            CONTACTFLOW_BOOTSTRAP_SERVERS=settings.bootstrap,
            CONTACTFLOW_TOPIC_PREFIX=settings.topic_prefix,
            CONTACTFLOW_DATA_DIR=str(settings.data_dir),
            CONTACTFLOW_DATABASE_URL=settings.resolved_database_url(),
            CONTACTFLOW_ROUTER_INSTANCE=f"scale-{uuid.uuid4().hex[:6]}",
        )
        report = str(self._workdir / "report.json")
        spec = PeerSpec(client_config={}, input_topics=self._inputs, outputs={},
                        group_id=self._group, report_path=report)  # fmt: skip
        launch = PeerLaunch("router", [sys.executable, "-m", "streams.dev.bench.router_peer"],
                            self._workdir, env)  # fmt: skip
        self._log = (self._workdir / "router.log").open("wb")
        self._popen = subprocess.Popen(
            list(launch.argv), stdin=subprocess.PIPE, stdout=self._log,
            stderr=subprocess.STDOUT, cwd=self._workdir, env=dict(env),
        )  # fmt: skip
        assert self._popen.stdin is not None
        self._popen.stdin.write(spec.to_json().encode())
        self._popen.stdin.close()
        self._progress = GroupProgress(self._bench.admin(), self._group, self._inputs)
        self._done = self._progress.count()  # what an earlier router of the group committed
        # one event first: the group joined, the transactions and the dedup window ready,
        # so the passes time routing, not start-up (it names loaded person 0)
        self.route("start-up", _spread_events([0]))
        return self

    def route(self, name: str, events: list[RawEvent]) -> Pass:
        encoded = encode_workload(events, self._bench.schemas)
        cpu_before = tree_cpu_s(self._popen.pid)
        started = time.perf_counter()
        sent = produce_workload(plain_client_config(self._bench.settings), self._topics, encoded)
        target = self._done + sent
        deadline = time.monotonic() + _PASS_TIMEOUT_S
        while (done := self._progress.count()) < target:
            if self._popen.poll() is not None:
                log_path = self._workdir / "router.log"
                raise BenchError(f"the router exited ({self._popen.returncode}) in the "
                                 f"{name} pass; its log: {log_path}")  # fmt: skip
            if time.monotonic() > deadline:
                raise BenchError(f"the router routed {done - self._done} of {sent} events "
                                 f"of the {name} pass in {_PASS_TIMEOUT_S:.0f} s")  # fmt: skip
            time.sleep(_POLL_S)
        seconds = time.perf_counter() - started
        self._done = target
        return Pass(name, sent, seconds, tree_cpu_s(self._popen.pid) - cpu_before)

    def peak_rss(self) -> int:
        return peak_rss_bytes(self._popen.pid)

    def __exit__(self, *_: object) -> None:
        import signal
        import subprocess

        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._log.close()


_CHANNELS: Final = ("phone", "chat", "email", "survey", "social")


# -- the privacy side -------------------------------------------------------------------


def _resolution_ms(full: Container, lookups: int, subjects: int) -> list[float]:
    """The ledger reads that resolve a request for one person among N, timed per person."""
    from processors.pseudonym import Pseudonymiser
    from processors.routing import subject_identifiers
    from streams.control.privacy.resolution import facts_of
    from streams.keys import load_keys
    from streams.ledger import session_factory

    pseudonymiser = Pseudonymiser(load_keys(full.settings).pseudonym_key)
    sessions = session_factory(full.ledger_engine)
    timings = []
    for index in random.Random(11).sample(range(subjects), lookups):
        identifiers = subject_identifiers(filler_subject(index))
        digests = [(i.kind.value, pseudonymiser.identifier_digest(i)) for i in identifiers]
        with sessions() as session:
            started = time.perf_counter()
            found, footprints, _ = facts_of(session, digests)
            timings.append(1000 * (time.perf_counter() - started))
        if len(found) != 1 or not footprints:
            raise BenchError(f"resolution found {len(found)} subject(s) for a loaded person")
    return timings


def _erase(full: Container, subjects: int, requests: int, result: ScaleResult) -> None:
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.service import PrivacyService
    from streams.dev.bench.privacy_bench import Answering, erase_phone, wait_completed

    config = load_privacy_config(full)
    service = PrivacyService.from_container(full, config, actor="bench")
    answering = Answering(full, service, list(config.registry.consumers))
    people = random.Random(13).sample(range(subjects), requests)
    try:
        answering.start()
        ids = [erase_phone(service, filler_phone(i), result.submit_s) for i in people]
        result.erasure_s = [wait_completed(service, r)["all_answers_s"] for r in ids]
    finally:
        answering.stop()
        service.close()
