"""The HTML KPI report in a real headless Chromium: it draws every chart, logs no error, asks
the network for nothing, and leaves a screenshot for a person to look at.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python client: no
browser is downloaded. The page and its screenshot are kept under CONTACTFLOW_TEST_ARTEFACTS
when it is set (`.ci/run` sets it), else under the test's tmp_path.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from streams.reporting.html import render_html

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
BRUSSELS = ZoneInfo("Europe/Brussels")
MIN_SUBJECTS = 5
FIRST_DAY = datetime(2026, 11, 30, tzinfo=BRUSSELS)  # a Monday: one ISO week, W49
DAYS = 7
SITES = ("Namur", "Liège")
CHART_IDS = ("chart-volumes", "chart-service-level", "chart-nps", "chart-response-times")
LOCAL_URL = re.compile(r"^(file|data|blob|about):")
ALL_CHARTS_DRAWN = """() => {
  const charts = [...document.querySelectorAll('.plotly-graph-div')];
  return charts.length > 0 && charts.every(chart => chart.querySelector('.main-svg'));
}"""


def _window(day: int) -> tuple[datetime, str]:
    start = FIRST_DAY + timedelta(days=day)
    return start, start.strftime("%Y-%m-%d")


def _group(
    grain: str, day: int, channel: str, site: str | None, queue: str | None, kpis: dict[str, Any]
) -> dict[str, Any]:
    start, label = _window(day)
    if grain == "week":
        label = "{}-W{:02d}".format(*start.isocalendar()[:2])
    return {
        "grain": grain,
        "window_start": start,
        "label": label,
        "channel": channel,
        "site": site,
        "language": "fr",
        "queue": queue,
        "suppressed": not kpis,
        "kpis": kpis,
    }


def _phone(rng: random.Random, volume: int) -> dict[str, Any]:
    abandoned = round(volume * rng.uniform(0.03, 0.12))
    responses = round(volume * 0.07)
    return {
        "offered": volume,
        "answered": volume - abandoned,
        "abandoned": abandoned,
        "service_level": round(rng.uniform(0.62, 0.93), 4),
        "asa_s": round(rng.uniform(14, 75), 1),
        "aht_s": round(rng.uniform(240, 430), 1),
        "callbacks_requested": round(volume * 0.05),
        "callbacks_done": round(volume * 0.045),
        "responses": responses,
        "nps": round(rng.uniform(5, 45), 1),
        "csat": round(rng.uniform(3.6, 4.5), 2),
    }


def _chat(rng: random.Random, volume: int) -> dict[str, Any]:
    bot_only = rng.uniform(0.35, 0.55)
    return {
        "conversations": volume,
        "bot_only_share": round(bot_only, 4),
        "handed_share": round(1 - bot_only, 4),
        "first_response_s": round(rng.uniform(18, 65), 1),
        "responses": round(volume * 0.1),
        "nps": round(rng.uniform(-5, 35), 1),
    }


def _email(rng: random.Random, volume: int) -> dict[str, Any]:
    return {
        "emails_received": volume,
        "emails_answered": round(volume * rng.uniform(0.8, 0.97)),
        "email_response_s": round(rng.uniform(3, 9) * 3600, 1),
        "responses": round(volume * 0.06),
        "nps": round(rng.uniform(-20, 20), 1),
    }


def _social(rng: random.Random, volume: int) -> dict[str, Any]:
    return {
        "comments": volume,
        "moderated": round(volume * 0.4),
        "social_response_s": round(rng.uniform(20, 95) * 60, 1),
    }


def _survey(rng: random.Random, volume: int) -> dict[str, Any]:
    return {"responses": volume, "nps": round(rng.uniform(0, 40), 1), "csat": 4.1}


def realistic_rows(seed: int = 49) -> list[dict[str, Any]]:
    """A week of day rows on all five channels at two sites, week rows with complaints, and
    groups too small to show (k = 5): a quiet Sunday queue, Saturday's social media."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for day in range(DAYS):
        busy = 0.35 if day >= 5 else 1.0
        for site, size in zip(SITES, (1.0, 0.6), strict=True):
            volume = busy * size
            for queue, base in (("outage", 520), ("billing", 310)):
                quiet = day == 6 and site == "Liège" and queue == "billing"
                kpis = {} if quiet else _phone(rng, round(base * volume * rng.uniform(0.85, 1.2)))
                rows.append(_group("day", day, "phone", site, queue, kpis))
            rows.append(_group("day", day, "chat", site, "web", _chat(rng, round(260 * volume))))
            rows.append(
                _group("day", day, "email", site, "service", _email(rng, round(180 * volume)))
            )
            rows.append(_group("day", day, "survey", site, "sms", _survey(rng, round(40 * volume))))
        social = {} if day == 5 else _social(rng, round(70 * busy))
        rows.append(_group("day", day, "social", None, None, social))
    for site in SITES:
        rows.append(
            _group("week", 0, "phone", site, "complaints", {"complaints": rng.randint(6, 14)})
        )
        rows.append(
            _group("week", 0, "email", site, "complaints", {"complaints": rng.randint(3, 9)})
        )
    rows.append(_group("week", 0, "social", None, "complaints", {}))
    return rows


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    """Where the page and its screenshot are kept after the test."""
    kept = os.environ.get("CONTACTFLOW_TEST_ARTEFACTS")
    directory = Path(kept) if kept else tmp_path / "artefacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing, the test fails with how to install it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the HTML report's browser test needs Debian's Chromium "
            "(apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield opened
    opened.close()


def test_the_report_draws_every_chart_offline_without_an_error(page: Page, artefacts: Path) -> None:
    report = artefacts / "kpi-report.html"
    report.write_text(
        render_html(
            realistic_rows(),
            title="ORES contact centre: weekly KPIs",
            period="Week 49: Monday 30 November to Sunday 6 December 2026",
            min_subjects=MIN_SUBJECTS,
        ),
        encoding="utf-8",
    )
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda message: _keep_error(message, errors))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("request", lambda request: _keep_outside(request, outside))

    page.goto(report.as_uri(), wait_until="load")
    page.wait_for_function(ALL_CHARTS_DRAWN, timeout=30_000)
    screenshot = artefacts / "kpi-report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"HTML report: {report} ({report.stat().st_size:,} bytes); screenshot: {screenshot}")

    assert errors == []
    assert outside == []
    for chart in CHART_IDS:
        assert page.locator(f"#{chart} .main-svg").count() >= 1, chart
    assert page.locator(".no-data").count() == 0
    assert "< 5" in page.locator("tr.withheld").first.inner_text()
    assert page.locator("tr.withheld").count() == 3
    assert page.locator("#chart-volumes .legendtext").count() == 5  # one line per channel


def _keep_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(f"console: {message.text}")


def _keep_outside(request: Request, outside: list[str]) -> None:
    if not LOCAL_URL.match(request.url):
        outside.append(request.url)
