"""The published KPI figures read back, recomputed in one batch pass, compared, and shaped
into the rows `contactflow kpi report` shows.

`published` reads the compacted reporting.kpi.v1 to its end (the latest revision of each
window of each group). `recompute` reads the tagged topics read_committed and runs every
event through the same pure steps as the app (`processors.kpi`), so `compare` can say
whether the app counted each event exactly once. `report_rows` groups figures by the
dimensions asked for; a group withheld under k stays withheld and is never added in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from processors.kpi import (
    BRUSSELS,
    Cell,
    KpiConfig,
    add_measures,
    apply_fact,
    facts_of,
    figure_of,
    kpis_of,
    parse_cell_key,
    routed_time,
)
from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_COMNEXIO, CONTACT_ORES, REPORTING_KPI
from streams.bootstrap import Container
from streams.kafka.readback import read_all

DIMENSIONS: Final = ("channel", "site", "language", "queue")
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def published(container: Container, say: Say = _quiet) -> dict[str, dict[str, Any]]:
    """The latest figure of each window of each group on reporting.kpi.v1."""
    serde = AvroSerde(container.schemas)
    topic = container.topics.name(REPORTING_KPI)
    say(f"reading {topic}")
    latest: dict[str, dict[str, Any]] = {}
    for message in read_all(container.settings.kafka_client_config(), topic, timeout=60.0):
        key, value = message.key(), message.value()
        if key is None:
            continue
        if value is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = serde.deserialize(value)[1]
    return latest


def recompute(
    container: Container, config: KpiConfig, now: datetime, say: Say = _quiet
) -> dict[str, dict[str, Any]]:
    """Every figure the app should have published, from one read_committed pass over the
    tagged topics through the app's own pure steps."""
    serde = AvroSerde(container.schemas)
    cells: dict[str, Cell] = {}
    for logical in (CONTACT_ORES, CONTACT_COMNEXIO):
        topic = container.topics.name(logical)
        messages = read_all(container.settings.kafka_client_config(), topic, timeout=120.0)
        say(f"recomputing from {len(messages):,} event(s) of {topic}")
        for message in messages:
            value = message.value()
            if value is None:
                continue
            _, tagged = serde.deserialize(value)
            _, raw = serde.deserialize(tagged["event"])
            facts = facts_of(
                tagged, raw, source=f"{topic}/{message.partition()}",
                offset=int(message.offset() or 0), routed_at=routed_time(message.timestamp()[1]),
                config=config,
            )  # fmt: skip
            for _, fact in facts:
                apply_fact(cells, fact, config.min_subjects, config.grace)
    figures = {}
    for key, cell in cells.items():
        if cell.revision:
            window, group = parse_cell_key(key)
            final = now >= window.end + config.grace
            figures[key] = figure_of(window, group, cell, config.min_subjects, final=final,
                                     now=now)  # fmt: skip
    return figures


@dataclass(frozen=True, slots=True)
class Difference:
    key: str
    problem: str


def compare(
    published: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Mapping[str, Any]],
    start: datetime, end: datetime,
) -> list[Difference]:  # fmt: skip
    """Where the published figures of windows starting in [start, end) differ from the
    recomputed ones: a missing or extra window, a different verdict under k, a measure."""
    found = []
    inside = [k for k in {*published, *expected} if _starts_in(k, start, end)]
    for key in sorted(inside):
        have, want = published.get(key), expected.get(key)
        if have is None:
            found.append(Difference(key, "not published"))
        elif want is None:
            found.append(Difference(key, "published, but no event counts in it"))
        elif have["suppressed"] != want["suppressed"]:
            found.append(Difference(key, f"suppressed={have['suppressed']}, "
                                         f"expected {want['suppressed']}"))  # fmt: skip
        elif dict(have["measures"]) != dict(want["measures"]):
            found.append(Difference(key, _measure_gap(have["measures"], want["measures"])))
    return found


def _measure_gap(have: Mapping[str, int], want: Mapping[str, int]) -> str:
    names = sorted({*have, *want})
    gaps = [f"{n} {have.get(n, 0)} != {want.get(n, 0)}" for n in names
            if have.get(n, 0) != want.get(n, 0)]  # fmt: skip
    return "; ".join(gaps)


def _starts_in(key: str, start: datetime, end: datetime) -> bool:
    window, _ = parse_cell_key(key)
    return start <= window.start < end


def in_period(
    figures: Mapping[str, Mapping[str, Any]], start: datetime, end: datetime
) -> list[Mapping[str, Any]]:
    return [f for k, f in figures.items() if _starts_in(k, start, end)]


def report_rows(figures: Iterable[Mapping[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """Rows per grain, window and the dimensions in `by`: the measures of the groups shown
    are added up, the KPIs derived from the sums; a row of only withheld groups stays
    withheld, and `withheld` says how many groups under k a row leaves out."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for figure in figures:
        dims = tuple(figure[d] if d in by else None for d in DIMENSIONS)
        key = (figure["grain"], figure["window_start"], *dims)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                "grain": figure["grain"], "label": figure["label"],
                "window_start": figure["window_start"].astimezone(BRUSSELS),
                **dict(zip(DIMENSIONS, dims, strict=True)), "measures": {}, "shown": 0,
                "withheld": 0, "final": True,
            }  # fmt: skip
        row["final"] = row["final"] and figure["final"]
        if figure["suppressed"]:
            row["withheld"] += 1
        else:
            row["shown"] += 1
            add_measures(row["measures"], figure["measures"])
    out = []
    for key in sorted(rows, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        row = rows[key]
        row["suppressed"] = row["shown"] == 0
        row["kpis"] = {} if row["suppressed"] else kpis_of(row["measures"])
        out.append(row)
    return out
