"""The HTML format of `contactflow kpi report`: one self-contained page of charts and figures.

The page carries plotly's JavaScript inline and a Content-Security-Policy that forbids any
request, so it opens the same on a laptop without network as in a browser on the intranet.
A suppressed group (fewer than k distinct people) is shown as "< k" and never as a number;
charts and headline figures leave it out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Final, Literal

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from processors.kpi import add_measures, kpis_of

Row = Mapping[str, Any]
Kind = Literal["count", "share", "seconds", "nps", "score", "number"]

GRAINS: Final = ("hour", "day", "week")  # finest first
DIMENSIONS: Final = (("site", "Site"), ("language", "Language"), ("queue", "Queue"))
NOT_APPLICABLE: Final = "\N{EN DASH}"
CHART_HEIGHT_PX: Final = 380
MIN_DRAWN_S: Final = 0.5  # a log axis cannot draw 0 s
FONT: Final = "Inter, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
# The page may run its own inline script and style, and load nothing at all.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)
PLOTLY_CONFIG: Final = {
    "displaylogo": False,  # the logo links to plotly's site
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
}


@dataclass(frozen=True)
class Channel:
    """How a channel is drawn: its colour, the KPI that counts its contacts, its response time."""

    name: str
    label: str
    colour: str
    volume: str
    response: str | None  # the KPI of its average response time, if it has one
    response_label: str = ""


@dataclass(frozen=True)
class Kpi:
    """How a KPI is read. `weight` names the count a group's average is taken over (or the
    closest count a row carries), so that several groups combine into one average as if it
    were computed over all their contacts."""

    label: str
    kind: Kind
    weight: str | None = None


CHANNELS: Final = (
    Channel("phone", "Phone", "#1f6fb2", "offered", "asa_s", "Phone: speed of answer"),
    Channel("chat", "Chat", "#2a9d8f", "conversations", "first_response_s", "Chat: first response"),
    Channel("email", "E-mail", "#e76f51", "emails_received", "email_response_s", "E-mail: reply"),
    Channel("social", "Social", "#8e5bb5", "comments", "social_response_s", "Social media: reply"),
    Channel("survey", "Survey", "#d99a1e", "responses", None),
)
KPIS: Final[Mapping[str, Kpi]] = {
    "offered": Kpi("Calls offered", "count"),
    "answered": Kpi("Answered", "count"),
    "abandoned": Kpi("Abandoned", "count"),
    "service_level": Kpi("Service level", "share", "offered"),
    "asa_s": Kpi("Avg. speed of answer", "seconds", "answered"),
    "aht_s": Kpi("Avg. handling time", "seconds", "answered"),
    "callbacks_requested": Kpi("Callbacks asked", "count"),
    "callbacks_done": Kpi("Callbacks made", "count"),
    "conversations": Kpi("Conversations", "count"),
    "bot_only_share": Kpi("Bot only", "share", "conversations"),
    "handed_share": Kpi("Handed to agent", "share", "conversations"),
    "first_response_s": Kpi("First response", "seconds", "conversations"),
    "emails_received": Kpi("E-mails received", "count"),
    "emails_answered": Kpi("E-mails answered", "count"),
    "email_response_s": Kpi("E-mail response", "seconds", "emails_answered"),
    "comments": Kpi("Comments", "count"),
    "moderated": Kpi("Moderated", "count"),
    "social_response_s": Kpi("Social response", "seconds", "comments"),
    "responses": Kpi("Survey responses", "count"),
    "nps": Kpi("NPS", "nps", "responses"),
    "csat": Kpi("CSAT (1-5)", "score", "responses"),
    "complaints": Kpi("Complaints", "count"),
}
HEADLINES: Final = (  # (KPI, what the tile says under the figure)
    ("offered", "calls offered"),
    ("service_level", "phone service level"),
    ("asa_s", "phone speed of answer"),
    ("conversations", "chat conversations"),
    ("emails_received", "e-mails received"),
    ("comments", "social comments"),
    ("nps", "NPS, all surveys"),
    ("csat", "CSAT, 1 to 5"),
    ("complaints", "complaints"),
)
DURATION_TICKS: Final = (
    (1, "1 s"),
    (10, "10 s"),
    (60, "1 min"),
    (600, "10 min"),
    (3600, "1 h"),
    (4 * 3600, "4 h"),
    (86400, "1 day"),
    (7 * 86400, "1 week"),
)
TIME_TICK_FORMATS: Final = {"hour": "%H:%M<br>%a %d %b", "day": "%a<br>%d %b", "week": "W%V<br>%Y"}


def render_html(
    rows: Sequence[Mapping[str, Any]], *, title: str, period: str, min_subjects: int
) -> str:
    """The report as one HTML document that needs nothing but a browser to open."""
    if min_subjects < 1:
        raise ValueError(f"min_subjects must be at least 1, got {min_subjects}")
    return _document(
        title=title,
        period=period,
        body="\n".join(
            (
                _header(title, period, rows),
                _headlines(rows),
                _charts(rows),
                _privacy_note(rows, min_subjects),
                _tables(rows, min_subjects),
            )
        ),
    )


# ------------------------------------------------------------------------- combining groups


def _shown(rows: Iterable[Row]) -> list[Row]:
    """The rows whose figures may be shown: a suppressed group never is."""
    return [row for row in rows if not row["suppressed"]]


def _value(row: Row, kpi: str) -> float | None:
    value = row["kpis"].get(kpi)
    return None if value is None else float(value)


def _finest(rows: Iterable[Row], kpi: str) -> list[Row]:
    """The shown rows carrying `kpi` at the finest grain that has it, so no contact counts
    twice (a week row repeats its days)."""
    carrying = [row for row in _shown(rows) if _value(row, kpi) is not None]
    for grain in GRAINS:
        at_grain = [row for row in carrying if row["grain"] == grain]
        if at_grain:
            return at_grain
    return []


def _combine(rows: Sequence[Row], kpi: str) -> float | None:
    """One figure for several groups. Rows that carry their measures (as
    `streams.reporting.figures.report_rows` makes them) are added up exactly and the KPI
    derived from the sums; otherwise a sum of counts, or an average weighted by the count
    each group's average is taken over (a group without that count weighs 1)."""
    if rows and all(row.get("measures") for row in rows):
        summed: dict[str, int] = {}
        for row in rows:
            add_measures(summed, row["measures"])
        value = kpis_of(summed).get(kpi)
        return None if value is None else float(value)
    pairs = [(value, _weight(row, kpi)) for row in rows if (value := _value(row, kpi)) is not None]
    if not pairs:
        return None
    if _spec(kpi).kind == "count":
        return sum(value for value, _ in pairs)
    total = sum(weight for _, weight in pairs)
    if total <= 0:
        return sum(value for value, _ in pairs) / len(pairs)
    return sum(value * weight for value, weight in pairs) / total


def _weight(row: Row, kpi: str) -> float:
    name = _spec(kpi).weight
    weight = None if name is None else _value(row, name)
    return 1.0 if weight is None else weight


def _spec(kpi: str) -> Kpi:
    return KPIS.get(kpi) or Kpi(kpi.replace("_", " ").capitalize(), "number")


@dataclass(frozen=True)
class Series:
    """One KPI per window, all groups combined, at the finest grain that carries it."""

    grain: str
    starts: list[str]  # local wall-clock time of each window's start
    labels: list[str]
    values: list[float]


def _series(rows: Iterable[Row], kpi: str) -> Series | None:
    chosen = _finest(rows, kpi)
    if not chosen:
        return None
    by_window: dict[datetime, list[Row]] = defaultdict(list)
    for row in chosen:
        by_window[row["window_start"]].append(row)
    points = [
        (start, value)
        for start in sorted(by_window)
        if (value := _combine(by_window[start], kpi)) is not None
    ]
    return Series(
        grain=chosen[0]["grain"],
        starts=[start.strftime("%Y-%m-%d %H:%M") for start, _ in points],
        labels=[str(by_window[start][0]["label"]) for start, _ in points],
        values=[value for _, value in points],
    )


def _of_channel(rows: Iterable[Row], channel: str) -> list[Row]:
    return [row for row in rows if row["channel"] == channel]


def _sites(rows: Iterable[Row]) -> list[str]:
    return sorted({str(row["site"]) for row in _shown(rows) if row.get("site") is not None})


# ------------------------------------------------------------------------------ formatting


def _format(kpi: str, value: float | None) -> str:
    if value is None:
        return NOT_APPLICABLE
    return _FORMATTERS[_spec(kpi).kind](value)


def _count(value: float) -> str:
    return f"{round(value):,}"


def _share(value: float) -> str:
    return f"{value * 100:.0f}%"


def _duration(seconds: float) -> str:
    """A duration as a person says it: 24 s, 3 min 05 s, 4 h 12 min, 2 d 3 h."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _nps(value: float) -> str:
    return f"{value:+.0f}" if round(value) else "0"


def _score(value: float) -> str:
    return f"{value:.1f}"


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


_FORMATTERS: Final[Mapping[Kind, Callable[[float], str]]] = {
    "count": _count,
    "share": _share,
    "seconds": _duration,
    "nps": _nps,
    "score": _score,
    "number": _number,
}


# ---------------------------------------------------------------------------------- charts


def _new_figure(*, y_title: str, legend: bool = True) -> Any:
    """An empty figure in the report's style: white, readable, legend on top."""
    figure = go.Figure()
    figure.update_layout(
        template="plotly_white",
        height=CHART_HEIGHT_PX,
        margin={"l": 72, "r": 24, "t": 48 if legend else 16, "b": 64},
        font={"family": FONT, "size": 13, "color": "#24313f"},
        showlegend=legend,
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        hoverlabel={"font": {"family": FONT}},
        yaxis={"title": {"text": y_title}, "automargin": True, "gridcolor": "#e6eaf0"},
        xaxis={"automargin": True, "gridcolor": "#eef1f5"},
    )
    return figure


def _time_axis(figure: Any, grains: Iterable[str]) -> None:
    """Label the time axis in the finest grain drawn."""
    grain = min(grains, key=GRAINS.index)
    figure.update_xaxes(type="date", tickformat=TIME_TICK_FORMATS[grain], title_text=None)


def _line(series: Series, *, name: str, colour: str, hover: str, dash: str = "solid") -> Any:
    return go.Scatter(
        x=series.starts,
        y=series.values,
        customdata=series.labels,
        name=name,
        mode="lines+markers",
        line={"color": colour, "width": 2.5, "dash": dash},
        marker={"size": 7},
        hovertemplate=f"%{{customdata}}<br>{hover}<extra>{escape(name)}</extra>",
    )


def _volume_chart(rows: Sequence[Row]) -> Any | None:
    """Contacts per window and channel."""
    figure = _new_figure(y_title="Contacts per window")
    grains = []
    for channel in CHANNELS:
        series = _series(_of_channel(rows, channel.name), channel.volume)
        if series is None:
            continue
        grains.append(series.grain)
        name = f"{channel.label} ({_spec(channel.volume).label.lower()})"
        figure.add_trace(_line(series, name=name, colour=channel.colour, hover="%{y:,}"))
    if not grains:
        return None
    if len(set(grains)) == 1:
        figure.update_yaxes(title_text=f"Contacts per {grains[0]}")
    _time_axis(figure, grains)
    figure.update_yaxes(rangemode="tozero")
    return figure


def _service_level_chart(rows: Sequence[Row]) -> Any | None:
    """Phone service level per window: all sites, then each site when there are several."""
    phone = _of_channel(rows, "phone")
    overall = _series(phone, "service_level")
    if overall is None:
        return None
    figure = _new_figure(y_title="Answered within threshold")
    figure.add_trace(_line(overall, name="All sites", colour="#1f6fb2", hover="%{y:.0%}"))
    sites = _sites(phone)
    for site, colour in zip(sites if len(sites) > 1 else [], _SITE_COLOURS, strict=False):
        series = _series([row for row in phone if row.get("site") == site], "service_level")
        if series is not None:
            figure.add_trace(_line(series, name=site, colour=colour, hover="%{y:.0%}", dash="dot"))
    figure.update_yaxes(tickformat=".0%", range=[0, 1.05])
    _time_axis(figure, [overall.grain])
    return figure


_SITE_COLOURS: Final = ("#7aa6c2", "#c26d3d", "#5e8c4a", "#a05195", "#6b6b6b", "#b8860b")


def _nps_chart(rows: Sequence[Row]) -> Any | None:
    """NPS per channel, for all sites together and for each site."""
    carrying = _finest(rows, "nps")
    if not carrying:
        return None
    sites = _sites(carrying)
    columns = ["All sites", *sites] if len(sites) > 1 else ["All sites"]
    figure = _new_figure(y_title="NPS (-100 to +100)")
    for channel in CHANNELS:
        own = _of_channel(carrying, channel.name)
        if own:
            scores = [_combine(_at_site(own, column), "nps") for column in columns]
            figure.add_trace(_nps_bars(channel, columns, scores))
    figure.update_layout(barmode="group", bargap=0.25)
    figure.update_yaxes(range=[-100, 100], zeroline=True, zerolinecolor="#8795a1", dtick=25)
    return figure


def _at_site(rows: Sequence[Row], column: str) -> list[Row]:
    return list(rows) if column == "All sites" else [row for row in rows if row["site"] == column]


def _nps_bars(channel: Channel, columns: list[str], scores: list[float | None]) -> Any:
    return go.Bar(
        x=columns,
        y=scores,
        name=channel.label,
        marker_color=channel.colour,
        text=[_format("nps", score) if score is not None else "" for score in scores],
        textposition="outside",
        cliponaxis=False,
        hovertemplate=f"%{{x}}<br>NPS %{{y:+.0f}}<extra>{channel.label}</extra>",
    )


def _response_chart(rows: Sequence[Row]) -> Any | None:
    """The period's average response time per channel, on a log scale (seconds to days)."""
    times = _response_times(rows)
    if not times:
        return None
    figure = _new_figure(y_title="", legend=False)
    figure.add_trace(
        go.Bar(
            y=[label for label, _, _ in times],
            x=[seconds for _, _, seconds in times],
            orientation="h",
            marker_color=[colour for _, colour, _ in times],
            text=[_duration(seconds) for _, _, seconds in times],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    shortest, longest = (f(seconds for _, _, seconds in times) for f in (min, max))
    figure.update_xaxes(
        type="log",
        range=[math.log10(shortest / 4), math.log10(longest * 6)],
        title_text="Average time to respond (log scale)",
        tickvals=[seconds for seconds, _ in DURATION_TICKS],
        ticktext=[text for _, text in DURATION_TICKS],
    )
    figure.update_yaxes(autorange="reversed", title_text=None)
    return figure


def _response_times(rows: Sequence[Row]) -> list[tuple[str, str, float]]:
    """(label, colour, average seconds) of each channel that has a response time."""
    times = []
    for channel in CHANNELS:
        if channel.response is None:
            continue
        own = _finest(_of_channel(rows, channel.name), channel.response)
        seconds = _combine(own, channel.response)
        if seconds is not None:
            times.append((channel.response_label, channel.colour, max(seconds, MIN_DRAWN_S)))
    return times


@dataclass(frozen=True)
class Chart:
    """A chart of the page: its anchor, its title, what it shows, how it is drawn."""

    anchor: str
    title: str
    caption: str
    draw: Callable[[Sequence[Row]], Any | None]


CHARTS: Final = (
    Chart(
        "chart-volumes",
        "Volumes over time",
        "Contacts per channel and window, all sites, languages and queues together.",
        _volume_chart,
    ),
    Chart(
        "chart-service-level",
        "Phone service level over time",
        "Share of offered calls answered within the service-level threshold.",
        _service_level_chart,
    ),
    Chart(
        "chart-nps",
        "NPS by channel and site",
        "Net promoter score of the survey answers, under the channel of the rated contact.",
        _nps_chart,
    ),
    Chart(
        "chart-response-times",
        "Response times by channel",
        "Average over the period: phone speed of answer, first chat response, "
        "e-mail and social media response.",
        _response_chart,
    ),
)


def _charts(rows: Sequence[Row]) -> str:
    cards = "\n".join(_chart_card(chart, chart.draw(rows)) for chart in CHARTS)
    return f'<section class="charts">\n{cards}\n</section>'


def _chart_card(chart: Chart, figure: Any | None) -> str:
    body = (
        '<p class="no-data">No data for this chart in this period.</p>'
        if figure is None
        else _plot(figure, chart.anchor)
    )
    return (
        f'<article class="card" id="{chart.anchor}-card">'
        f"<h2>{escape(chart.title)}</h2>"
        f'<p class="caption">{escape(chart.caption)}</p>\n{body}</article>'
    )


def _plot(figure: Any, anchor: str) -> str:
    """The figure's div and the script that draws it; plotly's library is in the page head."""
    return str(
        pio.to_html(
            figure,
            include_plotlyjs=False,
            full_html=False,
            config=PLOTLY_CONFIG,
            div_id=anchor,
            default_height=f"{CHART_HEIGHT_PX}px",
        )
    )


# ------------------------------------------------------------------------ headlines, note


def _header(title: str, period: str, rows: Sequence[Row]) -> str:
    zone = _time_zone(rows)
    when = f" · times in {escape(zone)}" if zone else ""
    return f'<header><h1>{escape(title)}</h1><p class="period">{escape(period)}{when}</p></header>'


def _time_zone(rows: Sequence[Row]) -> str | None:
    zones = {str(zone) for row in rows if (zone := row["window_start"].tzinfo) is not None}
    return zones.pop() if len(zones) == 1 else None


def _headlines(rows: Sequence[Row]) -> str:
    """The period's main figures, all groups together, as tiles."""
    tiles = []
    for kpi, caption in HEADLINES:
        value = _combine(_finest(rows, kpi), kpi)
        if value is not None:
            tiles.append(
                f'<div class="tile"><span class="figure">{escape(_format(kpi, value))}</span>'
                f'<span class="what">{escape(caption)}</span></div>'
            )
    if not tiles:
        return '<section class="tiles empty"><p>No figures for this period.</p></section>'
    return f'<section class="tiles">{"".join(tiles)}</section>'


def _privacy_note(rows: Sequence[Row], min_subjects: int) -> str:
    """How many groups are withheld under k, and why."""
    withheld = sum(1 for row in rows if row["suppressed"])
    k = min_subjects
    if withheld == 0:
        text = f"No group counted fewer than {k} distinct people: every group is shown."
    else:
        verb = "is" if withheld == 1 else "are"
        text = (
            f"{withheld} of {len(rows)} groups {verb} shown as “&lt; {k}”: fewer than {k} distinct "
            "people were counted in them, so their figures are withheld to protect those "
            "people's privacy (nobody can be singled out from a small group). Charts and "
            "headline figures leave them out."
        )
    return f'<aside class="privacy"><strong>Privacy.</strong> {text}</aside>'


# ---------------------------------------------------------------------------------- tables


def _tables(rows: Sequence[Row], min_subjects: int) -> str:
    sections = [
        _channel_table(channel, own, min_subjects)
        for channel in _table_channels(rows)
        if (own := _of_channel(rows, channel.name))
    ]
    body = "\n".join(sections) or '<p class="no-data">No groups in this period.</p>'
    return f'<section class="figures"><h2>Figures</h2>\n{body}\n</section>'


def _table_channels(rows: Sequence[Row]) -> list[Channel]:
    """The known channels in their usual order, then any other the rows name."""
    known = {channel.name for channel in CHANNELS}
    others = sorted({str(row["channel"]) for row in rows} - known)
    return [*CHANNELS, *(Channel(name, name.capitalize(), "#6b6b6b", "", None) for name in others)]


def _channel_table(channel: Channel, rows: Sequence[Row], min_subjects: int) -> str:
    dimensions = [(key, label) for key, label in DIMENSIONS if any(row.get(key) for row in rows)]
    kpis = _table_kpis(rows)
    head = "".join(
        f"<th>{escape(label)}</th>" for label in ["Window", *(label for _, label in dimensions)]
    ) + "".join(f'<th class="num">{escape(_spec(kpi).label)}</th>' for kpi in kpis)
    lines = "\n".join(
        _table_row(row, dimensions, kpis, min_subjects) for row in sorted(rows, key=_row_order)
    )
    withheld = sum(1 for row in rows if row["suppressed"])
    summary = f"{escape(channel.label)} <span>{len(rows)} groups, {withheld} withheld</span>"
    return (
        f'<details open class="channel"><summary>{summary}</summary>'
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{lines}\n</tbody></table></div></details>"
    )


def _table_kpis(rows: Sequence[Row]) -> list[str]:
    """The KPIs any shown row carries, known ones in their usual order; at least one column."""
    present = {
        kpi for row in _shown(rows) for kpi, value in row["kpis"].items() if value is not None
    }
    ordered = [kpi for kpi in KPIS if kpi in present] + sorted(present - set(KPIS))
    return ordered or ["figures"]


def _row_order(row: Row) -> tuple[Any, ...]:
    """Finest windows first, in time order; a week's rows after its days."""
    return (
        GRAINS.index(row["grain"]) if row["grain"] in GRAINS else len(GRAINS),
        row["window_start"],
        *(str(row.get(key) or "") for key, _ in DIMENSIONS),
    )


def _table_row(
    row: Row, dimensions: list[tuple[str, str]], kpis: list[str], min_subjects: int
) -> str:
    cells = [escape(str(row["label"]))] + [
        escape(str(row.get(key) or NOT_APPLICABLE)) for key, _ in dimensions
    ]
    head = "".join(f"<td>{cell}</td>" for cell in cells)
    if row["suppressed"]:
        return (
            f'<tr class="withheld">{head}<td class="num" colspan="{len(kpis)}" '
            f'title="fewer than {min_subjects} distinct people">&lt; {min_subjects}</td></tr>'
        )
    figures = "".join(
        f'<td class="num">{escape(_format(kpi, _value(row, kpi)))}</td>' for kpi in kpis
    )
    return f"<tr>{head}{figures}</tr>"


# -------------------------------------------------------------------------------- document


def _document(*, title: str, period: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {escape(period)}</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<main>
{body}
<footer>Anonymous aggregates from contactflow's reporting. Averages over several groups are
weighted by each group's contacts.</footer>
</main>
</body>
</html>
"""


STYLE: Final = """
:root { color-scheme: light; --ink: #24313f; --muted: #5f6d7c; --line: #e2e7ee; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f9; color: var(--ink);
  font: 15px/1.45 Inter, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 28px 32px 40px; }
header { border-bottom: 3px solid #1f6fb2; padding-bottom: 12px; margin-bottom: 20px; }
h1 { margin: 0; font-size: 28px; letter-spacing: -0.01em; }
.period { margin: 4px 0 0; color: var(--muted); font-size: 17px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(128px, 1fr));
  gap: 12px; margin-bottom: 20px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.tile .figure { display: block; font-size: 26px; font-weight: 650; }
.tile .what { color: var(--muted); font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px;
  min-width: 0; }
.card h2 { margin: 0; font-size: 18px; }
.caption { margin: 2px 0 6px; color: var(--muted); font-size: 13px; }
.no-data { display: grid; place-items: center; min-height: 200px; margin: 0; color: var(--muted);
  background: repeating-linear-gradient(45deg, #fafbfc, #fafbfc 10px, #f3f5f8 10px, #f3f5f8 20px);
  border-radius: 8px; font-size: 15px; }
.privacy { margin: 20px 0; padding: 12px 16px; background: #fff8e6; border-left: 4px solid #d99a1e;
  border-radius: 6px; }
.figures h2 { font-size: 20px; margin: 24px 0 8px; }
details.channel { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  margin-bottom: 12px; padding: 8px 14px; }
summary { font-weight: 650; cursor: pointer; padding: 4px 0; }
summary span { font-weight: 400; color: var(--muted); margin-left: 8px; font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0 8px; }
.scroll { overflow-x: auto; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; }
td { white-space: nowrap; }
th { background: #f7f9fb; font-weight: 600; vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.withheld td { color: var(--muted); background: #fbfbfc; }
tr.withheld td.num { text-align: center; font-style: italic; }
footer { margin-top: 24px; color: var(--muted); font-size: 12px; }
"""
