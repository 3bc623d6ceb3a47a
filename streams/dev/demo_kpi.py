"""The demo's reporting step: a morning of contacts from 40 people on all five channels,
routed, counted by the reporting app (`contactflow run reporting`, as a subprocess), and
shown as a small KPI table and a self-contained HTML report."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.examples import example_events
from schemas.topic_names import CHANNELS
from streams.bootstrap import Container

Say = Callable[[str], None]
PEOPLE = 40
_SETTLED_S, _TIMEOUT_S = 3.0, 120.0


@dataclass
class KpiDemo:
    rows: list[dict[str, Any]] = field(default_factory=list)
    html: Path | None = None
    figures: int = 0


def run_kpis(root: Container, say: Say) -> KpiDemo:
    """Contacts of 40 people routed, counted by the reporting app, reported."""
    from streams.reporting.figures import in_period, report_rows
    from streams.reporting.html import render_html
    from streams.router.worker import RouterWorker

    sent = _produce_morning(root)
    say(f"reporting: {sent} contact event(s) of {PEOPLE} people produced and routed")
    RouterWorker(root).run(max_idle_s=2.0)
    figures = _count_with_app(root, say)
    today = _today_window()
    shown = in_period(figures, today.start, today.end)
    result = KpiDemo(figures=len(shown))
    result.rows = [r for r in report_rows(shown, ["channel"]) if r["grain"] == "day"]
    html = root.settings.data_dir / "kpi-report.html"
    page = render_html(report_rows(shown, ["channel", "site"]),
                       title="COMNEXIO contact centre - today's KPIs (demo)", period=today.label,
                       min_subjects=root.settings.kpi_min_subjects)  # fmt: skip
    html.write_text(page, encoding="utf-8")
    result.html = html
    say(f"reporting: {len(shown)} figure(s) for today; HTML report written to {html}")
    return result


def _today_window() -> Any:
    from processors.kpi import BRUSSELS, day_window

    return day_window(datetime.now(BRUSSELS))


def _produce_morning(root: Container) -> int:
    """Every example event of every channel, once per person, at a random time of the last
    three hours (so every window is still open), each person with their own number."""
    rng = random.Random()
    producer = root.producer()
    now = datetime.now(UTC)
    sent = 0
    for channel in CHANNELS:
        for template in example_events(channel):
            if template["envelope"].get("purpose", "contact_handling") != "contact_handling":
                continue  # the coaching recording is COMNEXIO's, not reporting's
            for person in range(PEOPLE):
                when = now - timedelta(seconds=rng.randrange(60, 3 * 3600))
                producer.send(channel, _copy_at(template, when, person, rng))
                sent += 1
    producer.flush()
    return sent


def _copy_at(template: dict[str, Any], when: datetime, person: int,
             rng: random.Random) -> dict[str, Any]:  # fmt: skip
    from streams.dev.demo import latest_time, shift_times

    event: dict[str, Any] = shift_times(copy.deepcopy(template), when - latest_time(template))
    envelope = event["envelope"]
    envelope["event_id"] = str(uuid.uuid4())
    envelope["contact_id"] = f"kpi-{uuid.uuid4().hex[:12]}"
    envelope["site"] = rng.choice(("gosselies", "eupen"))
    envelope["subject"] = {"phone": f"+32 470 20 {person // 100:02d} {person % 100:02d}"}
    _vary(event["kind"], event["payload"], when, rng)
    return event


def _vary(kind: str, payload: dict[str, Any], when: datetime, rng: random.Random) -> None:
    """Waits, answers and scores that differ from one contact to the next."""
    if kind == "inbound_call":
        queued = when - timedelta(seconds=rng.randrange(120, 600))
        payload["queued_at"] = queued.isoformat()
        payload["answered_at"] = (queued + timedelta(seconds=rng.randrange(3, 45))).isoformat()
    elif kind == "chatbot_session":
        payload["handed_to_agent"] = rng.random() < 0.4
    elif kind == "email_sent":
        waited = timedelta(minutes=rng.randrange(10, 8 * 60))
        payload["replied_to_received_at"] = (when - waited).isoformat()
    elif kind == "survey_answered":
        payload["score"] = rng.choice((3, 6, 7, 8, 9, 9, 10, 10))
        payload["csat"] = rng.choice((2, 3, 4, 4, 5, 5))


def _count_with_app(root: Container, say: Say) -> dict[str, dict[str, Any]]:
    """`contactflow run reporting` until its figures stop changing; the figures."""
    from streams.reporting.figures import published

    settings = root.settings
    log = settings.data_dir / "reporting-demo.log"
    env = {**os.environ, "CONTACTFLOW_BOOTSTRAP_SERVERS": settings.bootstrap,
           "CONTACTFLOW_TOPIC_PREFIX": settings.topic_prefix,
           "CONTACTFLOW_DATA_DIR": str(settings.data_dir),
           "CONTACTFLOW_KPI_PUBLISH_INTERVAL_S": "0.5"}  # fmt: skip
    say("reporting: starting the reporting app (contactflow run reporting)")
    with log.open("ab") as out:
        app = subprocess.Popen([sys.executable, "-m", "streams.cli.__main__", "run", "reporting"],
                               stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
        try:
            return _settled(lambda: published(root), say, app, log)
        finally:
            app.terminate()
            app.wait(30)


def _settled(read: Callable[[], dict[str, dict[str, Any]]], say: Say,
             app: subprocess.Popen[bytes], log: Path) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The figures once the app has published some of this run's and then nothing new for a
    few seconds (a second demo run starts with the first run's figures)."""
    deadline, since = time.monotonic() + _TIMEOUT_S, time.monotonic()
    last = {k: f["revision"] for k, f in read().items()}
    changed = False
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the reporting app stopped (exit {app.returncode}); see {log}")
        figures = read()
        seen = {k: f["revision"] for k, f in figures.items()}
        if seen != last:
            last, since, changed = seen, time.monotonic(), True
        elif changed and time.monotonic() - since >= _SETTLED_S:
            say(f"reporting: {len(figures)} figure(s) published on reporting.kpi.v1")
            return figures
        time.sleep(0.5)
    raise RuntimeError(f"the reporting app published no settled figures in {_TIMEOUT_S:.0f} s; "
                       f"see {log}")  # fmt: skip
