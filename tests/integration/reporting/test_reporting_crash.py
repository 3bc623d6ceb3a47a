"""The reporting app SIGKILLed mid-stream and restarted counts every event exactly once:
`contactflow kpi verify` (a read_committed recomputation from the tagged topics) agrees
with what it published."""

from __future__ import annotations

import random
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reporting_flow import (
    AppProgress,
    at,
    example,
    phone,
    reporting_app,
    run_cli,
    send_and_route,
    wait_until,
)

from schemas.topic_names import CONTACT_COMNEXIO, CONTACT_ORES
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.reporting.figures import published

pytestmark = pytest.mark.integration

KINDS = (
    ("phone", "inbound_call"), ("phone", "callback_requested"), ("chat", "chatbot_session"),
    ("email", "email_received"), ("email", "email_sent"), ("survey", "survey_answered"),
    ("social", "comment_received"), ("social", "moderated"),
)  # fmt: skip
EVENTS, PEOPLE = 12_000, 60


def _workload(now: datetime) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    rng = random.Random(14)
    examples = [(channel, example(channel, kind)) for channel, kind in KINDS]
    out = []
    for n in range(EVENTS):
        channel, event = examples[n % len(examples)]
        when = now - timedelta(seconds=rng.randrange(0, 3 * 3600))
        out.append((channel, at(event, when, phone=phone(rng.randrange(PEOPLE)))))
    return out


def test_sigkill_mid_stream_then_verify_agrees(container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    send_and_route(container, _workload(datetime.now(UTC)))
    log = tmp_path / "reporting.log"
    progress = AppProgress(container, (CONTACT_ORES, CONTACT_COMNEXIO))
    try:
        with reporting_app(container, log) as app:
            wait_until(lambda: progress.committed() > 0, "a first commit", log)
            app.send_signal(signal.SIGKILL)
            app.wait(10)
        killed_at = progress.committed()
        # each partition ends on a transaction marker; more than that is left to read
        assert progress.backlog() > progress.partitions, "the app read everything: too fast"
        with reporting_app(container, log):
            wait_until(lambda: _verified(container), "kpi verify to agree", log, timeout=300)
    finally:
        progress.close()
    assert killed_at > 0
    figures = published(container)
    counted = sum(f["measures"].get("offered", 0) + f["measures"].get("conversations", 0)
                  for k, f in figures.items() if k.startswith("day|"))  # fmt: skip
    shown_or_withheld = {f["suppressed"] for f in figures.values()}
    assert counted > 0
    assert False in shown_or_withheld, "some group reaches k"


def _verified(container) -> bool:  # type: ignore[no-untyped-def]
    today = datetime.now(UTC).date()
    result = run_cli(container, "kpi", "verify", "--from", str(today - timedelta(days=1)),
                     "--to", str(today + timedelta(days=1)))  # fmt: skip
    return result.returncode == 0 and "agree" in result.stdout
