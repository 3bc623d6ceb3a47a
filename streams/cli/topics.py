"""`contactflow topics apply | check | list`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from streams.cli._app import console, container, err_console, kafka_container, topics_app
from streams.runtime.durations import human_duration


@topics_app.command("apply")
def topics_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
) -> None:
    """Create or alter topics so the broker matches infra/topics.yaml; idempotent."""
    from streams.topics import apply_plan, plan

    root = kafka_container()
    current = plan(root.admin(), root.topics)
    if current.empty:
        console.print("topics: nothing to do, the broker matches infra/topics.yaml")
        return
    for change in current.changes:
        mark = "[red]![/]" if not change.fixable else ("~" if dry_run else "[green]+[/]")
        console.print(f"{mark} {change}")
    if dry_run:
        console.print(f"{len(current.changes)} change(s) planned (dry run, nothing applied)")
        return
    applied = apply_plan(root.admin(), current.changes)
    console.print(f"applied {len(applied)} change(s)")
    if current.unfixable:
        err_console.print(
            f"[red]{len(current.unfixable)} difference(s) cannot be fixed automatically[/]"
        )
        raise typer.Exit(1)


@topics_app.command("check")
def topics_check() -> None:
    """Exit non-zero when the broker drifts from infra/topics.yaml, naming each drift."""
    from streams.topics import plan

    root = kafka_container()
    current = plan(root.admin(), root.topics)
    if current.empty:
        console.print(f"topics: {len(root.topics.specs)} topics match infra/topics.yaml")
        return
    for change in current.changes:
        err_console.print(f"drift {change}")
    err_console.print(f"[red]{len(current.changes)} drift(s)[/]; run `contactflow topics apply`")
    raise typer.Exit(1)


@topics_app.command("list")
def topics_list(
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """The declared topics with their key, contract and main configs."""
    root = container()
    rows = [
        {
            "topic": root.topics.prefix + spec.name,
            "partitions": spec.partitions,
            "key": spec.key,
            "value_schema": spec.value_schema,
            "cleanup_policy": spec.configs.get("cleanup.policy"),
            "retention_ms": _int_or_none(spec.configs.get("retention.ms")),
        }
        for spec in root.topics.specs
    ]
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if format != "table":
        raise typer.BadParameter("table or json", param_hint="--format")
    table = Table("topic", "partitions", "key", "value", "cleanup", "retention")
    table.columns[0].min_width = max((len(str(r["topic"])) for r in rows), default=5)
    table.columns[0].no_wrap = True  # a topic name is shown whole, never cut
    for row in rows:
        table.add_row(
            str(row["topic"]), str(row["partitions"]), str(row["key"]),
            str(row["value_schema"]), str(row["cleanup_policy"] or "-"),
            human_duration(row["retention_ms"]),
        )  # fmt: skip
    console.print(table)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None
