"""Evidence of a data-subject request (`dsr report`) and the open requests (`dsr status`).

Built from the ledger only: the request, its history (request_events), its commands and
each consumer's answer, and its audit entries (whether its record on privacy.requests.v1
was cut). Given the topic catalog it also says until when clear copies of the person's
events can remain on the raw topics and the dead letters, from their retention. Subjects
appear by pseudonym, never by identifier; an erased subject's data cannot appear because
the report never reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from processors.privacy import PrivacyRequest, is_overdue
from processors.privacy_commands import ConsumerCommand, consumer_overdue
from schemas.topic_names import CONTACT_DEADLETTER, PRIVACY_REQUESTS, RAW_TOPICS
from streams.control.privacy.request_cut import REMOVED_ACTION
from streams.ledger import AuditLog, PrivacyRequests, UnknownRequestError
from streams.topics import TopicCatalog, TopicSpec

_ISO = "%Y-%m-%dT%H:%M:%SZ"
# Kafka's defaults behind the latest deletion time, unless a topic declares segment.ms:
# a segment rolls after log.roll.hours (168), retention is checked every
# log.retention.check.interval.ms (5 min), a record may be dated up to
# message.timestamp.after.max.ms (1 h) ahead of the broker's clock.
KAFKA_SEGMENT_MS = 7 * 86_400_000
KAFKA_CHECK_MS = 300_000
KAFKA_AHEAD_MS = 3_600_000


def _at(value: datetime | None) -> str | None:
    return None if value is None else value.strftime(_ISO)


def request_report(
    session: Session, request_id: str, now: datetime, *, topics: TopicCatalog | None = None
) -> dict[str, Any]:
    """Everything done for one request, as plain JSON-ready values; with `topics`, also
    until when clear copies of the person's events can remain (`clear_copies`)."""
    requests = PrivacyRequests(session)
    request = requests.get(request_id)
    if request is None:
        raise UnknownRequestError(request_id)
    events = requests.events(request_id)
    commands = requests.commands(request_id)
    resolved = next((e.details for e in events if e.event == "resolved"), {})
    executed = [dict(e.details, at=_at(e.at)) for e in events if e.event == "executed"]
    instructions = [
        {"event": e.event, "at": _at(e.at), "by": request.decided_by or e.actor, **dict(e.details)}
        for e in events if e.event in {"instructed", "instruction_not_applicable"}
    ]  # fmt: skip
    return {
        "request": _request(request, now),
        "found": {k: v for k, v in resolved.items() if k not in {"policy_version",
                                                                 "consumers_version"}},
        "versions": {"policy": resolved.get("policy_version"),
                     "consumers": resolved.get("consumers_version")},
        "instructions": instructions,
        "execution": executed,
        "consumers": [_command(c, now) for c in commands],
        "answers": dict(Counter(c.outcome.value if c.outcome else "pending" for c in commands)),
        "timings": _timings(request, commands),
        "history": [{"at": _at(e.at), "event": e.event, "state": e.state, "actor": e.actor}
                    for e in events],
        "request_record": request_record(session, request_id),
        **({} if topics is None else {"clear_copies": clear_copies(topics, request.closed_at)}),
    }  # fmt: skip


def request_record(session: Session, request_id: str) -> dict[str, Any]:
    """Whether the request came as a record of privacy.requests.v1 (its identifiers in
    clear) and when that record was removed, from the audit log."""
    entries = AuditLog(session).entries(request_id=request_id)
    via = next((str(e.details["via"]) for e in entries if e.details.get("via")), None)
    removed = [e.at for e in entries if e.action == REMOVED_ACTION]
    return {"topic": PRIVACY_REQUESTS, "via_topic": via == PRIVACY_REQUESTS,
            "removed_at": _at(min(removed)) if removed else None,
            "records_removed": len(removed)}  # fmt: skip


def clear_copies(topics: TopicCatalog, closed_at: datetime | None) -> dict[str, Any]:
    """Until when clear copies of the person's events can remain where crypto-shredding
    does not reach: the raw topics (events before the router encrypted them) and the dead
    letters (original bytes). Kafka deletes a record no sooner than retention.ms after its
    timestamp, and no later than when its whole segment is past that: for events written
    before `closed_at`, by `gone_by`. contactflow does not keep when a person's last
    event arrived, so the bound counts from the request's completion."""
    raw = [s for s in topics.specs if s.name in RAW_TOPICS]
    dead = _window([topics.spec(CONTACT_DEADLETTER)], closed_at)
    return {"raw_topics": _window(raw, closed_at),
            "dead_letters": {**dead, "purge": "contactflow deadletters purge --older-than AGE"},
            "basis": "retention.ms of each topic (infra/topics.yaml); segment.ms of the topic "
                     "or Kafka's default (7 d), retention checks every 5 min, record times up "
                     "to 1 h ahead (Kafka's defaults)"}  # fmt: skip


def _window(specs: Sequence[TopicSpec], closed_at: datetime | None) -> dict[str, Any]:
    retentions = [int(s.configs.get("retention.ms", "-1")) for s in specs]
    retention = None if any(r < 0 for r in retentions) else max(retentions)
    declared = [int(s.configs["segment.ms"]) for s in specs if "segment.ms" in s.configs]
    segment = max([*declared, *([KAFKA_SEGMENT_MS] if len(declared) < len(specs) else [])])
    within = None if retention is None else retention + segment + KAFKA_CHECK_MS + KAFKA_AHEAD_MS
    gone_by = None if within is None or closed_at is None else closed_at + timedelta(
        milliseconds=within)  # fmt: skip
    return {"topics": sorted(s.name for s in specs), "retention_ms": retention,
            "segment_ms": segment, "gone_within_ms": within,
            "written_before": _at(closed_at), "gone_by": _at(gone_by)}  # fmt: skip


def _request(request: PrivacyRequest, now: datetime) -> dict[str, Any]:
    return {
        "request_id": request.request_id, "type": request.request_type.value,
        "state": request.state.value, "purpose": request.purpose,
        "received_at": _at(request.received_at), "verified_by": request.verified_by,
        "verified_at": _at(request.verified_at), "due_at": _at(request.due_at),
        "extended_until": _at(request.extended_until),
        "extension_reason": request.extension_reason,
        "overdue": is_overdue(request, now), "escalated_at": _at(request.escalated_at),
        "subjects": list(request.subjects), "controllers": sorted(request.controllers),
        "decision": None if request.decision is None else request.decision.value,
        "decision_source": None if request.decision_source is None
        else request.decision_source.value,
        "decision_reason": request.decision_reason, "decided_by": request.decided_by,
        "decided_at": _at(request.decided_at), "closed_at": _at(request.closed_at),
    }  # fmt: skip


def _command(command: ConsumerCommand, now: datetime) -> dict[str, Any]:
    return {
        "consumer": command.consumer, "command": command.command.value,
        "controller": command.controller, "subject": command.subject_pseudonym,
        "attempts": command.attempt, "issued_at": _at(command.issued_at),
        "answer_by": _at(command.answer_by),
        "outcome": None if command.outcome is None else command.outcome.value,
        "reason": command.reason, "answered_at": _at(command.answered_at),
        "overdue": consumer_overdue(command, now), "escalated_at": _at(command.escalated_at),
    }  # fmt: skip


def _timings(request: PrivacyRequest, commands: list[ConsumerCommand]) -> dict[str, Any]:
    accepted = request.verified_at
    issued = max((c.issued_at for c in commands), default=None)
    answered = [c.answered_at for c in commands if c.answered_at is not None]
    last_answer = max(answered) if answered and len(answered) == len(commands) else None
    return {
        "accepted_at": _at(accepted),
        "commands_emitted_s": _seconds(accepted, issued),
        "all_answers_s": _seconds(accepted, last_answer),
        "closed_s": _seconds(accepted, request.closed_at),
    }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


@dataclass(frozen=True)
class StatusRow:
    request_id: str
    request_type: str
    state: str
    deadline: str
    overdue: bool
    escalated: bool
    answered: int
    commands: int
    late_consumers: tuple[str, ...]


def open_status(session: Session, now: datetime) -> list[StatusRow]:
    """Open requests, earliest deadline first, with their consumers' progress."""
    requests = PrivacyRequests(session)
    rows = []
    for request in requests.open_requests():
        commands = requests.commands(request.request_id)
        late = tuple(sorted({c.consumer for c in commands if consumer_overdue(c, now)}))
        rows.append(StatusRow(
            request.request_id, request.request_type.value, request.state.value,
            request.deadline.strftime(_ISO), is_overdue(request, now),
            request.escalated_at is not None, sum(c.settled for c in commands), len(commands),
            late,
        ))  # fmt: skip
    return rows


def render_report(report: dict[str, Any], say: Callable[[str], None]) -> None:
    """The report as text for a person (the privacy office, the controller)."""
    r = report["request"]
    say(f"request {r['request_id']} ({r['type']}) - {r['state']}")
    proven = (
        f"identity proven by {r['verified_by']} at {r['verified_at']}"
        if r["verified_by"]
        else "identity not proven yet"
    )
    due = r["extended_until"] or r["due_at"]
    say(f"  received {_or_not_yet(r['received_at'])}, {proven}; due {_or_not_yet(due)}"
        f"{' (OVERDUE)' if r['overdue'] else ''}")  # fmt: skip
    say(f"  subjects: {len(r['subjects'])}; controllers: {', '.join(r['controllers']) or '-'}")
    found = report["found"]
    for key, value in found.items():
        if key.startswith("found."):
            say(f"  data of {key.removeprefix('found.')} from channel(s): {value or '-'}")
    inferred = found.get("controller_inferred")
    note = "; controller inferred (quarantined data only)" if inferred else ""
    say(f"  recordings: {found.get('recordings', 0)}, of which held: "
        f"{found.get('recordings_held', 0)}{note}")  # fmt: skip
    versions = report["versions"]
    say(f"  policy {_or_not_yet(versions['policy'], 'not recorded yet')}, consumer "
        f"registry {_or_not_yet(versions['consumers'], 'not recorded yet')}")  # fmt: skip
    for item in report["instructions"]:
        say(f"  instruction: {item.get('decision', '-')} by {item['by']} at {item['at']}"
            f"{' - ' + item['reason'] if item.get('reason') else ''}")  # fmt: skip
    if r["decision"]:
        say(f"  decision: {r['decision']} ({r['decision_source']})"
            f"{' - ' + r['decision_reason'] if r['decision_reason'] else ''}")  # fmt: skip
    for step in report["execution"]:
        facts = ", ".join(f"{k}={v}" for k, v in step.items() if k != "at")
        say(f"  executed at {step['at']}: {facts}")
    for c in report["consumers"]:
        answer = c["outcome"] or ("OVERDUE" if c["overdue"] else "pending")
        say(f"  {c['consumer']:<20} {c['command']:<16} {c['controller']:<9} "
            f"attempt {c['attempts']}  {answer}{' - ' + c['reason'] if c['reason'] else ''}"
            f"  {c['answered_at'] or ''}")  # fmt: skip
    t = report["timings"]
    emitted = _seconds_text(t["commands_emitted_s"])
    answered = _seconds_text(t["all_answers_s"])
    say(f"  timings after acceptance: commands emitted {emitted}, all answers {answered}, "
        f"closed {_seconds_text(t['closed_s'])}")  # fmt: skip
    _render_record(report["request_record"], say)
    if "clear_copies" in report:
        _render_copies(report["clear_copies"], say)


def _or_not_yet(value: object, missing: str = "not yet") -> str:
    """A field of the report as text: never `None` in front of a person."""
    return missing if value is None or value == "" else str(value)


def _seconds_text(value: object) -> str:
    return "not yet" if value is None else f"{value} s"


def _render_record(record: dict[str, Any], say: Callable[[str], None]) -> None:
    if record["removed_at"]:
        say(f"  request record on {record['topic']}: removed at {record['removed_at']}, "
            "once the ledger had taken it in (identifiers kept only as keyed digests)")  # fmt: skip
    elif record["via_topic"]:
        say(f"  request record on {record['topic']}: not removed yet (cut once the ledger "
            "holds it and every record before it)")  # fmt: skip
    else:
        say(f"  request record on {record['topic']}: none recorded (submitted directly, "
            "`dsr submit`)")  # fmt: skip


def _render_copies(copies: dict[str, Any], say: Callable[[str], None]) -> None:
    raw, dead = copies["raw_topics"], copies["dead_letters"]
    before = raw["written_before"] or "completion (not yet)"
    say(f"  clear copies of the person's events written before {before}:")
    dead_label = f"dead letters ({', '.join(dead['topics'])}, original bytes)"
    for label, window in (("raw topics " + ", ".join(raw["topics"]), raw), (dead_label, dead)):
        if window["retention_ms"] is None:
            say(f"    {label}: kept (no retention)")
            continue
        by = window["gone_by"] or f"completion + {_span(window['gone_within_ms'])}"
        say(f"    {label}: kept at least {_span(window['retention_ms'])} after each was "
            f"written (retention.ms), gone by {by} at the latest (+ segment "
            f"{_span(window['segment_ms'])}, Kafka's checks)")  # fmt: skip
    say(f"    `{dead['purge']}` deletes dead letters sooner")


def _span(ms: int) -> str:
    """A duration in days, hours and minutes, e.g. `10 d 1 h 5 min`."""
    minutes = ms // 60_000
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{v} {u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "min")) if v]
    return " ".join(parts) or f"{ms} ms"
