"""`deadletters purge --older-than`: the durations it takes and the ones it refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from streams.cli.deadletters import parse_age


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("3d", timedelta(days=3)),
        ("3", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("1.5h", timedelta(minutes=90)),
        ("30m", timedelta(minutes=30)),
        ("0", timedelta(0)),
        (" 2d ", timedelta(days=2)),
    ],
)
def test_ages_are_read_in_days_hours_or_minutes(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "-1d", "3w", "d", "soon", "1e3"])
def test_other_spellings_are_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected a duration"):
        parse_age(text)
