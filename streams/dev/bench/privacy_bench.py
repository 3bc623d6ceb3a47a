"""`contactflow bench privacy`: how fast requests take effect, end to end, on the real broker.

On a fresh topic prefix and ledger: people are routed by the real router (five channels
each, one person with `heavy_events` events), the example downstream consumers answer in
threads, and a thread applies their acknowledgements through `PrivacyService` as the faust
agent does. ORES's standing instruction covers erasure and restriction, so the figures are
the pipeline's own, not a person's decision time. Measured from the ledger's evidence:

- erasure: request accepted -> every command emitted (the wall time of `submit`, which
  returns once Kafka has the commands), and -> every consumer answered (from the ledger:
  the answer applied by the ack thread), median and p99 over `requests` people;
- the erasure of the person with `heavy_events` events in history (crypto-shredding makes
  it independent of history size: the ratio to a five-event person is printed);
- restriction effective: request accepted -> the router puts the person's next event on
  contact.restricted.v1 (a probe event every 50 ms, the router running meanwhile).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from streams.bootstrap import Container, bootstrap
from streams.dev.bench.harness import BenchTopics
from streams.dev.bench.people import person_events, probe_event
from streams.errors import ContactflowError

Say = Callable[[str], None]
TIMEOUT_S = 120.0


@dataclass
class PrivacyBenchResult:
    emitted_s: list[float] = field(default_factory=list)
    answered_s: list[float] = field(default_factory=list)
    heavy_emitted_s: float = 0.0
    light_submit_s: list[float] = field(default_factory=list)
    heavy_submit_s: float = 0.0
    restriction_s: list[float] = field(default_factory=list)
    heavy_events: int = 0

    def report_lines(self) -> list[str]:
        p50, p99 = _median(self.answered_s), _p99(self.answered_s)
        ratio = self.heavy_submit_s / max(_median(self.light_submit_s), 1e-9)
        return [
            f"erasure requests: {len(self.answered_s)}",
            f"accepted -> all commands emitted: p50 {_median(self.emitted_s):.3f} s, "
            f"p99 {_p99(self.emitted_s):.3f} s",
            f"accepted -> all consumers answered: p50 {p50:.3f} s, p99 {p99:.3f} s",
            f"erasure of a subject with {self.heavy_events} events: executed and commands "
            f"emitted in {self.heavy_submit_s:.3f} s (a five-event subject: "
            f"{_median(self.light_submit_s):.3f} s median; ratio {ratio:.2f})",
            f"restriction effective (next event restricted by the router): p50 "
            f"{_median(self.restriction_s):.3f} s over {len(self.restriction_s)} people",
            f"erasure_p50_s={p50:.3f} erasure_p99_s={p99:.3f} "
            f"restriction_effective_p50_s={_median(self.restriction_s):.3f}",
        ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def run_privacy_bench(
    root: Container, say: Say, *, requests: int = 20, heavy_events: int = 10_000,
    restrictions: int = 5,
) -> PrivacyBenchResult:  # fmt: skip
    prefix = f"{root.settings.topic_prefix}bench-privacy-{uuid.uuid4().hex[:8]}."
    topics = BenchTopics(root.admin())
    with tempfile.TemporaryDirectory(prefix="contactflow-bench-privacy-") as scratch:
        settings = root.settings.model_copy(update={
            "topic_prefix": prefix, "data_dir": Path(scratch), "database_url": None,
            "privacy_standing_instructions": "erasure,restriction",
        })  # fmt: skip
        bench = bootstrap(settings, telemetry=root.telemetry)
        topics.create(bench.topics)
        try:
            return _measure(bench, say, requests, heavy_events, restrictions)
        finally:
            topics.delete_all()


def _measure(
    bench: Container, say: Say, requests: int, heavy_events: int, restrictions: int
) -> PrivacyBenchResult:
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.service import PrivacyService
    from streams.keys import load_keys
    from streams.ledger import upgrade

    upgrade(bench.settings.resolved_database_url())
    load_keys(bench.settings)
    people = [f"+32 470 {i // 100:02d} {i % 100:02d} 0{i % 10}" for i in range(requests)]
    heavy, restricted = "+32 471 99 99 99", [f"+32 472 00 00 {i:02d}" for i in range(restrictions)]
    _route_people(bench, say, [*people, *restricted], heavy, heavy_events)
    result = PrivacyBenchResult(heavy_events=heavy_events)
    config = load_privacy_config(bench)
    service = PrivacyService.from_container(bench, config, actor="bench")
    answering = Answering(bench, service, list(config.registry.consumers))
    try:
        answering.start()
        ids = [erase_phone(service, phone, result.light_submit_s) for phone in people]
        say(f"privacy: {len(ids)} erasure request(s) submitted; waiting for every answer")
        timings = [wait_completed(service, request_id) for request_id in ids]
        result.emitted_s = list(result.light_submit_s)  # submit returns once they are sent
        result.answered_s = [t["all_answers_s"] for t in timings]
        heavy_times: list[float] = []
        wait_completed(service, erase_phone(service, heavy, heavy_times))
        result.heavy_submit_s = heavy_times[0]
        say(f"privacy: erased the subject with {heavy_events} events in {heavy_times[0]:.3f} s")
        result.restriction_s = _restriction_delays(bench, service, restricted, say)
    finally:
        answering.stop()
        service.close()
    return result


def _route_people(
    bench: Container, say: Say, phones: list[str], heavy: str, heavy_events: int
) -> None:
    from streams.router.worker import RouterWorker

    producer = bench.producer()
    for phone in phones:
        for channel, event in person_events(phone):
            producer.send(channel, event)
    for index in range(heavy_events):
        producer.send("phone", probe_event(heavy))
        if index % 5_000 == 4_999:
            producer.flush()
    producer.flush()
    say(f"privacy: {len(phones)} people x 5 events and one person with {heavy_events} "
        "events produced; routing")  # fmt: skip
    stats = RouterWorker(bench).run(max_idle_s=2.0)
    say(f"privacy: router routed {stats.events_in} event(s)")


def erase_phone(service: Any, phone: str, submit_times: list[float]) -> str:
    from streams.control.privacy.intake import Intake, identifiers

    now = datetime.now(UTC)
    intake = Intake("erasure", identifiers([("phone", phone)]), "bench", now,
                    verified_by="bench")  # fmt: skip
    started = time.perf_counter()
    request = service.submit(intake, now)
    submit_times.append(time.perf_counter() - started)
    if request.state not in {"awaiting_acks", "completed"}:
        raise ContactflowError(f"bench: erasure {request.request_id} stopped in {request.state}")
    return str(request.request_id)


def wait_completed(service: Any, request_id: str) -> dict[str, Any]:
    from streams.control.privacy.evidence import request_report

    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if service.get(request_id).state == "completed":
            with service.sessions()() as session:
                return dict(request_report(session, request_id, datetime.now(UTC))["timings"])
        time.sleep(0.05)
    raise ContactflowError(f"bench: request {request_id} not completed in {TIMEOUT_S:.0f} s")


def _restriction_delays(bench: Container, service: Any, phones: list[str], say: Say) -> list[float]:
    from streams.control.privacy.intake import Intake, identifiers
    from streams.router.worker import RouterWorker

    router = RouterWorker(bench)
    thread = threading.Thread(target=router.run, name="bench-router", daemon=True)
    thread.start()
    tail = _Tail(bench, "contact.restricted.v1")
    delays = []
    try:
        for phone in phones:
            now = datetime.now(UTC)
            started = time.perf_counter()
            service.submit(Intake("restriction", identifiers([("phone", phone)]), "bench", now,
                                  verified_by="bench"), now)  # fmt: skip
            delays.append(_until_restricted(bench, tail, phone, started))
        say(f"privacy: {len(delays)} restriction(s) took effect in the router")
    finally:
        router.stop()
        thread.join(30)
        router.close()
        tail.close()
    return delays


def _until_restricted(bench: Container, tail: _Tail, phone: str, started: float) -> float:
    producer = bench.producer()
    sent: set[str] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        probe = probe_event(phone)
        sent.add(probe["envelope"]["event_id"])
        producer.send("phone", probe)
        producer.flush()
        if tail.seen_any(sent, 0.05):
            return time.perf_counter() - started
    raise ContactflowError("bench: a restriction did not take effect in the router")


class _Tail:
    """Reads a tagged topic as it grows; remembers the event ids seen."""

    def __init__(self, bench: Container, logical: str) -> None:
        from schemas.serde import AvroSerde

        self._serde = AvroSerde(bench.schemas)
        self._seen: set[str] = set()
        self._consumer = Consumer({**bench.settings.kafka_client_config(),
                                   "group.id": f"bench-tail-{uuid.uuid4().hex[:8]}",
                                   "auto.offset.reset": "earliest",
                                   "isolation.level": "read_committed"})  # fmt: skip
        self._consumer.subscribe([bench.topics.name(logical)])

    def seen_any(self, ids: set[str], timeout: float) -> bool:
        for message in self._consumer.consume(1000, timeout):
            if message.error() is None and message.value() is not None:
                self._seen.add(self._serde.deserialize(message.value() or b"")[1]["event_id"])
        return bool(ids & self._seen)

    def close(self) -> None:
        self._consumer.close()


class Answering:
    """The example downstream consumers answering, and the acknowledgements applied as
    they arrive (what the faust agent does), each in a thread."""

    def __init__(self, bench: Container, service: Any, names: list[str]) -> None:
        from streams.sdk.downstream.client import DownstreamConsumer

        self._consumers = [DownstreamConsumer(bench, name) for name in names]
        self._bench, self._service = bench, service
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        from streams.sdk.downstream.example import example_answer

        for consumer in self._consumers:
            thread = threading.Thread(target=consumer.serve, args=(example_answer,), daemon=True)
            self._threads.append(thread)
        self._threads.append(threading.Thread(target=self._apply_acks, daemon=True))
        for thread in self._threads:
            thread.start()

    def _apply_acks(self) -> None:
        consumer = Consumer({**self._bench.settings.kafka_client_config(),
                             "group.id": "bench-privacy-acks", "auto.offset.reset": "earliest",
                             "isolation.level": "read_committed"})  # fmt: skip
        consumer.subscribe([self._bench.topics.name("privacy.acks.v1")])
        try:
            while not self._stopped.is_set():
                for message in consumer.consume(500, 0.05):
                    if message.error() is None and message.value() is not None:
                        self._service.acknowledge_message(message.value(), datetime.now(UTC))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stopped.set()
        for consumer in self._consumers:
            consumer.stop()
        for thread in self._threads:
            thread.join(30)
        for consumer in self._consumers:
            consumer.close()
