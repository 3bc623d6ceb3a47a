"""The reporting app lets go of a window's cell, with its subject tags and source offsets,
once the window's figure has been final for CONTACTFLOW_KPI_KEEP_CELLS_S, with no new
event needed: a tombstone on the cells' changelog, the final figure kept on
reporting.kpi.v1, and an event of that window taken in afterwards makes no new figure of
it (its day still counts it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reporting_flow import at, example, phone, reporting_app, send_and_route, wait_until

from processors.kpi import BRUSSELS, day_window, hour_window
from schemas.topic_names import REPORTING_CELLS_CHANGELOG
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import upgrade
from streams.reporting.figures import published

pytestmark = pytest.mark.integration

GROUP = "phone|gosselies|fr|ores-outage-fr"
KEEP_S = 5.0
GRACE_MARGIN_S = 45.0  # the app's start and first figures fit well within it


def _call(when: datetime, who: str) -> tuple[str, dict[str, Any]]:
    event = at(example("phone", "inbound_call"), when, phone=who)
    event["envelope"].update({"site": "gosselies", "language": "fr"})
    return "phone", event


def _tombstoned(container: Any) -> dict[str, float]:
    """Cell key -> when its tombstone was written (epoch seconds)."""
    topic = container.topics.name(REPORTING_CELLS_CHANGELOG)
    messages = read_all(container.settings.kafka_client_config(), topic, timeout=30.0)
    return {m.key().decode(): m.timestamp()[1] / 1000 for m in messages
            if m.key() is not None and m.value() is None}  # fmt: skip


def test_a_window_final_for_its_keep_time_is_let_go_of(container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    load_keys(container.settings)
    local = datetime.now(UTC).astimezone(BRUSSELS)
    when = local.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=50)
    hour, day = hour_window(when), day_window(when)
    hour_key, day_key = f"hour|{hour.label}|{GROUP}", f"day|{day.label}|{GROUP}"
    send_and_route(container, [_call(when, phone(n)) for n in (1, 2, 3)])
    # The hour ended up to an hour ago: a grace period ending GRACE_MARGIN_S from now
    # counts the three calls just routed, and the app lets go of the hour KEEP_S later.
    grace_ends = time.time() + GRACE_MARGIN_S
    grace_s = grace_ends - hour.end.timestamp()
    env = {"CONTACTFLOW_KPI_MIN_SUBJECTS": "2", "CONTACTFLOW_KPI_PUBLISH_INTERVAL_S": "0.5",
           "CONTACTFLOW_KPI_GRACE_S": f"{grace_s:.3f}", "CONTACTFLOW_KPI_KEEP_CELLS_S": str(KEEP_S),
           "CONTACTFLOW_KPI_FORGET_INTERVAL_S": "1", "CONTACTFLOW_LOG_LEVEL": "INFO"}  # fmt: skip
    log = tmp_path / "reporting.log"
    with reporting_app(container, log, **env):
        wait_until(lambda: hour_key in published(container), "the hour's figure", log,
                   timeout=GRACE_MARGIN_S)  # fmt: skip
        assert time.time() < grace_ends, "the figure came after the grace period: no test"
        wait_until(lambda: published(container)[hour_key]["final"], "the final figure", log,
                   timeout=GRACE_MARGIN_S + 30)  # fmt: skip
        # The app looks its partitions over every second (no new event needed) and lets
        # the hour go KEEP_S after its grace period, by the wall clock it runs on.
        wait_until(lambda: hour_key in _tombstoned(container), "the hour's tombstone", log)
        assert _tombstoned(container)[hour_key] >= grace_ends + KEEP_S - 0.1, "too early"
        # A fourth call of the same hour: counted in its day only.
        send_and_route(container, [_call(when, phone(4))])
        wait_until(lambda: published(container)[day_key]["measures"]["offered"] == 4,
                   "the day counting the fourth call", log)  # fmt: skip
    figures = published(container)
    assert figures[hour_key]["final"]
    assert figures[hour_key]["measures"]["offered"] == 3  # not replaced by the fourth alone
    assert day_key not in _tombstoned(container)
    said = log.read_text()
    assert "let go of 1 cell(s) of partition" in said
    assert "final for over 5 s" in said
    assert "+32" not in said  # counts and partitions only: no phone number
