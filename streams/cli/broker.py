"""`contactflow broker up | down | status | install`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from streams.cli._app import broker_app, console, container
from streams.ops.broker import Broker


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
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            min=1,
            max=5,
            help="1, or a KRaft cluster of 3-5 nodes on 127.0.0.1 (for a new storage; "
            "default CONTACTFLOW_BROKER_NODES). Node N listens on the broker and controller "
            "ports + 100*(N-1).",
        ),
    ] = None,
) -> None:
    """Start the broker (installing its jars on first use) and wait until it answers.

    On an existing cluster storage, start whichever of its nodes are not running."""
    root = container()
    with console.status("starting broker") as status:
        state = Broker(root.settings).up(
            report=lambda msg: status.update(msg), secure=secure, tls=tls, nodes=nodes
        )
    if state.nodes:
        pids = ", ".join(f"{n.node_id}:{n.pid}" for n in state.nodes)
        console.print(
            f"[green]cluster up[/] Apache Kafka {state.kafka_version}, {len(state.nodes)} "
            f"nodes on {state.bootstrap} (pids {pids}, data {state.data_dir})"
        )
        console.print(f"clients: CONTACTFLOW_BOOTSTRAP_SERVERS={state.bootstrap}")
        return
    console.print(
        f"[green]broker up[/] Apache Kafka {state.kafka_version} on {state.bootstrap} "
        f"(pid {state.pid}, data {state.data_dir}, {state.security})"
    )
    security = Broker(root.settings).security
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
    """Stop the broker started by `broker up` (every node of a cluster)."""
    root = container()
    if Broker(root.settings).down(report=console.print):
        console.print("[green]broker stopped[/]")
    else:
        console.print("no broker running")


@broker_app.command("status")
def broker_status() -> None:
    """Report whether the broker runs, where, and how many topics it has; exit 1 if down.

    A cluster also lists each node; it counts as running while any node answers."""
    state = Broker(container().settings).status()
    table = Table(show_header=False, box=None)
    answering = sum(n.answering for n in state.nodes)
    if state.nodes and state.running and answering < len(state.nodes):
        running = f"[yellow]degraded[/] ({answering} of {len(state.nodes)} nodes answering)"
    else:
        running = "[green]yes[/]" if state.running else "[red]no[/]"
    table.add_row("running", running)
    table.add_row("pid", str(state.pid or "-"))
    table.add_row("bootstrap", state.bootstrap)
    table.add_row("kafka", state.kafka_version)
    table.add_row("security", state.security)
    table.add_row("topics", "-" if state.topics is None else str(state.topics))
    table.add_row("data", str(state.data_dir))
    logs = state.data_dir / "node-*" / "logs" / "server.log" if state.nodes else state.log_file
    table.add_row("log", str(logs))
    console.print(table)
    if state.nodes:
        nodes = Table("node", "pid", "port", "controller port", "state")
        for node in state.nodes:
            if node.answering:
                verdict = "[green]answering[/]"
            else:
                verdict = "[yellow]not answering[/]" if node.pid else "[red]stopped[/]"
            nodes.add_row(
                str(node.node_id), str(node.pid or "-"), str(node.port),
                str(node.controller_port), verdict,
            )  # fmt: skip
        console.print(nodes)
    if not state.running:
        raise typer.Exit(1)


@broker_app.command("install")
def broker_install() -> None:
    """Fetch and verify the pinned Kafka jars without starting anything."""
    distribution = Broker(container().settings).distribution
    with console.status("installing Kafka jars") as status:
        libs = distribution.install(report=lambda msg: status.update(msg))
    console.print(f"[green]Apache Kafka {distribution.version}[/] jars verified in {libs}")
