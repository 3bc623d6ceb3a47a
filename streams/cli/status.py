"""`contactflow status` and `contactflow lag`: the running system on one screen, for a
person or a cron/CI check (exit 1 when something needs a person)."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from streams.cli._app import app, console, container, kafka_container
from streams.cli.retention import Format, parse_now
from streams.ops.status import DEFAULT_MAX_LAG

if TYPE_CHECKING:
    from streams.ops.lag import GroupLag
    from streams.ops.status import StatusSnapshot

NEEDS_A_PERSON = 1  # exit code of status and lag when a problem is found

MaxLag = Annotated[
    int,
    typer.Option("--max-lag", min=0,
                 help="A group lagging more than this on one topic is a problem."),
]  # fmt: skip
Watch = Annotated[
    bool, typer.Option("--watch", help="Redraw every --interval seconds until Ctrl-C.")
]
Interval = Annotated[
    float, typer.Option("--interval", min=0.5, help="Seconds between redraws of --watch.")
]


@app.command("status")
def status(
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    watch: Watch = False,
    interval: Interval = 5.0,
    max_lag: MaxLag = DEFAULT_MAX_LAG,
    now: Annotated[str | None, typer.Option(help="Clock for deadlines, ISO-8601.")] = None,
) -> None:
    """Broker, topic drift, consumer lag, dead letters, quarantine, data-subject requests
    and holds on one screen. Exit 1 when something needs a person: broker unreachable,
    topic drift, lag over --max-lag, an overdue request, a late consumer, an unreadable
    ledger."""
    from streams.ops.status import collect_status

    root = container()

    def take() -> tuple[RenderableType | str, int]:
        taken = collect_status(root, parse_now(now), max_lag=max_lag)
        code = 0 if taken.ok else NEEDS_A_PERSON
        if output is Format.json:  # with --watch one compact object a line (JSON Lines)
            return json.dumps(taken.as_dict(), indent=None if watch else 2), code
        return render_status(taken), code

    redraw = output is Format.table and console.is_terminal
    _show(take, interval if watch else None, redraw=redraw)


@app.command("lag")
def lag(
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="One group: its id or role (router, privacy-app, "
            "downstream:NAME); default every contactflow group.",
        ),
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    max_lag: MaxLag = DEFAULT_MAX_LAG,
) -> None:
    """Consumer lag per group and topic (committed against end offsets). Exit 1 when a
    group lags more than --max-lag on a topic."""
    from streams.ops.lag import ConsumerGroupRef, consumer_lag, known_groups

    root = kafka_container()
    refs = known_groups(root)
    if group is not None:  # asked for by name: shown even if it never committed
        chosen = [replace(r, optional=False) for r in refs if group in {r.group_id, r.role}]
        refs = chosen or [ConsumerGroupRef(group, "other", ())]
    groups = consumer_lag(root, refs)
    over = [t for g in groups for t in g.topics if t.lag > max_lag]
    if output is Format.json:
        document = {"max_lag": max_lag, "ok": not over, "groups": [g.as_dict() for g in groups]}
        typer.echo(json.dumps(document, indent=2))
    else:
        console.print(lag_table(groups, max_lag))
    if over:
        raise typer.Exit(NEEDS_A_PERSON)


# -- showing once or until Ctrl-C -----------------------------------------------------------


def _show(
    take: Callable[[], tuple[RenderableType | str, int]], watch: float | None, *, redraw: bool
) -> None:
    """Show once and exit with the snapshot's code; with `watch`, again every `watch`
    seconds until Ctrl-C, then exit with the last snapshot's code. `redraw` draws each
    snapshot over the last (a terminal); else they follow one another (a pipe, JSON).

    Ctrl-C while watching ends the watch after the snapshot being taken: interrupted in
    the middle of a Kafka client call, the client could hang the process at exit. A
    second Ctrl-C stops at once."""
    if watch is None:
        shown, code = take()
        _print(shown)
        raise typer.Exit(code)
    code = 0
    stop = threading.Event()

    def interrupted(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        drawing = Live(console=console, auto_refresh=False) if redraw else None
        with drawing or contextlib.nullcontext() as live:
            while not stop.is_set():
                shown, code = take()
                if live is None:
                    _print(shown)
                else:
                    live.update(shown, refresh=True)
                stop.wait(watch)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


def _print(shown: RenderableType | str) -> None:
    if isinstance(shown, str):
        typer.echo(shown)
    else:
        console.print(shown)


# -- rendering ------------------------------------------------------------------------------


def render_status(snapshot: StatusSnapshot) -> RenderableType:
    """The snapshot for a person: verdict, broker, groups, errors, requests, retention."""
    parts: list[RenderableType] = []
    verdict = "[green]OK[/]" if snapshot.ok else f"[red]{len(snapshot.problems)} problem(s)[/]"
    parts.append(Text.from_markup(
        f"contactflow status at {snapshot.as_of:%Y-%m-%d %H:%M:%S} UTC: {verdict}"
    ))  # fmt: skip
    for problem in snapshot.problems:
        parts.append(Text.from_markup(f"  [red]![/] {problem.code}: {escape(problem.message)}"))
    for warning in snapshot.warnings:
        parts.append(Text.from_markup(f"  [yellow]~[/] {warning.code}: {escape(warning.message)}"))
    parts.append(_broker_line(snapshot))
    if snapshot.groups is not None:
        parts.append(lag_table(list(snapshot.groups), snapshot.max_lag, every_topic=False))
    parts.append(_errors_lines(snapshot))
    parts.append(_ledger_lines(snapshot))
    return Group(*parts)


def _broker_line(snapshot: StatusSnapshot) -> Text:
    broker = snapshot.broker
    if not broker.reachable:
        return Text(f"broker {broker.bootstrap}: unreachable ({broker.error})")
    nodes = ", ".join(f"{n.node_id}@{n.host}:{n.port}" for n in broker.nodes)
    of = f" of {broker.expected_nodes}" if broker.expected_nodes else ""
    version = f"Kafka {broker.version}" if broker.version else "version not reported"
    drift = f"{len(broker.drift)} drift(s)" if broker.drift else "no drift"
    return Text(
        f"broker {broker.bootstrap}: reachable, {version}, {len(broker.nodes)}{of} node(s) "
        f"[{nodes}], controller {broker.controller_id}; topics: {broker.topics_declared} "
        f"declared, {drift}"
    )


def lag_table(groups: list[GroupLag], max_lag: int, *, every_topic: bool = True) -> Table:
    """A row per group (its total) and, under it, a row per topic it reads (`every_topic`)
    or per topic it lags on: narrow enough for 80 columns, no group id or topic name cut."""
    table = Table("group / topic", "state", "members", "lag", box=box.SIMPLE_HEAD,
                  title=f"Consumer lag (a problem over {max_lag:,} on a topic)")  # fmt: skip
    names = [g.group_id for g in groups] + [f"  {t.topic}" for g in groups for t in g.topics]
    table.columns[0].min_width = max((len(n) for n in names), default=5)
    table.columns[0].no_wrap = True
    table.columns[3].justify = "right"
    for group in groups:
        table.add_row(f"[bold]{escape(group.group_id)}[/]", group.state, str(group.members),
                      f"{group.lag:,}")  # fmt: skip
        for topic in group.topics:
            if not every_topic and not topic.lag:
                continue
            shown = f"[red]{topic.lag:,}[/]" if topic.lag > max_lag else f"{topic.lag:,}"
            table.add_row(f"  {escape(topic.topic)}", "", "", shown)
    return table


def _errors_lines(snapshot: StatusSnapshot) -> RenderableType:
    parts: list[RenderableType] = []
    letters = snapshot.deadletters
    if letters is None:
        parts.append(Text("dead letters: not read"))
    else:
        parts.append(
            Text(f"dead letters: {letters.total:,} ({letters.replayed:,} replayed before)")
        )
        if letters.by_reason:
            table = Table("source topic", "stage", "reason code", "dead letters")
            table.columns[0].min_width = max(len(t) for t, _, _, _ in letters.by_reason)
            table.columns[0].no_wrap = True
            for topic, stage, reason, count in letters.by_reason:
                table.add_row(topic, stage, reason, f"{count:,}")
            parts.append(table)
    quarantined = snapshot.quarantined
    parts.append(Text(
        "quarantine: not read" if quarantined is None else f"quarantine: {quarantined:,} event(s)"
    ))  # fmt: skip
    return Group(*parts)


def _ledger_lines(snapshot: StatusSnapshot) -> RenderableType:
    requests, retention = snapshot.requests, snapshot.retention
    if requests is None or retention is None:
        return Text("requests and holds: ledger not read")
    states = ", ".join(f"{state} {n}" for state, n in sorted(requests.by_state.items()))
    lines = [f"requests: {requests.open} open" + (f" ({states})" if states else "")
             + f", {len(requests.overdue)} overdue"]  # fmt: skip
    lines += [f"  overdue: {request_id}" for request_id in requests.overdue]
    lines += [f"  late consumers of {item.request_id}: {', '.join(item.consumers)}"
              for item in requests.late]  # fmt: skip
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(retention.holds_by_reason.items()))
    lines.append(f"holds: {retention.active_holds} active" + (f" ({reasons})" if reasons else "")
                 + f"; recordings due this week: {retention.due_this_week}")  # fmt: skip
    return Text("\n".join(lines))
