"""`contactflow run router`: the long-running workers."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from streams.cli._app import app, console, container

run_app = typer.Typer(help="Run a contactflow worker until stopped.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("router")
def run_router(
    max_idle: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without input.")
    ] = None,
) -> None:
    """Route raw contact events: validate, pseudonymise, tag, encrypt, exactly once.

    Stop with Ctrl-C or SIGTERM: the batch in flight is committed first. Run several with
    distinct CONTACTFLOW_ROUTER_INSTANCE values to share the partitions.
    """
    import signal
    import threading

    from streams.reachability import wait_for_broker
    from streams.router.worker import RouterWorker
    from streams.watchdog import CallWatchdog, restart_in_place

    root = container()
    root.service_name = f"contactflow-router-{root.settings.router_instance}"
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    if not wait_for_broker(root.settings, "router", stop=stopping):
        return
    watchdog = CallWatchdog(restart_in_place(f"router {root.settings.router_instance}")).start()
    worker = RouterWorker(root, watchdog=watchdog)
    worker.install_signal_handlers()
    if stopping.is_set():
        worker.stop()
    console.print(
        f"router {root.settings.router_instance} consuming {len(worker.pipeline.input_topics)} "
        f"raw topics from {root.settings.bootstrap}"
    )
    try:
        stats = worker.run(max_idle_s=max_idle, ready=lambda: console.print("router ready"))
    finally:
        watchdog.close()
    console.print(
        f"router stopped: {stats.events_in} event(s) in {stats.batches} batch(es), "
        f"{stats.outputs} output(s), {stats.aborted} aborted batch(es)"
    )


@run_app.command("privacy")
def run_privacy() -> None:
    """The control plane (faust-streaming): data-subject requests (intake, ORES's
    instructions, acknowledgements, deadlines), recording registration, the holds that
    complaints, fraud attempts and disputes signal, and the expiry sweep."""
    import faust

    from streams.control.app import create_control_app
    from streams.ledger import upgrade
    from streams.privacy.config import load_privacy_config
    from streams.privacy.service import PrivacyService
    from streams.reachability import OutageMonitor, wait_for_broker
    from streams.retention.service import RetentionService
    from streams.router.worker import load_policy, utc_now

    root = container()
    root.service_name = "contactflow-privacy"
    if not wait_for_broker(root.settings, "privacy app"):
        return
    service = RetentionService(
        root, actor="privacy-app", grace_days=load_policy(root).release_grace_days
    )
    upgrade(root.settings.resolved_database_url())
    privacy = PrivacyService(root, load_privacy_config(root), actor="privacy-app")
    app = create_control_app(
        root, service, utc_now, sweep_interval_s=root.settings.retention_sweep_interval_s,
        privacy=privacy, deadline_interval_s=root.settings.privacy_deadline_interval_s,
    )  # fmt: skip
    console.print(f"privacy app consuming from {root.settings.bootstrap}")
    quiet = root.settings.log_level != "DEBUG"

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            """aiokafka logs each retry against a broker that is away (several lines every
            100 ms); the outage monitor says it once per 30 s instead. DEBUG shows all."""
            super().on_setup_root_logger(logger, level)
            if quiet:
                logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    monitor = OutageMonitor(root.settings, "privacy app").start()
    try:
        Worker(app, loglevel=root.settings.log_level.lower(), quiet=True).execute_from_commandline()
    finally:
        monitor.close()
        privacy.close()
        service.close()
