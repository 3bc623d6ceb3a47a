"""`contactflow ledger upgrade | verify`: the SQL system of record."""

from __future__ import annotations

import typer

from streams.cli._app import console, container, err_console, ledger_app


@ledger_app.command("upgrade")
def ledger_upgrade() -> None:
    """Apply the ledger's migrations up to the newest (creating an SQLite file if needed)."""
    from streams.ledger import current_revision, head_revision, upgrade

    root = container()
    before = current_revision(root.ledger_engine)
    upgrade(
        root.settings.resolved_database_url(), connect_timeout_s=root.settings.connect_timeout_s
    )
    after = current_revision(root.ledger_engine)
    if before == after:
        console.print(f"ledger: already at revision {after} (head {head_revision()})")
    else:
        console.print(f"ledger: migrated from {before or 'empty'} to {after}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check the audit log's hash chain; exit 1 if an entry was altered or removed."""
    from streams.ledger import session_factory, verify_chain

    root = container()
    with session_factory(root.ledger_engine)() as session:
        report = verify_chain(session)
    if report.ok:
        console.print(f"audit log intact: {report.entries_checked} entries checked")
        return
    for problem in report.problems:
        err_console.print(f"audit entry {problem.entry_id}: {problem.reason}")
    raise typer.Exit(1)
