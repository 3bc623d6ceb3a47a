"""The `contactflow` command line: one program, one subcommand per job."""

from __future__ import annotations

import sys

from streams.cli import broker, topics  # noqa: F401 - each module registers its commands
from streams.cli._app import app, err_console
from streams.errors import ContactflowError


def main() -> None:
    """Console-script entry point: user-facing errors become one line and exit code 2."""
    try:
        app()
    except ContactflowError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(exc.exit_code)


__all__ = ["app", "main"]
