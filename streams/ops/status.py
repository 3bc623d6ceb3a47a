"""One snapshot of the running system, and what in it needs a person.

`collect_status` reads the broker (reachable, nodes, topic drift), the consumer groups'
lag (`streams.ops.lag`), the dead letters by reason and the events in quarantine, and the
ledger (open data-subject requests, overdue ones, late consumers, active holds,
recordings due this week). Each finding that needs a person is a `Problem` with a stable
code; the snapshot is `ok` when there are none. A broker or ledger that cannot be read is
such a finding too, never an exception: the rest of the snapshot is still filled in.

Only identifiers the operators already use appear (group ids, topic names, request ids,
consumer names, reason codes) and counts: no personal data, no dead letter's bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaException
from sqlalchemy.exc import OperationalError, ProgrammingError

from schemas.topic_names import CONTACT_DEADLETTER, CONTACT_QUARANTINE
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.kafka.reachability import broker_answers
from streams.ops.lag import ADMIN_TIMEOUT_S, GroupLag, consumer_lag

DEFAULT_MAX_LAG = 10_000

# Problem codes: stable, for scripts (documented in README, "contactflow status").
BROKER_UNREACHABLE = "broker_unreachable"
BROKER_UNREADABLE = "broker_unreadable"
TOPIC_DRIFT = "topic_drift"
LAG_OVER_THRESHOLD = "lag_over_threshold"
REQUEST_OVERDUE = "request_overdue"
CONSUMER_LATE = "consumer_late"
LEDGER_UNAVAILABLE = "ledger_unavailable"
# Warning codes: shown, but the snapshot stays ok.
BROKER_DEGRADED = "broker_degraded"


@dataclass(frozen=True)
class Problem:
    """Something that needs a person (or, as a warning, their attention)."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class BrokerNodeInfo:
    node_id: int
    host: str
    port: int


@dataclass(frozen=True)
class BrokerHealth:
    bootstrap: str
    reachable: bool
    error: str | None = None
    cluster_id: str | None = None
    controller_id: int | None = None
    nodes: tuple[BrokerNodeInfo, ...] = ()
    expected_nodes: int | None = None  # the local cluster's size, when it runs here
    version: str | None = None  # the pinned Kafka version, when the broker runs here
    topics_declared: int = 0
    drift: tuple[str, ...] | None = None  # None: not checked (broker unreachable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "reachable": self.reachable,
            "error": self.error,
            "cluster_id": self.cluster_id,
            "controller_id": self.controller_id,
            "version": self.version,
            "nodes": [{"id": n.node_id, "host": n.host, "port": n.port} for n in self.nodes],
            "expected_nodes": self.expected_nodes,
            "topics_declared": self.topics_declared,
            "drift": None if self.drift is None else list(self.drift),
        }


@dataclass(frozen=True)
class DeadLetterCounts:
    total: int
    replayed: int
    by_reason: tuple[tuple[str, str, str, int], ...]  # source topic, stage, reason code, n

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "already_replayed": self.replayed,
            "by_reason": [
                {"source_topic": t, "stage": s, "reason_code": r, "count": n}
                for t, s, r, n in self.by_reason
            ],
        }


@dataclass(frozen=True)
class LateConsumers:
    request_id: str
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class RequestCounts:
    open: int
    by_state: dict[str, int]
    overdue: tuple[str, ...]  # request ids, earliest deadline first
    late: tuple[LateConsumers, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "by_state": dict(sorted(self.by_state.items())),
            "overdue": list(self.overdue),
            "late_consumers": [
                {"request_id": item.request_id, "consumers": list(item.consumers)}
                for item in self.late
            ],
        }


@dataclass(frozen=True)
class RetentionCounts:
    active_holds: int
    holds_by_reason: dict[str, int]
    due_this_week: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "active_holds": self.active_holds,
            "holds_by_reason": dict(sorted(self.holds_by_reason.items())),
            "due_this_week": self.due_this_week,
        }


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything `contactflow status` shows; `None` sections could not be read (a
    problem says why)."""

    as_of: datetime
    max_lag: int
    broker: BrokerHealth
    groups: tuple[GroupLag, ...] | None
    deadletters: DeadLetterCounts | None
    quarantined: int | None
    requests: RequestCounts | None
    retention: RetentionCounts | None
    problems: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON object of `contactflow status --format json`."""
        return {
            "as_of": self.as_of.isoformat(),
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
            "max_lag": self.max_lag,
            "broker": self.broker.as_dict(),
            "groups": None if self.groups is None else [g.as_dict() for g in self.groups],
            "deadletters": None if self.deadletters is None else self.deadletters.as_dict(),
            "quarantine": None if self.quarantined is None else {"events": self.quarantined},
            "requests": None if self.requests is None else self.requests.as_dict(),
            "retention": None if self.retention is None else self.retention.as_dict(),
        }


def collect_status(
    container: Container, now: datetime, *, max_lag: int = DEFAULT_MAX_LAG
) -> StatusSnapshot:
    """Read everything once; `now` is the clock for deadlines and the retention window."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    broker = broker_health(container)
    problems += broker_problems(broker)
    warnings += broker_warnings(broker)
    ledger_problem = ledger_unavailable(container)
    if ledger_problem is not None:
        problems.append(ledger_problem)
    groups = deadletters = quarantined = None
    if broker.reachable:
        try:
            groups = tuple(consumer_lag(container))
            if not _missing(container, broker, CONTACT_QUARANTINE):
                quarantined = count_quarantined(container)
            # the dead letters replayed before are known from the ledger's audit log
            if ledger_problem is None and not _missing(container, broker, CONTACT_DEADLETTER):
                deadletters = count_deadletters(container)
        except (KafkaException, ContactflowError) as exc:
            problems.append(Problem(BROKER_UNREADABLE, f"reading the broker failed: {_why(exc)}"))
    if groups is not None:
        problems += lag_problems(groups, max_lag)
    requests = retention = None
    if ledger_problem is None:
        requests, retention = read_ledger(container, now)
        problems += request_problems(requests)
    return StatusSnapshot(
        as_of=now, max_lag=max_lag, broker=broker, groups=groups, deadletters=deadletters,
        quarantined=quarantined, requests=requests, retention=retention,
        problems=tuple(problems), warnings=tuple(warnings),
    )  # fmt: skip


# -- the broker ----------------------------------------------------------------------------


def broker_health(container: Container) -> BrokerHealth:
    """Reachable within CONTACTFLOW_CONNECT_TIMEOUT_S? Then its nodes and the drift from
    `infra/topics.yaml` (what `topics check` reports)."""
    from streams.topics import plan

    settings = container.settings
    declared = len(container.topics.specs)
    why = broker_answers(settings, settings.connect_timeout_s)
    if why is not None:
        return BrokerHealth(settings.bootstrap, False, why, topics_declared=declared)
    version, expected = _local_broker(container)
    admin = container.admin()
    try:
        cluster = admin.describe_cluster(request_timeout=ADMIN_TIMEOUT_S).result()
        drift = tuple(str(change) for change in plan(admin, container.topics).changes)
    except (KafkaException, ContactflowError) as exc:
        return BrokerHealth(settings.bootstrap, False, _why(exc), topics_declared=declared)
    nodes = tuple(sorted((BrokerNodeInfo(n.id, n.host, n.port) for n in cluster.nodes),
                         key=lambda node: node.node_id))  # fmt: skip
    controller = cluster.controller.id if cluster.controller is not None else None
    return BrokerHealth(
        settings.bootstrap, True, None, cluster.cluster_id, controller, nodes, expected,
        version, declared, drift,
    )  # fmt: skip


def _local_broker(container: Container) -> tuple[str | None, int | None]:
    """The pinned Kafka version and node count of the broker `contactflow broker up` runs
    from this data directory, when the clients talk to it; (None, None) otherwise (a
    broker elsewhere does not tell its version to clients)."""
    from streams.ops.broker import Broker

    try:
        broker = Broker(container.settings)
        layout = broker.layout
        running = broker.pid() is not None
    except ContactflowError:  # no pinned distribution or an unreadable layout here
        return None, None
    mine = {node.bootstrap for node in layout.nodes}
    asked = {_address(a) for a in container.settings.bootstrap.split(",") if a.strip()}
    if not mine & asked or not running:
        return None, None
    return broker.distribution.version, len(layout.nodes)


def _address(address: str) -> str:
    host, _, port = address.strip().rpartition(":")
    return f"{'127.0.0.1' if host in {'', 'localhost'} else host}:{port}"


def broker_problems(broker: BrokerHealth) -> list[Problem]:
    if not broker.reachable:
        return [Problem(BROKER_UNREACHABLE, f"cannot reach Kafka at {broker.bootstrap} "
                        f"({broker.error}); start it with `contactflow broker up`, or set "
                        "CONTACTFLOW_BOOTSTRAP_SERVERS")]  # fmt: skip
    if broker.drift:
        return [Problem(TOPIC_DRIFT, f"{len(broker.drift)} topic drift(s) from "
                        "infra/topics.yaml; see `contactflow topics check`, fix with "
                        "`contactflow topics apply`")]  # fmt: skip
    return []


def broker_warnings(broker: BrokerHealth) -> list[Problem]:
    if broker.reachable and broker.expected_nodes and len(broker.nodes) < broker.expected_nodes:
        return [Problem(BROKER_DEGRADED, f"{len(broker.nodes)} of {broker.expected_nodes} "
                        "nodes answer; see `contactflow broker status`")]  # fmt: skip
    return []


# -- lag, dead letters, quarantine ---------------------------------------------------------


def lag_problems(groups: tuple[GroupLag, ...], max_lag: int) -> list[Problem]:
    """One problem per group and topic whose lag (over its partitions) exceeds `max_lag`."""
    return [
        Problem(LAG_OVER_THRESHOLD,
                f"{group.group_id} lags {topic.lag:,} on {topic.topic} (over {max_lag:,})")
        for group in groups
        for topic in group.topics
        if topic.lag > max_lag
    ]  # fmt: skip


def count_deadletters(container: Container) -> DeadLetterCounts:
    from streams.ops.deadletters import DeadLetters

    summary = DeadLetters(container, actor="status").summarise()
    rows = tuple((t, s, r, n) for (t, s, r), n in sorted(summary.counts.items()))
    return DeadLetterCounts(summary.total, summary.replayed, rows)


def count_quarantined(container: Container) -> int:
    """Events now on the quarantine topic (tombstones aside)."""
    from streams.kafka.readback import read_all

    topic = container.topics.name(CONTACT_QUARANTINE)
    messages = read_all(container.settings.kafka_client_config(), topic)
    return sum(1 for message in messages if message.value() is not None)


def _missing(container: Container, broker: BrokerHealth, logical: str) -> bool:
    """The declared topic is not on the broker (a drift already reported)."""
    created = f"{container.topics.name(logical)}: create "
    return any(line.startswith(created) for line in broker.drift or ())


# -- the ledger ----------------------------------------------------------------------------


def ledger_unavailable(container: Container) -> Problem | None:
    """None when the ledger can be read at its current schema; else the problem, in one
    line (the database's own message is never quoted: it may carry the URL)."""
    from streams.ledger import current_revision, head_revision

    try:
        revision = current_revision(container.ledger_engine)
    except (OperationalError, ProgrammingError) as exc:
        return Problem(LEDGER_UNAVAILABLE, f"the ledger cannot be read "
                       f"({type(exc.orig).__name__}); check CONTACTFLOW_DATABASE_URL")  # fmt: skip
    if revision is None:
        return Problem(
            LEDGER_UNAVAILABLE, "the ledger was never migrated; run `contactflow ledger upgrade`"
        )
    if revision != head_revision():
        return Problem(LEDGER_UNAVAILABLE, f"the ledger is at revision {revision}, this code "
                       "needs a newer one; run `contactflow ledger upgrade`")  # fmt: skip
    return None


def read_ledger(container: Container, now: datetime) -> tuple[RequestCounts, RetentionCounts]:
    from streams.control.privacy.evidence import open_status
    from streams.ledger import RetentionLedger, session_factory

    with session_factory(container.ledger_engine)() as session:
        rows = open_status(session, now)
        ledger = RetentionLedger(session)
        holds = ledger.active_holds()
        due = ledger.report(now).total("due_soon")
    requests = RequestCounts(
        open=len(rows),
        by_state=dict(Counter(row.state for row in rows)),
        overdue=tuple(row.request_id for row in rows if row.overdue),
        late=tuple(LateConsumers(r.request_id, r.late_consumers) for r in rows if r.late_consumers),
    )
    reasons = Counter(hold.reason for hold in holds)
    return requests, RetentionCounts(len(holds), dict(reasons), due)


def request_problems(requests: RequestCounts) -> list[Problem]:
    problems = [
        Problem(REQUEST_OVERDUE, f"request {request_id} is past its deadline")
        for request_id in requests.overdue
    ]
    problems += [
        Problem(
            CONSUMER_LATE,
            f"request {item.request_id}: {', '.join(item.consumers)} past the answer deadline",
        )
        for item in requests.late
    ]
    return problems


def _why(exc: Exception) -> str:
    """A Kafka error's name (`_TIMED_OUT`, `GROUP_AUTHORIZATION_FAILED`) or our message."""
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        name = getattr(error, "name", None)
        return str(name()) if callable(name) else str(error)
    return str(exc)
