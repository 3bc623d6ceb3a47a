"""The typer applications and consoles shared by every command module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import typer
from rich.console import Console
from rich.markup import escape

from streams.bootstrap import Container, bootstrap
from streams.kafka.reachability import require_broker

app = typer.Typer(
    help="contactflow: GDPR-governed contact-centre events on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run the local Apache Kafka broker (KRaft).", no_args_is_help=True)
topics_app = typer.Typer(help="Topics as code (infra/topics.yaml).", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro contracts (schemas/avro).", no_args_is_help=True)
ledger_app = typer.Typer(help="The SQL ledger (system of record).", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(ledger_app, name="ledger")

console = Console(soft_wrap=True)  # long lines wrap in the terminal, not mid-message
err_console = Console(stderr=True, soft_wrap=True)


def container() -> Container:
    """The composition root for one CLI invocation."""
    return bootstrap()


def kafka_container() -> Container:
    """The composition root of a command that needs Kafka: it fails in one line, within
    CONTACTFLOW_CONNECT_TIMEOUT_S, when the broker cannot be reached."""
    root = bootstrap()
    require_broker(root.settings)
    return root


@contextmanager
def progress(label: str) -> Iterator[Callable[[str], None]]:
    """A `say` for long work: each line logged with its time and shown as the status (no
    source location: where in contactflow's code the line was printed is no news)."""
    with console.status(label) as status:

        def say(message: str) -> None:
            status.update(message)
            console.print(f"[log.time]{datetime.now().astimezone():[%X]}[/] {escape(message)}")

        yield say
