"""`contactflow dsr ...`: data-subject requests for the privacy office.

submit / verify / reject / instruct / extend / process / status / report / export. Each
command prints ids, states and counts; identifiers given on the command line are
normalised, digested and never printed back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from processors.identity import InvalidIdentifier
from processors.privacy import PrivacyRequest, PrivacyRequestError, RequestType
from streams.cli._app import app, console, container, err_console, kafka_container
from streams.cli.retention import Format, parse_now
from streams.errors import ContactflowError

if TYPE_CHECKING:
    from streams.bootstrap import Container
    from streams.control.privacy.service import PrivacyService

T = TypeVar("T")
dsr_app = typer.Typer(help="Data-subject requests: intake, instruction, status, evidence.",
                      no_args_is_help=True)  # fmt: skip
app.add_typer(dsr_app, name="dsr")

REQUEST_TYPES = ", ".join(t.value.replace("_", "-") for t in RequestType)


def _request_type(value: str) -> str:
    """`lift-restriction` as the README spells it, or `lift_restriction`: either is fine."""
    normalised = value.strip().lower().replace("-", "_")
    if normalised not in {t.value for t in RequestType}:
        raise typer.BadParameter(f"{value!r} is not a request type; one of {REQUEST_TYPES}")
    return normalised


class DecisionChoice(StrEnum):
    execute = "execute"
    refuse = "refuse"


def _service() -> tuple[Container, PrivacyService]:
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.service import PrivacyService
    from streams.ledger import upgrade

    root = kafka_container()
    upgrade(
        root.settings.resolved_database_url(), connect_timeout_s=root.settings.connect_timeout_s
    )
    return root, PrivacyService.from_container(
        root, load_privacy_config(root), actor="privacy-office"
    )


def _show(request: PrivacyRequest) -> None:
    console.print(f"{request.request_id}  {request.state}")
    if request.state == "identity_unverified":
        console.print(
            "next: once the requester's identity is proven, `contactflow dsr verify "
            f"{request.request_id} --by METHOD`; if it cannot be, `contactflow dsr reject "
            f"{request.request_id} --reason TEXT`"
        )


@dsr_app.command("submit")
def submit(
    request_type: Annotated[
        str,
        typer.Argument(help=f"What the person asks for: {REQUEST_TYPES}.", callback=_request_type),
    ],
    phone: Annotated[list[str] | None, typer.Option("--phone", help="Phone number.")] = None,
    email: Annotated[list[str] | None, typer.Option("--email", help="E-mail address.")] = None,
    handle: Annotated[list[str] | None, typer.Option("--handle", help="PLATFORM:HANDLE")] = None,
    customer_ref: Annotated[list[str] | None, typer.Option("--customer-ref")] = None,
    purpose: Annotated[str | None, typer.Option(help="For objection/consent-withdrawal.")] = None,
    verified_by: Annotated[str | None, typer.Option(help="How identity was proven.")] = None,
    received_at: Annotated[str | None, typer.Option(help="ISO-8601; default now.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (e.g. for lift-restriction).")] = None,
    submitted_by: Annotated[str, typer.Option()] = "privacy-office",
) -> None:
    """Record a request and print its id; without --verified-by it waits for `dsr verify`.
    Values that may not be taken in are refused before anything is reached."""
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.intake import Intake, checked, identifiers

    pairs = [("phone", v) for v in phone or []] + [("email", v) for v in email or []]
    pairs += [("social_handle", v) for v in handle or []]
    pairs += [("customer_ref", v) for v in customer_ref or []]
    now = datetime.now(UTC)
    try:
        intake = Intake(
            request_type=request_type, identifiers=identifiers(pairs),
            submitted_by=submitted_by, received_at=parse_now(received_at) if received_at else now,
            verified_by=verified_by,
            purpose=purpose, reason=reason,
        )  # fmt: skip
        intake = checked(intake, now, load_privacy_config(container()).request_purposes)
    except (InvalidIdentifier, PrivacyRequestError) as exc:
        raise ContactflowError(str(exc)) from None
    _, service = _service()
    try:
        _show(_checked(lambda: service.submit(intake, now)))
    finally:
        service.close()


@dsr_app.command("verify")
def verify(request_id: str, by: Annotated[str, typer.Option("--by")]) -> None:
    """Record the proof of identity; the request then proceeds."""
    _, service = _service()
    try:
        _show(_checked(lambda: service.verify(request_id, by, datetime.now(UTC))))
    finally:
        service.close()


@dsr_app.command("reject")
def reject(request_id: str, reason: Annotated[str, typer.Option()]) -> None:
    """Close an unverified request whose requester could not be identified."""
    _, service = _service()
    try:
        now = datetime.now(UTC)
        _show(_checked(lambda: service.reject(request_id, reason, "privacy-office", now)))
    finally:
        service.close()


@dsr_app.command("instruct")
def instruct(
    request_id: str,
    decision: Annotated[DecisionChoice, typer.Option()],
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Stand in for ORES's system: publish its instruction on privacy.instructions.v1."""
    from streams.control.privacy.messages import send_ores_instruction
    from streams.kafka.outbox import Outbox

    root = kafka_container()
    outbox = Outbox(root.settings.kafka_client_config(), root.topics, root.schemas)
    send_ores_instruction(outbox, request_id, decision.value, reason, datetime.now(UTC))
    console.print(f"instruction {decision.value} for {request_id} sent on privacy.instructions.v1")


@dsr_app.command("extend")
def extend(
    request_id: str,
    months: Annotated[int, typer.Option(min=1, max=2)],
    reason: Annotated[str, typer.Option()],
) -> None:
    """Extend the deadline by up to two months, with the reason (GDPR Art. 12(3))."""
    _, service = _service()
    try:
        now = datetime.now(UTC)
        request = _checked(lambda: service.extend(request_id, months, reason, now))
        console.print(f"{request.request_id}  due {request.deadline:%Y-%m-%d}")
    finally:
        service.close()


@dsr_app.command("process")
def process(now: Annotated[str | None, typer.Option(help="ISO-8601 clock.")] = None) -> None:
    """Apply what privacy.requests/instructions/acks hold now, then check deadlines (what
    `contactflow run privacy` does continuously)."""
    from streams.control.privacy.catchup import apply_privacy_topics

    clock = parse_now(now)
    root, service = _service()
    try:
        drained = apply_privacy_topics(root, service, clock)
        tick = service.tick(clock)
    finally:
        service.close()
    applied = ", ".join(f"{k}: {v}" for k, v in drained.applied.items())
    cut = drained.requests_cut
    console.print(f"applied {applied}; dead-lettered {drained.dead_lettered}; re-sent "
                  f"{tick.resent}; escalated {tick.escalated_commands} consumer(s), "
                  f"{tick.escalated_requests} request(s); removed {cut.removed} request "
                  "record(s) taken in")  # fmt: skip
    for partition, error in sorted(cut.refused.items()):
        err_console.print(f"privacy.requests.v1 partition {partition}: cut refused ({error}); "
                          "on a secured broker the privacy-app role needs DELETE on it "
                          "(contactflow acl apply)")  # fmt: skip
    if cut.refused:
        raise typer.Exit(1)


@dsr_app.command("status")
def status(
    now: Annotated[str | None, typer.Option(help="ISO-8601 clock.")] = None,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Open requests, earliest deadline first; overdue ones and late consumers flagged."""
    from streams.control.privacy.evidence import open_status
    from streams.ledger import session_factory

    root, _ = container(), None
    with session_factory(root.ledger_engine)() as session:
        rows = open_status(session, parse_now(now))
    if output == Format.json:
        console.print_json(json.dumps([row.__dict__ for row in rows]))
        return
    table = Table("request", "type", "state", "due", "overdue", "answers", "late consumers")
    for row in rows:
        flag = (
            ("[red]OVERDUE[/]" + (" (escalated)" if row.escalated else "")) if row.overdue else ""
        )
        table.add_row(row.request_id, row.request_type, row.state, row.deadline, flag,
                      f"{row.answered}/{row.commands}", ", ".join(row.late_consumers))  # fmt: skip
    console.print(table)
    console.print(f"open={len(rows)} overdue={sum(r.overdue for r in rows)}")


@dsr_app.command("report")
def report(
    request_id: str,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The evidence of one request: found where, instructions, answers, timings, and until
    when clear copies of the person's events can remain (raw topics, dead letters)."""
    from streams.control.privacy.evidence import render_report, request_report
    from streams.ledger import session_factory

    root = container()
    with session_factory(root.ledger_engine)() as session:
        document = _checked(
            lambda: request_report(session, request_id, datetime.now(UTC), topics=root.topics)
        )
    if output == Format.json:
        console.print_json(json.dumps(document))
    else:
        render_report(document, console.print)


@dsr_app.command("export")
def export(request_id: str, out: Annotated[Path, typer.Option("--out")]) -> None:
    """Access / portability: write every decrypted record of the subject as JSON."""
    from streams.control.privacy.export import export_subject_data

    root, service = _service()
    try:
        request = _checked(lambda: service.get(request_id))
        if request.request_type not in {RequestType.ACCESS, RequestType.PORTABILITY}:
            raise ContactflowError(f"request {request_id} is {request.request_type}, not access "
                                   "or portability")  # fmt: skip
        if request.state != "executing":
            raise ContactflowError(
                f"request {request_id} is {request.state}: an export is due only once it is "
                "verified and, for ORES data, instructed"
            )
        now = datetime.now(UTC)
        count = export_subject_data(root, request, out, now, err_console.print)
        done = service.record_export(request_id, count, now)
    finally:
        service.close()
    console.print(f"{count} record(s) written to {out}; request {done.request_id} {done.state}")


def _checked(action: Callable[[], T]) -> T:
    """Domain refusals (unknown id, a transition not allowed now) as one clear CLI error."""
    from streams.ledger import LedgerError

    try:
        return action()
    except (PrivacyRequestError, LedgerError) as exc:
        raise ContactflowError(str(exc)) from None
