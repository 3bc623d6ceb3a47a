"""`contactflow downstream serve`: answer privacy commands as the reference consumer does."""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from streams.cli._app import app, console, container

if TYPE_CHECKING:
    from streams.runtime.health import Check
    from streams.sdk.downstream.client import DownstreamConsumer

downstream_app = typer.Typer(
    help="Downstream consumers: receive privacy commands, acknowledge them.",
    no_args_is_help=True,
)
app.add_typer(downstream_app, name="downstream")


@downstream_app.command("serve")
def downstream_serve(
    consumer: Annotated[
        list[str] | None,
        typer.Option("--consumer", help="A registered consumer to answer for (repeatable)."),
    ] = None,
    all_consumers: Annotated[
        bool, typer.Option("--all", help="Answer for every consumer in infra/consumers.yaml.")
    ] = False,
    max_idle: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a record.")
    ] = None,
) -> None:
    """Answer commands with the reference consumer (streams.sdk.downstream.example): erase with
    held recordings -> retained_under_hold, everything else -> done. One line per answer;
    Ctrl-C or SIGTERM stops after the batch in hand and prints the summary. A broker that
    is not up yet, or goes away, is waited for (one warning line per 30 s); a Kafka call
    that blocks past its timeout restarts the process in place (nothing answered is lost)."""
    from streams.cli.run import worker_endpoints
    from streams.kafka.reachability import wait_for_broker
    from streams.runtime.health import Heartbeat
    from streams.runtime.watchdog import restart_in_place
    from streams.sdk.downstream.client import HEALTH_STALE_S, load_registry
    from streams.sdk.downstream.example import serve_registered

    if all_consumers == bool(consumer):
        raise typer.BadParameter("give --all or at least one --consumer NAME, not both")
    root = container()
    root.service_name = "contactflow-downstream"
    names = sorted(load_registry(root).consumers) if all_consumers else list(consumer or [])
    previous = signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    heartbeat = Heartbeat(HEALTH_STALE_S)
    endpoints = worker_endpoints(root, heartbeat, ledger=False)

    def started(consumers: list[DownstreamConsumer]) -> None:
        endpoints.started(_first_problem([c.assignment_problem for c in consumers]),
                          live=_first_problem([c.heartbeat.check for c in consumers]))  # fmt: skip

    try:
        try:  # a broker not up yet is waited for, with one line now and then
            wait_for_broker(root.settings, "downstream serve", sleep=heartbeat.sleep)
        except KeyboardInterrupt:
            return
        console.print(f"answering for {', '.join(names)} from {root.settings.bootstrap}")
        results = serve_registered(root, names, max_idle_s=max_idle, say=_say,
                                   on_stuck=restart_in_place("downstream serve"),
                                   on_started=started)  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
        endpoints.close()
    for name, stats in results.items():
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(stats.answered.items())) or "none"
        console.print(
            f"{name}: {stats.received} received, answered: {outcomes}; "
            f"{stats.ignored} for other consumers, {stats.unreadable} unreadable"
        )


def _first_problem(checks: list[Check]) -> Check:
    """One check of several: the first problem any of them has."""
    return lambda: next((p for p in (check() for check in checks) if p is not None), None)


def _say(line: str) -> None:
    """Ids as they are: no rich markup or highlighting applied to them."""
    console.print(line, markup=False, highlight=False)


def _stop_like_ctrl_c(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM stops as Ctrl-C does: the batch in hand is answered, then the summary."""
    raise KeyboardInterrupt
