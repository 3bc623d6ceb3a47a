"""`contactflow broker up | down | status | install`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from streams.cli._app import broker_app, console, container


@broker_app.command("up")
def broker_up(
    secure: Annotated[
        bool | None,
        typer.Option(
            "--secure/--plain",
            help="SASL/SCRAM-SHA-512 and ACLs on the client listener (for a new storage; "
            "default CONTACTFLOW_BROKER_SECURE).",
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option("--tls", help="Also TLS on the client listener (local self-signed CA)."),
    ] = None,
) -> None:
    """Start the broker (installing its jars on first use) and wait until it answers."""
    root = container()
    with console.status("starting broker") as status:
        state = root.broker.up(report=lambda msg: status.update(msg), secure=secure, tls=tls)
    console.print(
        f"[green]broker up[/] Apache Kafka {state.kafka_version} on {state.bootstrap} "
        f"(pid {state.pid}, data {state.data_dir}, {state.security})"
    )
    security = root.broker.security
    if security.secure:
        console.print(
            f"super user 'admin': password in {security.admin_password_file} (owner-only); "
            "connect as it with CONTACTFLOW_KAFKA_USERNAME=admin "
            f"CONTACTFLOW_KAFKA_PASSWORD_FILE={security.admin_password_file}"
        )
    if security.mode == "sasl_ssl":
        console.print(
            f"TLS: clients trust the local CA with CONTACTFLOW_KAFKA_SSL_CA_LOCATION="
            f"{security.ca_file}"
        )


@broker_app.command("down")
def broker_down() -> None:
    """Stop the broker started by `broker up`."""
    root = container()
    if root.broker.down(report=console.print):
        console.print("[green]broker stopped[/]")
    else:
        console.print("no broker running")


@broker_app.command("status")
def broker_status() -> None:
    """Report whether the broker runs, where, and how many topics it has; exit 1 if down."""
    state = container().broker.status()
    table = Table(show_header=False, box=None)
    table.add_row("running", "[green]yes[/]" if state.running else "[red]no[/]")
    table.add_row("pid", str(state.pid or "-"))
    table.add_row("bootstrap", state.bootstrap)
    table.add_row("kafka", state.kafka_version)
    table.add_row("security", state.security)
    table.add_row("topics", "-" if state.topics is None else str(state.topics))
    table.add_row("data", str(state.data_dir))
    table.add_row("log", str(state.log_file))
    console.print(table)
    if not state.running:
        raise typer.Exit(1)


@broker_app.command("install")
def broker_install() -> None:
    """Fetch and verify the pinned Kafka jars without starting anything."""
    distribution = container().broker.distribution
    with console.status("installing Kafka jars") as status:
        libs = distribution.install(report=lambda msg: status.update(msg))
    console.print(f"[green]Apache Kafka {distribution.version}[/] jars verified in {libs}")
