"""Usage errors of the console script are one line naming where help is, exit 2; help and
the exit codes commands choose are unchanged."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from streams.cli import main


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["contactflow", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    code = stopped.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("CONTACTFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CONTACTFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("dsr", "submit", "--bogus"),
         "error: No such option: --bogus (try contactflow dsr submit --help)"),
        (("hold", "release"),
         "error: Missing argument 'hold_id'. (try contactflow hold release --help)"),
        (("bogus",), "error: No such command 'bogus'. (try contactflow --help)"),
        (("dsr", "status", "--format", "xml"), "'xml' is not one of 'table', 'json'"),
        (("topics", "list", "--format", "xml"), "Invalid value for --format: table or json"),
        (("lag", "--max-lag", "-1"), "(try contactflow lag --help)"),
    ],
)  # fmt: skip
def test_a_usage_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...], said: str,
) -> None:  # fmt: skip
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert said in lines[0]
    assert "╭" not in err
    assert "Usage:" not in err


def test_help_and_chosen_exit_codes_are_unchanged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _main(monkeypatch, capsys, "--help")
    assert code == 0
    assert "Usage: contactflow" in out
    code, out, _ = _main(monkeypatch, capsys, "dsr", "submit", "--help")
    assert code == 0
    assert "--verified-by" in out
    code, out, err = _main(monkeypatch, capsys)  # no arguments: the help, as before
    assert code == 2
    assert "Usage: contactflow" in out + err
    code, out, _ = _main(monkeypatch, capsys, "dsr")
    assert code == 2
    assert "submit" in out
    code, out, _ = _main(monkeypatch, capsys, "broker", "status")  # typer.Exit(1): not running
    assert code == 1
