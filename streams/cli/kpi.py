"""`contactflow kpi report | verify`: the contact centre's anonymous KPIs, for people and
scripts."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from streams.cli._app import app, console, err_console, kafka_container, progress

kpi_app = typer.Typer(
    help="Contact-centre KPIs (anonymous aggregates on reporting.kpi.v1).", no_args_is_help=True
)
app.add_typer(kpi_app, name="kpi")


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    html = "html"


class Grain(StrEnum):
    hour = "hour"
    day = "day"
    week = "week"


FromOption = Annotated[
    str | None, typer.Option("--from", help="First local day (YYYY-MM-DD); default 7 days ago.")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="Last local day (YYYY-MM-DD); default today.")
]
# how the table format shows each KPI: (KPI name, label, format)
_SHOWN = (
    ("offered", "offered", "{:,}"), ("service_level", "SL", "{:.0%}"),
    ("asa_s", "ASA", "{}"), ("aht_s", "AHT", "{}"),
    ("abandoned", "abandoned", "{:,}"), ("callbacks_requested", "callbacks", "{:,}"),
    ("conversations", "chats", "{:,}"), ("bot_only_share", "bot only", "{:.0%}"),
    ("first_response_s", "1st resp.", "{}"), ("emails_received", "e-mails", "{:,}"),
    ("emails_answered", "answered", "{:,}"), ("email_response_s", "resp.", "{}"),
    ("comments", "comments", "{:,}"), ("moderated", "moderated", "{:,}"),
    ("social_response_s", "resp.", "{}"), ("surveys_sent", "surveys sent", "{:,}"),
    ("responses", "answers", "{:,}"),
    ("nps", "NPS", "{:+.0f}"), ("csat", "CSAT", "{:.1f}"), ("complaints", "complaints", "{:,}"),
)  # fmt: skip


def period(start: str | None, end: str | None, today: date) -> tuple[datetime, datetime]:
    """[first local midnight, midnight after the last day) in Europe/Brussels, as UTC."""
    from processors.kpi import day_window

    try:
        first = date.fromisoformat(start) if start else today - timedelta(days=7)
        last = date.fromisoformat(end) if end else today
    except ValueError as error:
        raise typer.BadParameter(f"dates are YYYY-MM-DD ({error})") from None
    if last < first:
        raise typer.BadParameter(f"--to {last} is before --from {first}")
    return day_window(_local(first)).start, day_window(_local(last)).end


def _local(day: date) -> datetime:
    from processors.kpi import BRUSSELS

    return datetime(day.year, day.month, day.day, tzinfo=BRUSSELS)


def _today() -> date:
    from processors.kpi import BRUSSELS

    return datetime.now(BRUSSELS).date()


@kpi_app.command("report")
def kpi_report(
    start: FromOption = None,
    end: ToOption = None,
    by: Annotated[
        str, typer.Option(help="Dimensions to group by: any of channel,site,language,queue.")
    ] = "channel,site",
    grain: Annotated[Grain, typer.Option(help="Window length of the table and JSON.")] = Grain.day,
    output: Annotated[ReportFormat, typer.Option("--format", help="table, json or html.")] = (
        ReportFormat.table
    ),
    out: Annotated[
        Path | None, typer.Option(help="File for the HTML report (default kpi-report.html).")
    ] = None,
) -> None:
    """The KPIs of a period by channel, site, language or queue. Groups of fewer than k
    distinct people are withheld: shown as '< k', never added into a total."""
    from streams.reporting.figures import DIMENSIONS, in_period, published, report_rows

    dims = [d.strip() for d in by.split(",") if d.strip()]
    unknown = sorted(set(dims) - set(DIMENSIONS))
    if unknown:
        raise typer.BadParameter(f"unknown dimension(s) {unknown}; choose from {DIMENSIONS}")
    first, last = period(start, end, _today())
    root = kafka_container()
    k = root.settings.kpi_min_subjects
    if output is ReportFormat.json:
        figures = in_period(published(root), first, last)
        rows = [r for r in report_rows(figures, dims) if r["grain"] in (grain, "week")]
        console.print_json(json.dumps([_json_row(r) for r in rows], default=str))
        return
    with progress("reading the published KPIs") as say:
        figures = in_period(published(root, say), first, last)
    if output is ReportFormat.html:
        _write_html(figures, dims, first, last, k, out or Path("kpi-report.html"))
        return
    rows = [r for r in report_rows(figures, dims) if r["grain"] == grain]
    console.print(kpi_table(rows, dims, k))
    withheld = sum(r["withheld"] for r in rows)
    console.print(f"{len(rows)} row(s); {withheld} group(s) under k={k} withheld and not added "
                  "into any figure")  # fmt: skip


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("grain", "label", "channel", "site", "language", "queue", "suppressed", "withheld",
            "final", "kpis", "measures")  # fmt: skip
    return {key: row[key] for key in keys}


def kpi_table(
    rows: list[dict[str, Any]], dims: list[str], k: int, title: str | None = None
) -> Table:
    """One row per window and group: its KPIs, or '< k' when withheld."""
    table = Table("window", *dims, "KPIs", "groups < k", title=title)
    for row in rows:
        if row["suppressed"]:
            shown = f"< {k} people: withheld"
        else:
            shown = "  ".join(f"{label} {_value(name, shape, row['kpis'][name])}"
                              for name, label, shape in _SHOWN
                              if row["kpis"].get(name) is not None)  # fmt: skip
        table.add_row(row["label"], *(str(row[d] or "-") for d in dims), shown,
                      str(row["withheld"] or ""))  # fmt: skip
    return table


def _value(name: str, shape: str, value: float) -> str:
    """A KPI as a person reads it; durations in s, min or h."""
    if not name.endswith("_s"):
        return shape.format(value)
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _write_html(figures: list[Any], dims: list[str], first: datetime, last: datetime, k: int,
                out: Path) -> None:  # fmt: skip
    from streams.reporting.figures import report_rows
    from streams.reporting.html import render_html

    rows = report_rows(figures, dims)
    shown = f"{first.date()} to {(last - timedelta(days=1)).date()}"
    out.write_text(render_html(rows, title="COMNEXIO contact centre - KPIs", period=shown,
                               min_subjects=k), encoding="utf-8")  # fmt: skip
    console.print(f"HTML report of {len(rows)} row(s) written to {out.resolve()}", highlight=False)


@kpi_app.command("verify")
def kpi_verify(start: FromOption = None, end: ToOption = None) -> None:
    """Recompute the KPIs in one read_committed pass over the tagged topics and compare
    them with what the reporting app published. Exit 1 on any difference."""
    from streams.reporting.figures import compare, published, recompute
    from streams.router.worker import utc_now

    first, last = period(start, end, _today())
    root = kafka_container()
    with progress("verifying the published KPIs") as say:
        expected = recompute(root, root.settings.kpi_config(), utc_now(), say)
        have = published(root, say)
    differences = compare(have, expected, first, last)
    checked = sum(1 for f in expected.values() if first <= f["window_start"] < last)
    if differences:
        for difference in differences[:50]:
            err_console.print(f"  {difference.key}: {difference.problem}", highlight=False)
        err_console.print(f"kpi verify: {len(differences)} window(s) of {checked} differ")
        raise typer.Exit(1)
    console.print(f"kpi verify: {checked} window(s) agree with a recomputation from the "
                  "tagged topics")  # fmt: skip
