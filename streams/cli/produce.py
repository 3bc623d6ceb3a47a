"""`contactflow produce --channel CHANNEL FILE.jsonl`: publish events from JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from schemas.topic_names import CHANNELS
from schemas.validation import ContractViolation
from streams.cli._app import app, console, container, err_console, kafka_container
from streams.sdk.producer import raw_topic


@app.command("produce")
def produce(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSON Lines file, one event per line.")],
    channel: Annotated[str, typer.Option("--channel", "-c",
                                         help=f"One of: {', '.join(CHANNELS)}.")],
) -> None:  # fmt: skip
    """Validate and send every event of FILE; report each bad line, exit 1 if any."""
    if channel not in CHANNELS:
        raise typer.BadParameter(f"expected one of {', '.join(CHANNELS)}", param_hint="--channel")
    lines = file.read_text(encoding="utf-8").splitlines()
    producer = kafka_container().producer()
    rejected = 0
    with Progress(
        TextColumn("[bold]producing[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"{channel} from {file.name}", total=len(lines))
        for number, line in enumerate(lines, start=1):
            progress.advance(task)
            if not line.strip():
                continue
            problem = _send_line(producer, channel, line)
            if problem:
                rejected += 1
                err_console.print(f"{file.name}:{number}: {problem}")
        tally = producer.flush()
    console.print(
        f"{channel}: sent {tally.delivered} event(s) to "
        f"{container().topics.name(raw_topic(channel))}, rejected {rejected} line(s)"
    )
    if rejected:
        raise typer.Exit(1)


def _send_line(producer: object, channel: str, line: str) -> str | None:
    """Send one line; return the reason it was rejected (never containing its values)."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(event, dict):
        return "expected a JSON object"
    try:
        producer.send(channel, event)  # type: ignore[attr-defined]
    except ContractViolation as exc:
        return str(exc)
    return None
