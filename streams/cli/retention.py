"""`contactflow hold place | release | list` and `contactflow retention sweep | report`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from processors.identity import InvalidIdentifier
from processors.policy import HOLD_REASONS
from streams.bootstrap import Container
from streams.cli._app import app, console, container, err_console, kafka_container
from streams.errors import ContactflowError
from streams.ledger.errors import UnknownRecordingError

if TYPE_CHECKING:
    from streams.control.retention.service import RetentionService

hold_app = typer.Typer(help="Legal holds on recordings (they outrank expiry and erasure).",
                       no_args_is_help=True)  # fmt: skip
retention_app = typer.Typer(help="Recording retention: expiry and reporting.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(hold_app, name="hold")
app.add_typer(retention_app, name="retention")

HoldReason = StrEnum("HoldReason", {r: r for r in HOLD_REASONS})  # type: ignore[misc]


class Format(StrEnum):
    table = "table"
    json = "json"


def parse_now(value: str | None) -> datetime:
    """`--now` as an aware UTC datetime (ISO-8601 with a zone); the real clock if absent."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("expected ISO-8601, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise typer.BadParameter("the time needs a zone, e.g. ...T00:00:00Z or +01:00")
    return moment.astimezone(UTC)


def _service(*, kafka: bool = True) -> tuple[Container, RetentionService]:
    """The retention service; `kafka=False` for commands that only read the ledger."""
    from streams.control.retention.service import RetentionService
    from streams.router.worker import load_policy

    root = kafka_container() if kafka else container()
    return root, RetentionService.from_container(
        root, actor="cli", grace_days=load_policy(root).release_grace_days
    )


@hold_app.command("place")
def hold_place(
    reason: Annotated[HoldReason, typer.Option(help="Why the recordings must be kept.")],
    ref: Annotated[str, typer.Option(help="Case or ticket reference (no personal data).")],
    recording: Annotated[str | None, typer.Option(help="Hold one recording.")] = None,
    contact: Annotated[str | None, typer.Option(help="Hold every recording of a contact.")] = None,
    subject_of: Annotated[
        str | None,
        typer.Option(
            help="Hold every recording of the person with this identifier "
            "(phone, e-mail, platform:handle, customer:REF)."
        ),
    ] = None,
    by: Annotated[str, typer.Option(help="Who places the hold.")] = "operator",
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
) -> None:
    """Place a legal hold by hand; covered recordings move to recordings.hold.v1."""
    chosen = [(s, t) for s, t in (("recording", recording), ("contact", contact),
                                  ("subject", subject_of)) if t]  # fmt: skip
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --recording, --contact, --subject-of")
    scope, target = chosen[0]
    root, service = _service()
    if scope == "subject":
        from streams.subjects import parse_identifier
        from streams.subjects import subject_of as find_subject

        try:
            pseudonym = find_subject(root, parse_identifier(target))
        except InvalidIdentifier as exc:
            raise typer.BadParameter(str(exc), param_hint="--subject-of") from None
        if pseudonym is None:
            err_console.print("no subject is known with that identifier; nothing held")
            raise typer.Exit(1)
        target = pseudonym
    try:
        hold, moved = service.place_hold(scope, target, reason.value, ref, by, parse_now(now))
    except UnknownRecordingError:
        raise ContactflowError(
            f"no recording {target} is registered; nothing held (a recording still on its "
            "way is held on arrival by a hold on its --contact or --subject-of)"
        ) from None
    finally:
        service.close()
    console.print(f"placed hold {hold.hold_id} ({hold.reason}) on {scope}: "
                  f"{moved} recording(s) moved to hold")  # fmt: skip


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[str, typer.Argument(help="The hold to release.")],
    reason: Annotated[str, typer.Option(help="Why the hold is no longer needed.")],
    by: Annotated[str, typer.Option(help="Who releases the hold.")] = "operator",
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
) -> None:
    """Release a hold; recordings no other hold covers return to standard retention."""
    _, service = _service()
    try:
        returned = service.release_hold(hold_id, reason, by, parse_now(now))
    finally:
        service.close()
    console.print(f"released {hold_id}: {len(returned)} recording(s) back to standard "
                  "retention (release + grace period)")  # fmt: skip


@hold_app.command("list")
def hold_list(format: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Active holds."""
    from streams.ledger import RetentionLedger, session_factory

    root = container()
    with session_factory(root.ledger_engine)() as session:
        holds = RetentionLedger(session).active_holds()
    if format is Format.json:
        rows = [
            {"hold_id": h.hold_id, "scope": h.scope, "target": h.target, "reason": h.reason,
             "reference": h.reference, "source": h.source, "placed_at": h.placed_at.isoformat()}
            for h in holds
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("hold", "scope", "target", "reason", "reference", "source", "placed at")
    for index in (0, 2):  # the hold id and its target: shown whole, never cut
        table.columns[index].min_width = max(
            (len(h.hold_id if index == 0 else h.target) for h in holds), default=4
        )
        table.columns[index].no_wrap = True
    for hold in holds:
        table.add_row(hold.hold_id, hold.scope, hold.target, hold.reason, hold.reference,
                      hold.source, f"{hold.placed_at:%Y-%m-%d %H:%M}")  # fmt: skip
    console.print(table)


@retention_app.command("sweep")
def retention_sweep(
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
) -> None:
    """Expire recordings past retain_until that no hold covers; safe to run twice."""
    _, service = _service()
    try:
        result = service.sweep(parse_now(now))
    finally:
        service.close()
    console.print(f"{result.sweep_id}: {len(result.expired)} recording(s) expired, "
                  "deletion commands sent on recordings.expired.v1")  # fmt: skip


@retention_app.command("report")
def retention_report(
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Recordings due this week, held (by reason) and expired, by controller and channel."""
    _, service = _service(kafka=False)
    report = service.report(parse_now(now))
    service.close()
    if format is Format.json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    table = Table("measure", "reason", "controller", "channel", "recordings",
                  title=f"Retention at {report.as_of:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    for row in report.rows:
        table.add_row(row.measure, row.reason or "-", row.controller, row.channel, str(row.count))
    console.print(table)
