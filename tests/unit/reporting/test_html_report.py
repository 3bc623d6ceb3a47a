"""The HTML KPI report: a self-contained page that withholds small groups and draws the charts
its data allows (tests/integration/reporting opens it in a real browser)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from plotly.offline import get_plotlyjs

from streams.reporting.html import render_html

K = 5
MONDAY = datetime(2026, 11, 30, tzinfo=ZoneInfo("Europe/Brussels"))
CHART_IDS = ("chart-volumes", "chart-service-level", "chart-nps", "chart-response-times")
NO_DATA = "No data for this chart in this period."
PHONE = {"offered": 120, "answered": 110, "service_level": 0.8, "asa_s": 31.0, "aht_s": 300.0}
CHAT = {"conversations": 80, "bot_only_share": 0.4, "first_response_s": 40.0}
EMAIL = {"emails_received": 60, "emails_answered": 50, "email_response_s": 18_000.0}
SOCIAL = {"comments": 20, "moderated": 8, "social_response_s": 3_600.0}
SURVEY = {"responses": 30, "nps": 22.0, "csat": 4.2}


def _row(
    channel: str,
    kpis: dict[str, Any],
    *,
    day: int = 0,
    grain: str = "day",
    site: str | None = "Namur",
    suppressed: bool = False,
) -> dict[str, Any]:
    start = MONDAY + timedelta(days=day)
    return {
        "grain": grain,
        "window_start": start,
        "label": "2026-W49" if grain == "week" else start.strftime("%Y-%m-%d"),
        "channel": channel,
        "site": site,
        "language": "fr",
        "queue": None,
        "suppressed": suppressed,
        "kpis": kpis,
    }


def _every_channel() -> list[dict[str, Any]]:
    kpis = {"phone": PHONE, "chat": CHAT, "email": EMAIL, "social": SOCIAL, "survey": SURVEY}
    return [_row(channel, values, day=day) for day in range(3) for channel, values in kpis.items()]


def _render(rows: Sequence[dict[str, Any]], min_subjects: int = K) -> str:
    return render_html(rows, title="Weekly KPIs", period="Week 49, 2026", min_subjects=min_subjects)


def _own_part(document: str) -> str:
    """The document less plotly's library, whose own strings are not the report's."""
    library = get_plotlyjs()
    assert document.count(library) == 1
    return document.replace(library, "")


class _Page(HTMLParser):
    """The text a reader sees, and every attribute that could make the browser fetch."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "data", "poster"}:
                self.links.append((tag, name, value or ""))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_carries_plotly_inline_and_fetches_nothing() -> None:
    document = _render(_every_channel())
    own = _own_part(document)  # the library is inline: it is the body of a <script>
    page = _Page(own)

    assert document.startswith("<!DOCTYPE html>")
    assert f"<script>{get_plotlyjs()}</script>" in document
    assert page.links == []
    assert "link" not in page.tags
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", own, re.IGNORECASE)
    assert "default-src 'none'" in own  # the browser itself refuses any request


def test_a_suppressed_group_shows_as_less_than_k_and_never_its_figures() -> None:
    rows = [
        _row("phone", PHONE),
        # a suppressed row carrying figures by mistake: they must not surface anywhere
        _row("phone", {"offered": 987654, "asa_s": 86421.0}, site="Liège", suppressed=True),
    ]
    document = _own_part(_render(rows))
    text = " ".join(_Page(document).text)

    assert re.search(
        r'<tr class="withheld"><td>2026-11-30</td><td>Liège</td>.*&lt; 5</td></tr>', document
    )
    assert "< 5" in text
    assert "1 of 2 groups is shown as “< 5”: fewer than 5 distinct people" in text
    for figure in ("987654", "987,654", "86421", "1 d 0 h"):
        assert figure not in document
    assert _tile(document, "calls offered") == "120"  # the group that may be shown, alone
    assert _tile(document, "phone speed of answer") == "31 s"
    assert '"y":[120.0]' in document  # and alone in the volume chart


def test_k_is_the_threshold_the_report_is_given() -> None:
    rows = [_row("chat", CHAT), _row("chat", {}, site="Liège", suppressed=True)]
    text = " ".join(_Page(_own_part(_render(rows, min_subjects=10))).text)
    assert "< 10" in text
    assert "< 5" not in text


def test_every_chart_is_drawn_when_every_channel_has_data() -> None:
    document = _own_part(_render(_every_channel()))

    for chart in CHART_IDS:
        assert f'id="{chart}" class="plotly-graph-div"' in document
    assert NO_DATA not in document
    for trace in ("Phone (calls offered)", "Chat (conversations)", "Survey (survey responses)"):
        assert trace in document


@pytest.mark.parametrize(
    ("channel", "kpis", "drawn"),
    [
        ("phone", PHONE, {"chart-volumes", "chart-service-level", "chart-response-times"}),
        ("survey", SURVEY, {"chart-volumes", "chart-nps"}),
        ("social", {"comments": 12}, {"chart-volumes"}),
    ],
)
def test_a_chart_without_data_says_so(channel: str, kpis: dict[str, Any], drawn: set[str]) -> None:
    document = _own_part(_render([_row(channel, kpis, day=day) for day in range(2)]))

    assert {chart for chart in CHART_IDS if f'id="{chart}" class' in document} == drawn
    assert document.count(NO_DATA) == len(CHART_IDS) - len(drawn)


def test_an_empty_report_renders() -> None:
    document = _own_part(_render([]))
    text = " ".join(_Page(document).text)

    assert "Weekly KPIs" in text
    assert "Week 49, 2026" in text
    assert document.count(NO_DATA) == len(CHART_IDS)
    assert "plotly-graph-div" not in document
    assert "No groups in this period." in text
    assert "every group is shown" in text


def test_a_report_of_suppressed_groups_only_draws_nothing() -> None:
    rows = [_row("phone", {}, day=day, suppressed=True) for day in range(3)]
    document = _own_part(_render(rows))

    assert document.count(NO_DATA) == len(CHART_IDS)
    assert "3 of 3 groups are shown as" in document


def test_groups_combine_weighted_and_a_week_does_not_count_its_days_twice() -> None:
    rows = [
        _row("phone", {"offered": 100, "service_level": 0.9}),
        _row("phone", {"offered": 300, "service_level": 0.5}, site="Liège"),
        _row("phone", {"offered": 400, "service_level": 0.6, "complaints": 7}, grain="week"),
    ]
    document = _own_part(_render(rows))

    assert _tile(document, "calls offered") == "400"  # the days, not days and week
    assert _tile(document, "phone service level") == "60%"  # (90 + 150) / 400
    assert _tile(document, "complaints") == "7"  # only the week carries them


def _tile(document: str, caption: str) -> str:
    found = re.search(
        rf'<span class="figure">([^<]*)</span><span class="what">{re.escape(caption)}</span>',
        document,
    )
    assert found, caption
    return found.group(1)


def test_text_from_the_rows_and_the_caller_is_escaped() -> None:
    rows = [_row("phone", PHONE, site="</script><script>alert(1)</script>")]
    document = _own_part(
        render_html(rows, title="Q&A <b>KPIs</b>", period="<i>W49</i>", min_subjects=K)
    )

    assert "<script>alert(1)" not in document
    assert "<b>KPIs</b>" not in document
    assert "Q&amp;A &lt;b&gt;KPIs&lt;/b&gt;" in document


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="min_subjects"):
        _render([], min_subjects=0)
