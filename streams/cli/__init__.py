"""The `contactflow` command line: one program, one subcommand per job."""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape
from sqlalchemy.exc import OperationalError, ProgrammingError

from streams.cli import (  # noqa: F401 - each module registers its commands
    acl,
    bench,
    broker,
    deadletters,
    demo,
    downstream,
    dsr,
    kpi,
    ledger,
    produce,
    retention,
    run,
    schemas,
    status,
    topics,
)
from streams.cli._app import app, err_console
from streams.errors import ContactflowError
from streams.ledger.errors import LedgerError
from streams.settings import KAFKA_CLIENT_LOGGER, load_settings


def _configure_logging(level: str) -> None:
    """Warnings and errors to stderr; librdkafka's own lines (each retry against a broker
    that is away, each refused connection) only at DEBUG: contactflow says what matters
    in its own words, once per interval."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        logging.getLogger(KAFKA_CLIENT_LOGGER).setLevel(logging.CRITICAL)


def usage_error_line(exc: typer.TyperException) -> str:
    """A usage error (unknown option or command, missing argument, bad value) as one line
    naming where help is, `No such option: --bogus (try contactflow dsr submit --help)`,
    instead of click's usage lines and boxed panel."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (try {ctx.command_path} --help)" if ctx is not None else ""
    return f"{message}{hint}"


def _run_app() -> int:
    """The app without click's standalone handling, so that usage errors come back as
    exceptions and are shown in one line; `--help`, the help shown for no arguments and
    `typer.Exit(code)` keep their output and exit codes."""
    try:
        result = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's UsageError (exit 2) and its kin
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one's help is shown already
            err_console.print(f"[red]error:[/] {escape(usage_error_line(exc))}")
        return exc.exit_code
    except typer.Abort:  # EOF at a prompt
        err_console.print("[red]error:[/] aborted")
        return 1
    return result if isinstance(result, int) else 0  # an Exit's code comes back as a value


def main() -> None:
    """Console-script entry point: user-facing errors become one line and exit code 2."""
    try:
        _configure_logging(load_settings().log_level)
        sys.exit(_run_app())
    except ContactflowError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except LedgerError as exc:  # a refusal of the ledger's rules: its message says which
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except (OperationalError, ProgrammingError) as exc:  # never quote the database's text
        err_console.print(
            f"[red]error:[/] the ledger cannot be read ({type(exc.orig).__name__}); if it "
            "was never migrated run `contactflow ledger upgrade`, else check "
            "CONTACTFLOW_DATABASE_URL"
        )
        sys.exit(2)


__all__ = ["app", "main", "usage_error_line"]
