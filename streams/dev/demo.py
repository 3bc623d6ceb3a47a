"""The end-to-end demo behind `contactflow demo`: everything that works today, shown.

Each step is a small function reporting through `say`, so the CLI can show progress and a
test can run the same demo against its own broker and topics.
"""

from __future__ import annotations

import copy
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.errors import SerdeError
from schemas.examples import example_events
from schemas.serde import AvroSerde
from schemas.topic_names import CHANNELS
from schemas.validation import ContractViolation
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.kafka.readback import end_offsets, read_all
from streams.ops.broker import Broker
from streams.sdk.producer import raw_topic
from streams.topics import apply_plan, delete_topics, plan

Say = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo did, for the summary table and for tests."""

    topics_changed: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    landed: dict[str, Counter[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    ledger_revision: str | None = None
    routed: dict[str, Counter[str]] = field(default_factory=dict)
    retention: list[str] = field(default_factory=list)
    subjects: int = 0
    router_events: int = 0
    erasure: dict[str, Any] = field(default_factory=dict)
    dead_letters_purged: int = 0
    kpis: Any = None  # streams.dev.demo_kpi.KpiDemo


def run_demo(root: Container, say: Say, *, rounds: int = 5) -> DemoResult:
    """Broker up, ledger migrated, topics applied, a sample per channel produced and read."""
    result = DemoResult()
    if root.settings.bootstrap_servers is None:  # no external cluster configured
        Broker(root.settings).up(report=say)
    result.ledger_revision = migrate_ledger(root, say)
    result.topics_changed = apply_topics(root, say)
    sent_ids = produce_sample(root, say, rounds, result)
    show_refusal(root, say, result)
    read_back(root, say, sent_ids, result)
    produce_for_router_errors(root, say, result)
    route(root, say, result)
    show_kpis(root, say, result)
    show_retention(root, say, result)
    show_erasure(root, say, result)
    purge_dead_letters(root, say, result)
    return result


def reset_demo(root: Container, say: Say) -> None:
    """Empty data for the demo: the declared topics deleted, the local ledger removed."""
    if root.settings.database_url is not None:
        raise ContactflowError(
            "demo --reset removes the ledger only when it is the local SQLite file; "
            "unset CONTACTFLOW_DATABASE_URL or reset that database yourself"
        )
    if root.settings.bootstrap_servers is None:
        Broker(root.settings).up(report=say)
    delete_topics(root.admin(), root.topics)
    ledger = root.settings.data_dir / "ledger.db"
    ledger.unlink(missing_ok=True)
    # the reporting app's RocksDB tables would otherwise outlive their changelog topic
    shutil.rmtree(root.settings.data_dir / "faust-reporting", ignore_errors=True)
    say(f"reset: declared topics deleted, {ledger} and the reporting app's tables removed")


def migrate_ledger(root: Container, say: Say) -> str:
    from streams.ledger import current_revision, upgrade

    settings = root.settings
    upgrade(settings.resolved_database_url(), connect_timeout_s=settings.connect_timeout_s)
    revision = current_revision(root.ledger_engine) or "none"
    say(f"ledger migrated to revision {revision}")
    return revision


def apply_topics(root: Container, say: Say) -> int:
    admin = root.admin()
    changes = plan(admin, root.topics).changes
    applied = apply_plan(admin, changes)
    say(f"topics: {len(applied)} change(s) applied, {len(root.topics.specs)} topics declared")
    return len(applied)


def latest_time(value: Any) -> datetime:
    """The latest ISO-8601 timestamp anywhere in an example event."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return max((latest_time(v) for v in value), default=datetime.min.replace(tzinfo=UTC))
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def shift_times(value: Any, delta: timedelta) -> Any:
    """The example event with every ISO-8601 timestamp moved by `delta`."""
    if isinstance(value, dict):
        return {k: shift_times(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_times(v, delta) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return (datetime.fromisoformat(value) + delta).isoformat()
        except ValueError:
            return value
    return value


def produce_sample(root: Container, say: Say, rounds: int, result: DemoResult) -> set[str]:
    """Send `rounds` copies (fresh ids) of every example event of every channel, as if
    they happened in the last days."""
    producer = root.producer()
    sent_ids: set[str] = set()
    newest = max(latest_time(e) for c in CHANNELS for e in example_events(c))
    delta = datetime.now(UTC) - timedelta(hours=1) - newest  # as if it all happened lately
    for channel in CHANNELS:
        for _ in range(rounds):
            for template in example_events(channel):
                event = shift_times(copy.deepcopy(template), delta)
                event["envelope"]["event_id"] = str(uuid.uuid4())
                event["envelope"]["contact_id"] = f"demo-{uuid.uuid4().hex[:12]}"
                for id_field in ("recording_id", "transcript_id", "message_id", "survey_id"):
                    if id_field in event["payload"]:
                        event["payload"][id_field] = f"{id_field[:3]}-{uuid.uuid4().hex[:12]}"
                producer.send(channel, event)
                sent_ids.add(event["envelope"]["event_id"])
                result.sent[channel] = result.sent.get(channel, 0) + 1
        say(f"produced {result.sent[channel]} {channel} event(s)")
    producer.flush()
    return sent_ids


def show_refusal(root: Container, say: Say, result: DemoResult) -> None:
    """An invalid event is refused before it leaves the process, naming field and problem."""
    bad = copy.deepcopy(example_events("survey")[-1])
    bad["payload"]["score"] = 11
    del bad["envelope"]["occurred_at"]
    try:
        root.producer().encode("survey", bad)
    except ContractViolation as exc:
        result.refused.append(str(exc))
        say(f"refused an invalid survey event before sending: {exc}")


def read_back(root: Container, say: Say, sent_ids: set[str], result: DemoResult) -> None:
    """Read each raw topic and count this run's events by kind."""
    serde = AvroSerde(root.schemas)
    config = root.settings.kafka_client_config()
    for channel in CHANNELS:
        topic = root.topics.name(raw_topic(channel))
        kinds: Counter[str] = Counter()
        for message in read_all(config, topic):
            try:  # earlier runs and other producers may have left anything here
                _, record = serde.deserialize(message.value() or b"")
            except SerdeError:
                continue
            if record["envelope"]["event_id"] in sent_ids:
                kinds[record["kind"]] += 1
        result.landed[topic] = kinds
        say(f"read back {sum(kinds.values())} event(s) from {topic}")


ROUTER_OUTPUTS = (
    "contact.ores.v1",
    "contact.comnexio.v1",
    "contact.restricted.v1",
    "recordings.standard.v1",
    "contact.quarantine.v1",
    "contact.deadletter.v1",
)


def produce_for_router_errors(root: Container, say: Say, result: DemoResult) -> None:
    """Events valid by contract that the router must not route: unknown service, bad phone."""
    producer = root.producer()
    unknown = copy.deepcopy(example_events("phone")[0])
    unknown["envelope"]["service"] = "horoscope"
    bad_phone = copy.deepcopy(example_events("phone")[0])
    bad_phone["envelope"]["subject"] = {"phone": "0471 12"}
    for event in (unknown, bad_phone):
        event["envelope"]["event_id"] = str(uuid.uuid4())
        producer.send("phone", event)
    producer.flush()
    say("produced 1 event for an unknown service and 1 with an impossible phone number")


def route(root: Container, say: Say, result: DemoResult) -> None:
    """Run the router until the raw topics are drained, then show where events went."""
    from streams.router.worker import RouterWorker

    config = root.settings.kafka_client_config()
    # what earlier runs left on the outputs (and their tombstones) is not this run's
    before = {name: end_offsets(config, root.topics.name(name)) for name in ROUTER_OUTPUTS}
    worker = RouterWorker(root)
    say("router: routing the raw topics (transactions on)")
    stats = worker.run(max_idle_s=2.0)
    result.router_events = stats.events_in
    say(f"router: {stats.events_in} event(s) in {stats.batches} batch(es)")
    serde = AvroSerde(root.schemas)
    subjects: set[str] = set()
    for logical in ROUTER_OUTPUTS:
        detail: Counter[str] = Counter()
        for message in read_all(config, root.topics.name(logical), since=before[logical]):
            if message.value() is None:
                continue
            _, record = serde.deserialize(message.value() or b"")
            if "governance" in record:
                governance = record["governance"]
                subjects.add(governance["subject_pseudonym"])
                detail[f"{governance['controller']}/{governance['purpose']}"] += 1
            elif "reason_code" in record:
                detail[record["reason_code"]] += 1
            elif "recording_kind" in record:
                detail[f"{record['recording_kind']} until {record['retain_until']:%Y-%m-%d}"] += 1
            else:
                detail[record.get("reason", "quarantined")[:40]] += 1
        result.routed[root.topics.name(logical)] = detail
    result.subjects = len(subjects)


def show_kpis(root: Container, say: Say, result: DemoResult) -> None:
    """The contact centre's reporting: 40 people's contacts counted, anonymous, by channel."""
    from streams.dev.demo_kpi import run_kpis

    result.kpis = run_kpis(root, say)


def show_retention(root: Container, say: Say, result: DemoResult) -> None:
    """Recordings registered, a complaint e-mail holding last week's call, a moved clock."""
    from streams.control.retention.catchup import apply_retention_topics
    from streams.control.retention.service import RetentionService
    from streams.router.worker import RouterWorker, load_policy

    policy = load_policy(root)
    service = RetentionService.from_container(
        root, actor="demo", grace_days=policy.release_grace_days
    )
    now = datetime.now(UTC)
    try:
        caught = apply_retention_topics(root, service, now)
        note(result, say, f"retention: {caught.registered} recording(s) registered, "
             f"{caught.held_by_signals} held by the complaints among the e-mails")  # fmt: skip

        complaint = copy.deepcopy(example_events("email")[0])
        complaint["envelope"] |= {
            "event_id": str(uuid.uuid4()), "contact_id": f"demo-{uuid.uuid4().hex[:12]}",
            "occurred_at": now.isoformat(), "service": "complaint",
            "subject": {"email": "caller.demo@example.org", "phone": "+32 471 12 34 56"},
        }  # fmt: skip
        complaint["payload"]["message_id"] = f"msg-{uuid.uuid4().hex[:12]}"
        producer = root.producer()
        producer.send("email", complaint)
        producer.flush()
        RouterWorker(root).run(max_idle_s=2.0)
        caught = apply_retention_topics(root, service, now)
        note(result, say, "a complaint e-mail from the caller of last week's outage call: "
             f"{caught.held_by_signals} of their recording(s) now on legal hold")  # fmt: skip

        assert not service.sweep(now).expired
        period = policy.retention_classes["recording"].recording_period_days or 30
        later = now + timedelta(days=period + 1)
        swept = service.sweep(later)
        note(result, say, f"sweep with the clock moved to {later:%Y-%m-%d}: "
             f"{len(swept.expired)} recording(s) expired (deletion commands sent); "
             "held recordings kept")  # fmt: skip
        report = service.report(later)
        note(result, say, f"retention report at {later:%Y-%m-%d}: held "
             f"{report.total('held')}, expired {report.total('expired')}")  # fmt: skip
    finally:
        service.close()


def show_erasure(root: Container, say: Say, result: DemoResult) -> None:
    """A verified erasure for the demo caller, executed, answered, proven and reported."""
    from streams.dev.demo_erasure import run_erasure

    result.erasure = run_erasure(root, say)


def purge_dead_letters(root: Container, say: Say, result: DemoResult) -> None:
    """The dead letters (counted by reason in `route`) purged: their original bytes are
    personal data in clear, which the erasure could not reach by pseudonym."""
    from streams.ops.deadletters import DeadLetters

    now = datetime.now(UTC)
    result.dead_letters_purged = DeadLetters(root, actor="demo").purge(now, now).purged
    say(f"dead letters: {result.dead_letters_purged} purged (deadletters purge --older-than 0)")


def note(result: DemoResult, say: Say, line: str) -> None:
    result.retention.append(line)
    say(line)
