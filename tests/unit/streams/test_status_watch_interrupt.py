"""`contactflow status --watch`: Ctrl-C ends the watch after the snapshot being taken,
never in the middle of it (a Kafka client interrupted mid-call could hang the process at
exit: seen as `status --watch` still running 30 s after Ctrl-C)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import typer

from streams.cli.status import _show


def test_ctrl_c_during_a_snapshot_lets_it_finish_then_ends_the_watch() -> None:
    taken: list[str] = []

    def take() -> tuple[str, int]:
        taken.append("started")
        if len(taken) == 3:  # the third snapshot: Ctrl-C arrives in the middle of it
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a client call still running when the signal comes
            taken.append("finished")
            return "second", 3
        return "first", 0

    before = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    with pytest.raises(typer.Exit) as ended:
        _show(take, 0.1, redraw=False)
    assert taken == ["started", "started", "started", "finished"]  # not cut short
    assert ended.value.exit_code == 3  # the last snapshot's code
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_a_second_ctrl_c_stops_at_once() -> None:
    def take() -> tuple[str, int]:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        raise AssertionError("not reached: the second Ctrl-C interrupts the snapshot")

    with pytest.raises(typer.Exit) as ended:
        _show(take, 0.1, redraw=False)
    assert ended.value.exit_code == 0
