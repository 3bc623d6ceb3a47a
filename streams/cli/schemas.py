"""`contactflow schemas list | check`: the Avro contracts and their evolution."""

from __future__ import annotations

import typer
from rich.table import Table

from streams.cli._app import console, container, err_console, schemas_app


@schemas_app.command("list")
def schemas_list() -> None:
    """Every contract version with its fingerprint and its personal-data fields."""
    catalog = container().schemas
    table = Table("contract", "version", "fingerprint", "pii fields")
    for contract in sorted(catalog.contracts(), key=lambda c: (c.name, c.version)):
        table.add_row(
            contract.short_name, str(contract.version), contract.fingerprint_hex,
            str(len(contract.pii_fields)),
        )  # fmt: skip
    console.print(table)


@schemas_app.command("check")
def schemas_check() -> None:
    """BACKWARD compatibility of each version with the previous one, and the fingerprint
    lock (published versions never change); exit 1 on any problem."""
    from schemas.compat import check_catalog
    from schemas.lock import check_lock, read_lock

    catalog = container().schemas
    problems = [str(problem) for problem in check_catalog(catalog)]
    problems += check_lock(catalog, read_lock())
    for problem in problems:
        err_console.print(problem)
    if problems:
        err_console.print(f"[red]{len(problems)} problem(s)[/]")
        raise typer.Exit(1)
    console.print(f"schemas: {len(catalog)} contract versions, all BACKWARD compatible and locked")
