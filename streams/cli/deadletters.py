"""`contactflow deadletters summary | replay | purge`: the dead-letter topic, for operators."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from streams.cli._app import app, console, kafka_container, progress
from streams.cli.retention import Format, parse_now

deadletters_app = typer.Typer(
    help="Dead letters: what failed and why; replay what can now pass.", no_args_is_help=True
)
app.add_typer(deadletters_app, name="deadletters")


@deadletters_app.command("summary")
def deadletters_summary(
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Dead letters counted by source topic, stage and reason code (never their bytes)."""
    from streams.ops.deadletters import DeadLetters

    if output is Format.json:  # standard output holds the JSON alone
        console.print_json(DeadLetters(kafka_container()).summarise().as_json())
        return
    with progress("reading dead letters") as say:
        summary = DeadLetters(kafka_container()).summarise(say)
    table = Table("source topic", "stage", "reason code", "dead letters")
    for (topic, stage, code), count in sorted(summary.counts.items()):
        table.add_row(topic, stage, code, f"{count:,}")
    console.print(table)
    span = ""
    if summary.oldest is not None and summary.newest is not None:
        span = f", failed {summary.oldest:%Y-%m-%d %H:%M} .. {summary.newest:%Y-%m-%d %H:%M} UTC"
    console.print(f"{summary.total:,} dead letter(s){span}; {summary.replayed:,} replayed before")


@deadletters_app.command("replay")
def deadletters_replay(
    reason: Annotated[str, typer.Option(help="Replay the dead letters with this reason code.")],
    source_topic: Annotated[
        str | None, typer.Option(help="Only those from this topic (full name).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would be sent; send nothing.")] = False,
    by: Annotated[str, typer.Option(help="Who replays (for the audit log).")] = "operator",
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
) -> None:
    """Send the chosen dead letters' original records back to their source topics, once.

    For after a fix (a contract deployed, a policy rule added, a producer corrected): the
    worker reads them again. Each replay is in the audit log; replayed ones are skipped.
    """
    from streams.ops.deadletters import DeadLetters

    moment = parse_now(now)
    with progress("reading dead letters") as say:
        outcome = DeadLetters(kafka_container(), actor=by).replay(
            reason, moment, source_topic=source_topic, dry_run=dry_run, say=say
        )
    targets = ", ".join(f"{topic}: {count:,}" for topic, count in sorted(outcome.by_topic.items()))
    verb, count = (
        ("would send", sum(outcome.by_topic.values())) if dry_run else ("sent", outcome.sent)
    )
    console.print(
        f"{outcome.matched:,} dead letter(s) with reason {reason!r}; {outcome.skipped:,} "
        f"replayed before; {verb} {count:,}" + (f" ({targets})" if targets else "")
    )
    if outcome.references:
        console.print(
            f"{outcome.references:,} of them are references (too large to keep, no bytes): "
            "not replayable; the producer must send those events again (their SHA-256 is "
            "in each dead letter)"
        )


@deadletters_app.command("purge")
def deadletters_purge(
    older_than: Annotated[
        str,
        typer.Option(help="Delete those that failed longer ago than this: 3d, 12h, 30m, 0."),
    ],
    dry_run: Annotated[bool, typer.Option(help="Count what would go; delete nothing.")] = False,
    by: Annotated[str, typer.Option(help="Who purges (for the audit log).")] = "operator",
    now: Annotated[str | None, typer.Option(help="Clock override, ISO-8601.")] = None,
) -> None:
    """Delete dead letters older than a cut-off, replayed or not, before their retention.

    They hold the original bytes, personal data in clear, which an erasure cannot reach
    otherwise: `--older-than 0` once fixable ones are replayed. Recorded in the audit log.
    """
    from streams.ops.deadletters import DeadLetters

    moment = parse_now(now)
    cut_off = moment - parse_age(older_than)
    with progress("reading dead letters") as say:
        outcome = DeadLetters(kafka_container(), actor=by).purge(
            cut_off, moment, dry_run=dry_run, say=say
        )
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {outcome.purged:,} dead letter(s) failed before {cut_off:%Y-%m-%d %H:%M} UTC "
        f"({outcome.never_replayed:,} never replayed); {outcome.kept:,} kept"
        + (
            f", of which {outcome.kept_older:,} older but behind a younger one in its partition"
            if outcome.kept_older
            else ""
        )
    )


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm]?)$")
_UNIT = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def parse_age(value: str) -> timedelta:
    """`3d`, `12h`, `30m` or `0` as a duration (a bare number is days)."""
    match = _AGE.match(value.strip())
    if match is None:
        raise typer.BadParameter("expected a duration such as 3d, 12h, 30m or 0")
    number, unit = match.groups()
    return float(number) * _UNIT[unit or "d"]
