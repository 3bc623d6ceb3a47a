"""Every lookup of the router's hot path and of the privacy app reads through an index, on
every backend: an index dropped, or a query no index serves, fails here (issue 15).

Each lookup runs for real on a small ledger filled through the ledger's own write path;
its statements are caught as sent and explained. SQLite (no statistics, as in use) must
SEARCH each table by an index or key, never SCAN it. PostgreSQL, with sequential scans,
hash and merge joins priced out, must reach each table by an index condition.

Left out, as known full reads of privacy_requests (a table of every request ever made, not
of subjects): `open_requests`, `overdue`, `count_open` (`state NOT IN` the closed states,
which no index serves) and `for_subject` (unused by the app, filters in Python).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from processors import privacy
from processors.privacy_commands import ConsumerCommand
from processors.routing import SubjectStatus
from streams.ledger import (
    AuditLog,
    KeyVault,
    NewHold,
    NewRecording,
    PrivacyRequests,
    RetentionLedger,
    SubjectIndex,
    create_ledger_engine,
    session_factory,
    upgrade,
)
from streams.ledger import hotpath as hp
from streams.ledger.records import Command, Outcome
from streams.ledger.subject_state import SubjectStates
from streams.ledger.subjects import subject_family

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=40)
SUBJECTS = 12
ACTIVE_HOLDS = 100
ANSWERED_REQUESTS = 100
Lookup = Callable[[Session], object]


def _digest(n: int, kind: str = "phone") -> str:
    return hashlib.sha256(f"test-identifier:{kind}-{n}".encode()).hexdigest()


def _subject(n: int) -> str:
    return "s-" + hashlib.sha256(f"subject-{n}".encode()).hexdigest()[:32]


def _recording(n: int) -> NewRecording:
    return NewRecording(
        recording_id=f"rec-{n}", contact_id=f"c-{n}", subject_pseudonym=_subject(n),
        controller="ORES", purpose="contact_handling", channel="phone",
        recording_kind="call_audio", ended_at=T0, retain_until=T0 + timedelta(days=30),
        policy_version="v1",
    )  # fmt: skip


def _command(n: int, consumer: str) -> ConsumerCommand:
    return ConsumerCommand(command_id=f"cmd-{n}-{consumer}", request_id=f"dsr-{n}",
                           consumer=consumer, command=Command.ERASE,
                           subject_pseudonym=_subject(n), controller="ORES", issued_at=T0,
                           answer_by=T0 + timedelta(days=2))  # fmt: skip


def _fill(engine: Engine) -> None:
    """Subjects, keys and footprints as the router writes them, a merge, recordings, holds,
    requests with commands, audit entries and a privacy state; PostgreSQL analysed."""
    sessions = session_factory(engine)
    numbers = range(SUBJECTS)
    with sessions.begin() as session:
        identifiers = [(_digest(n), "phone", _subject(n)) for n in numbers]
        identifiers += [(_digest(n, "email"), "email", _subject(n)) for n in numbers]
        hp.add_subjects(session, {_subject(n): _digest(n) for n in numbers}, identifiers, T0)
        hp.add_keys(session, [(f"k-{n}", _subject(n), bytes(60)) for n in numbers],
                    "AES-256-GCM", T0)  # fmt: skip
        hp.add_footprints(session, {(_subject(n), "ORES", "phone") for n in numbers}, T0)
    with sessions.begin() as session:
        assert hp.link_groups(session, [[("phone", _digest(1)), ("phone", _digest(2))]], T0)
        retention = RetentionLedger(session)
        for n in numbers:
            retention.register(_recording(n), T0)
        for n, (scope, target) in enumerate(
            [("subject", _subject(3)), ("contact", "c-4"), ("recording", "rec-5")]
        ):
            retention.place_hold(NewHold(hold_id=f"hold-{n}", scope=scope, target=target,
                                         reason="dispute", reference="CASE-1",
                                         placed_by="dpo"), T0)  # fmt: skip
        for n in range(ACTIVE_HOLDS):  # holds on others' contacts, as a ledger in use has
            retention.place_hold(NewHold(hold_id=f"hold-c-{n}", scope="contact",
                                         target=f"c-other-{n}", reason="complaint",
                                         reference="CASE-2", placed_by="dpo"), T0)  # fmt: skip
        requests, audit = PrivacyRequests(session), AuditLog(session)
        for n in range(3, 6):
            step = privacy.submit(f"dsr-{n}", "erasure", T0, "dpo", T0)
            requests.submit(step, [("phone", _digest(n))], "test", T0)
            requests.add_commands([_command(n, "crm"), _command(n, "warehouse")], "test", T0)
            audit.append("test", "request.submitted", T0, request_id=f"dsr-{n}")
            audit.append("test", "dead_lettered", T0, subject=_subject(n))
        for n in range(20, 20 + ANSWERED_REQUESTS):  # most commands have their answer
            step = privacy.submit(f"dsr-{n}", "erasure", T0, "dpo", T0)
            requests.submit(step, [("phone", _digest(n))], "test", T0)
            for command in requests.add_commands([_command(n, "crm")], "test", T0):
                answer = replace(command, outcome=Outcome.DONE, answered_at=T0)
                requests.update_command(command, answer, "answered", "test", T0)
        SubjectStates(session).set_status(_subject(4), SubjectStatus(restricted=True), "dsr-4",
                                          T0)  # fmt: skip
    if engine.dialect.name == "postgresql":  # statistics, as autovacuum keeps them
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


def _erase(session: Session) -> None:
    """What an erasure does: the subject's recordings and the holds covering them (one held,
    restricted; one of another subject deleted), footprints, keys, digests."""
    subject = _subject(3)
    retention = RetentionLedger(session)
    theirs = retention.recordings_for("subject", subject)
    retention.covering_holds(theirs)
    retention.record_restriction("rec-3", LATER, "hold-0", {"erasure_request": "dsr-3"})
    retention.erase_recording("rec-6", LATER, "dsr-3")
    retention.history("rec-3")
    states = SubjectStates(session)
    states.forget_footprints([subject], ["ORES"])
    KeyVault(session).shred_subject(subject, LATER)
    SubjectIndex(session).mark_erased(subject, LATER)
    states.forget_identifiers([subject])


def _answer(session: Session) -> None:
    requests = PrivacyRequests(session)
    before = requests.get_command("cmd-3-crm")
    assert before is not None
    requests.update_command(before, replace(before, attempt=2), "resent", "test", LATER)


def _new_request(session: Session) -> None:
    requests = PrivacyRequests(session)
    step = privacy.submit("dsr-new", "erasure", LATER, "dpo", LATER)
    stored, _ = requests.submit(step, [("phone", _digest(7))], "test", LATER)
    requests.apply(privacy.verify(stored, "id_card_copy", LATER), "test", LATER)
    requests.identifiers("dsr-new")


def _pseudonym(first_digest: str) -> str:
    return "s-" + first_digest[:32]


LOOKUPS: dict[str, Lookup] = {
    # the router's hot path (streams/router/directory.py over streams/ledger/hotpath.py)
    "owners_of": lambda s: hp.owners_of(s, [_digest(7), _digest(99)]),
    "subjects_state": lambda s: hp.subjects_state(s, [_subject(7), _subject(99)]),
    "aliases_among": lambda s: hp.aliases_among(s, [_subject(2), _subject(99)]),
    "live_keys": lambda s: hp.live_keys(s, [_subject(7)]),
    "link_groups": lambda s: hp.link_groups(
        s, [[("phone", _digest(7)), ("phone", _digest(8))]], LATER
    ),
    "resolve_or_create": lambda s: SubjectIndex(s).resolve_or_create(
        [("phone", _digest(9)), ("phone", _digest(10))], _pseudonym, LATER
    ),
    "unused_pseudonym": lambda s: SubjectIndex(s).unused_pseudonym(
        _digest(2), lambda digest, generation: _pseudonym(f"{generation:x}{digest}")
    ),
    # the privacy app: resolution
    "lookup": lambda s: SubjectIndex(s).lookup(_digest(7)),
    "footprints": lambda s: SubjectStates(s).footprints([_subject(1), _subject(7)]),
    "subject_family": lambda s: subject_family(s, [_subject(2)]),
    "recordings_for": lambda s: RetentionLedger(s).recordings_for(
        "subject", _subject(1), include_expired=True
    ),
    # execution
    "erasure": _erase,
    "subject status": lambda s: SubjectStates(s).set_status(
        _subject(4), SubjectStatus(restricted=True, erased=True), "dsr-4", LATER
    ),
    "keys": lambda s: (KeyVault(s).get("k-7"), KeyVault(s).keys_for(_subject(7))),
    # requests, commands, deadlines
    "submit and apply": _new_request,
    "commands": lambda s: PrivacyRequests(s).commands("dsr-3"),
    "events": lambda s: PrivacyRequests(s).events("dsr-3"),
    "commands_needing_attention": lambda s: PrivacyRequests(s).commands_needing_attention(LATER),
    "update_command": _answer,
    # audit log: appending, a request's entries, the request cut's dead-letter lookups
    "audit append": lambda s: AuditLog(s).append(
        "test", "request.resolved", LATER, request_id="dsr-3"
    ),
    "audit of a request": lambda s: AuditLog(s).entries(request_id="dsr-3"),
    "audit action of a request": lambda s: AuditLog(s).entries(
        request_id="dsr-3", action="dead_lettered"
    ),
    "audit action": lambda s: AuditLog(s).entries(action="dead_lettered"),
    "audit of a subject": lambda s: AuditLog(s).entries(subject=_subject(3)),
}
# the indexes of migration 0006, and the lookups that read through them
NARROWED_BY = {
    "erasure": "ix_holds_target_released_at",  # the active holds naming the subject only
    "commands_needing_attention": "ix_request_commands_outcome_escalated_at",
    "audit action": "ix_audit_log_action_request_id",
}
_NOT_EXPLAINED = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "PRAGMA")


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Engine]:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        _fill(engine)
        yield engine
    finally:
        engine.dispose()


def _statements(engine: Engine, lookup: Lookup) -> list[tuple[str, Any]]:
    """The statements `lookup` sends (first parameter set of each), its changes undone."""
    sent: list[tuple[str, Any]] = []

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:  # fmt: skip
        params = parameters[0] if executemany and parameters else parameters
        sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", catch)
    try:
        with session_factory(engine)() as session:
            session.begin()
            lookup(session)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", catch)
    return [
        (statement, params)
        for statement, params in sent
        if not statement.lstrip().upper().startswith(_NOT_EXPLAINED)
        and "pg_advisory" not in statement
        and not statement.lstrip().upper().startswith("INSERT")
    ]


def _sqlite_problems(statement: str, plan: list[str]) -> list[str]:
    """SCAN lines: a table (or a whole index) read end to end. One walk in key order that
    stops at a LIMIT (no WHERE, no sort) reads only that many rows, and is let through."""
    bounded = " LIMIT " in statement and " WHERE " not in statement
    bounded = bounded and not any("TEMP B-TREE" in line for line in plan)
    return [line for line in plan if line.startswith("SCAN") and not bounded]


def _postgresql_problems(plan: dict[str, Any], parent: str = "") -> list[str]:
    """Nodes reading a table with no index condition (a LIMIT over a keyed walk excepted)."""
    problems = []
    node = str(plan["Node Type"])
    if "Relation Name" in plan and node != "ModifyTable":
        indexed = node == "Bitmap Heap Scan" or "Index Cond" in plan
        if not indexed and not (parent == "Limit" and node.startswith("Index")):
            problems.append(f"{node} on {plan['Relation Name']}")
    for child in plan.get("Plans", []):
        problems += _postgresql_problems(child, node)
    return problems


def test_hot_path_and_privacy_lookups_read_through_an_index(ledger: Engine) -> None:
    sent = {name: _statements(ledger, lookup) for name, lookup in LOOKUPS.items()}
    assert [name for name, statements in sent.items() if not statements] == []
    problems: list[str] = []
    used: dict[str, str] = {name: "" for name in sent}
    backend = ledger.dialect.name
    with ledger.connect() as connection:
        if backend == "postgresql":
            for planner_option in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                connection.exec_driver_sql(f"SET {planner_option} = off")
        for name, statements in sent.items():
            for statement, params in statements:
                if backend == "sqlite":
                    rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                    plan = [str(row[-1]) for row in rows]
                    found = _sqlite_problems(statement, plan)
                    used[name] += " ".join(plan)
                else:
                    rows = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params)
                    document = rows.scalar_one()
                    tree = json.loads(document) if isinstance(document, str) else document
                    found = _postgresql_problems(tree[0]["Plan"])
                    used[name] += json.dumps(tree)
                if found:
                    short = " ".join(statement.split())[:160]
                    problems.append(f"{name}: {short} -> {'; '.join(found)}")
    assert problems == []
    assert {name: index for name, index in NARROWED_BY.items() if index not in used[name]} == {}
