"""The CLI's progress lines: each says what happens and when, not where in our code."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from streams.cli import _app


def test_progress_lines_carry_no_source_location(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(_app, "console", Console(file=out, width=200, force_terminal=False))
    with _app.progress("demo") as say:
        say("router: 10 event(s) routed")
    line = out.getvalue().strip()
    assert "router: 10 event(s) routed" in line
    assert "_app.py" not in line
    assert ".py:" not in line
