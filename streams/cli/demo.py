"""`contactflow demo`: the main job, an end-to-end run of everything that works."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from streams.cli._app import app, console, container, progress
from streams.control.privacy.evidence import render_report
from streams.dev.demo import reset_demo, run_demo


@app.command("demo")
def demo(
    rounds: Annotated[int, typer.Option(min=1, help="Copies of each sample event.")] = 5,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start from empty data: delete the declared topics and the local SQLite "
            "ledger first (refused for a ledger set by CONTACTFLOW_DATABASE_URL).",
        ),
    ] = False,
) -> None:
    """Bring the broker up, apply topics, produce a sample of all five channels, show it."""
    root = container()
    with progress("demo") as say:
        if reset:
            reset_demo(root, say)
        result = run_demo(root, say, rounds=rounds)
    table = Table("topic", "events", "by kind", title="What landed where")
    for topic, kinds in result.landed.items():
        detail = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        table.add_row(topic, str(sum(kinds.values())), detail)
    console.print(table)
    routed = Table("topic", "records", "detail", title="What the router made of them")
    for topic, outcome in result.routed.items():
        text = ", ".join(f"{name} {n}" for name, n in sorted(outcome.items()))
        routed.add_row(topic, str(sum(outcome.values())), text)
    console.print(routed)
    console.print(
        f"router: {result.router_events} raw event(s) routed for {result.subjects} "
        "pseudonymous subject(s); personal data encrypted per subject"
    )
    _show_kpis(result.kpis, root.settings.kpi_min_subjects)
    for line in result.retention:
        console.print(f"retention: {line}" if not line.startswith("retention") else line)
    sent = sum(result.sent.values())
    landed = sum(sum(k.values()) for k in result.landed.values())
    console.print(f"sent {sent}, landed {landed}, invalid refused {len(result.refused)}")
    erasure = result.erasure
    verified = erasure.get("state") == "completed" and erasure.get("readable") == 0
    console.rule("Erasure of the demo caller: " + ("verified" if verified else "NOT verified"))
    render_report(erasure["report"], console.print)
    console.print(f"erasure {erasure['request_id']}: {erasure['state']}; the caller's events "
                  f"still readable in any topic: {erasure['readable']}")  # fmt: skip
    console.print(
        f"dead letters: {result.dead_letters_purged} purged after the erasure (their reasons "
        "are in the router's table above), as their original bytes are out of its reach"
    )
    if root.settings.bootstrap_servers is None:
        console.print(
            f"the broker is still running on {root.settings.bootstrap}; stop it with "
            "`contactflow broker down`"
        )
    if landed != sent or not verified:
        raise typer.Exit(1)


def _show_kpis(kpis: Any, k: int) -> None:
    """Today's KPIs by channel, as `contactflow kpi report --by channel` shows them."""
    from streams.cli.kpi import kpi_table

    console.print(kpi_table(kpis.rows, ["channel"], k, title="Today's KPIs (anonymous)"))
    console.print(
        f"reporting: {kpis.figures} figure(s) on reporting.kpi.v1 today; groups of fewer than "
        f"{k} people withheld; HTML report: {kpis.html}",
        highlight=False,
    )
