"""Durations as a person reads them in a table or a log line: `3 d`, `1 d 12 h`, `5 s`."""

from __future__ import annotations


def human_duration(ms: object) -> str:
    """Milliseconds as days and hours (`3 d`, `40 d`, `12 h`); -1 is forever."""
    if not isinstance(ms, int):
        return "-"
    if ms < 0:
        return "forever"
    days, rest = divmod(ms, 86_400_000)
    hours = rest // 3_600_000
    if days and hours:
        return f"{days} d {hours} h"
    if days:
        return f"{days} d"
    return f"{hours} h" if hours else f"{ms // 1000} s"
