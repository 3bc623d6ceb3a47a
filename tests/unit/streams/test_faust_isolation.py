"""The faust apps read only committed records: the router writes in transactions, and an
aborted batch is written again by its next attempt."""

from __future__ import annotations

import faust

from streams.kafka.faust_isolation import isolation_of, read_committed


def test_read_committed_changes_what_the_app_consumer_asks_for() -> None:
    app = faust.App("isolation-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    assert isolation_of(app) == "read_uncommitted", "faust's own default"
    read_committed(app)
    assert isolation_of(app) == "read_committed"


def test_both_faust_apps_of_contactflow_read_committed() -> None:
    """Each app calls read_committed on the app it builds (checked in their source, as
    building them needs a broker, a ledger and keys)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "streams"
    for app_module in (root / "control" / "app.py", root / "reporting" / "app.py"):
        assert "read_committed(app)" in app_module.read_text(), app_module
