"""`contactflow run router`: the long-running workers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from streams.cli._app import app, console, container

if TYPE_CHECKING:
    import faust

    from streams.bootstrap import Container
    from streams.runtime.health import Heartbeat, WorkerEndpoints

run_app = typer.Typer(help="Run a contactflow worker until stopped.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("router")
def run_router(
    max_idle: Annotated[
        float | None,
        typer.Option(
            help="Stop once every assigned partition was read to its end and nothing came "
            "for this many seconds."
        ),
    ] = None,
) -> None:
    """Route raw contact events: validate, pseudonymise, tag, encrypt, exactly once.

    Stop with Ctrl-C or SIGTERM: the batch in flight is committed first. Run several with
    distinct CONTACTFLOW_ROUTER_INSTANCE values to share the partitions.
    """
    import signal
    import threading

    from streams.kafka.reachability import wait_for_broker
    from streams.router.worker import HEALTH_STALE_S, RouterWorker
    from streams.runtime.health import Heartbeat
    from streams.runtime.watchdog import CallWatchdog, restart_in_place

    root = container()
    root.service_name = f"contactflow-router-{root.settings.router_instance}"
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    heartbeat = Heartbeat(HEALTH_STALE_S)
    endpoints = worker_endpoints(root, heartbeat, ledger=True)
    try:
        if not wait_for_broker(root.settings, "router", stop=stopping, sleep=heartbeat.sleep):
            return
        watchdog = CallWatchdog(restart_in_place(f"router {root.settings.router_instance}"))
        watchdog.start()
        worker = RouterWorker(root, watchdog=watchdog, heartbeat=heartbeat)
        worker.install_signal_handlers()
        if stopping.is_set():
            worker.stop()
        console.print(
            f"router {root.settings.router_instance} consuming "
            f"{len(worker.pipeline.input_topics)} raw topics from {root.settings.bootstrap}"
        )
        endpoints.started(worker.assignment_problem)
        try:
            stats = worker.run(max_idle_s=max_idle, ready=lambda: console.print("router ready"))
        finally:
            watchdog.close()
    finally:
        endpoints.close()
    console.print(
        f"router stopped: {stats.events_in} event(s) in {stats.batches} batch(es), "
        f"{stats.outputs} output(s), {stats.aborted} aborted batch(es)"
    )


def worker_endpoints(root: Container, heartbeat: Heartbeat, *, ledger: bool) -> WorkerEndpoints:
    """/healthz, /readyz and /metrics when CONTACTFLOW_HTTP_PORT is set (one line says where)."""
    from streams.runtime.health import WorkerEndpoints

    endpoints = WorkerEndpoints(root, heartbeat, ledger=ledger)
    if endpoints.address is not None:
        console.print(f"health, readiness and metrics on {endpoints.address}", highlight=False)
    return endpoints


@run_app.command("privacy")
def run_privacy() -> None:
    """The control plane (faust-streaming): data-subject requests (intake, ORES's
    instructions, acknowledgements, deadlines), recording registration, the holds that
    complaints, fraud attempts and disputes signal, and the expiry sweep."""
    _faust_worker("contactflow-privacy", "privacy app", _run_privacy, ledger=True)


def _faust_worker(
    service: str, what: str,
    run: Callable[[Container, Heartbeat, WorkerEndpoints], None], *, ledger: bool,
) -> None:  # fmt: skip
    """A faust worker's start: its endpoints, the wait for the broker (one line), `run`."""
    from streams.kafka.reachability import wait_for_broker
    from streams.runtime.health import Heartbeat

    root = container()
    root.service_name = service
    heartbeat = Heartbeat(PRIVACY_HEALTH_STALE_S)
    endpoints = worker_endpoints(root, heartbeat, ledger=ledger)
    try:
        if wait_for_broker(root.settings, what, sleep=heartbeat.sleep):
            run(root, heartbeat, endpoints)
    finally:
        endpoints.close()


# /healthz of the privacy app: its event loop beats every second (ledger and Kafka calls
# run in the ledger thread, so they no longer hold the beat); kept generous, as before.
PRIVACY_HEALTH_STALE_S = 180.0


def _run_privacy(root: Container, heartbeat: Heartbeat, endpoints: WorkerEndpoints) -> None:
    from streams.control.app import create_control_app
    from streams.control.inputs import LedgerThread
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.service import PrivacyService
    from streams.control.retention.service import RetentionService
    from streams.ledger import upgrade
    from streams.router.worker import load_policy, utc_now

    service = RetentionService.from_container(
        root, actor="privacy-app", grace_days=load_policy(root).release_grace_days
    )
    settings = root.settings
    upgrade(settings.resolved_database_url(), connect_timeout_s=settings.connect_timeout_s)
    privacy = PrivacyService.from_container(root, load_privacy_config(root), actor="privacy-app")
    thread = LedgerThread(stale_after_s=settings.ledger_call_stale_s)
    app = create_control_app(
        root, service, utc_now, sweep_interval_s=root.settings.retention_sweep_interval_s,
        privacy=privacy, deadline_interval_s=root.settings.privacy_deadline_interval_s,
        thread=thread,
    )  # fmt: skip
    endpoints.live("ledger", thread.check)  # a call that never returns; the loop still turns
    try:
        _serve_faust(app, root, heartbeat, endpoints, "privacy app")
    finally:
        privacy.close()
        service.close()


@run_app.command("reporting")
def run_reporting() -> None:
    """The reporting app (faust-streaming): the contact centre's KPIs per channel, site,
    language and queue, by hour, day and ISO week (Europe/Brussels), as anonymous figures
    on reporting.kpi.v1 (groups of fewer than CONTACTFLOW_KPI_MIN_SUBJECTS people withheld).
    Read them with `contactflow kpi report`."""
    _faust_worker("contactflow-reporting", "reporting app", _run_reporting, ledger=False)


def _run_reporting(root: Container, heartbeat: Heartbeat, endpoints: WorkerEndpoints) -> None:
    from streams.reporting.app import create_reporting_app
    from streams.router.worker import utc_now

    settings = root.settings
    app = create_reporting_app(root, settings.kpi_config(), utc_now,
                                  publish_interval_s=settings.kpi_publish_interval_s,
                                  forget_interval_s=settings.kpi_forget_interval_s)  # fmt: skip
    _serve_faust(app, root, heartbeat, endpoints, "reporting app")


def _serve_faust(
    app: faust.App, root: Container, heartbeat: Heartbeat, endpoints: WorkerEndpoints,
    what: str,
) -> None:  # fmt: skip
    """Run a faust app as a worker until stopped: a heartbeat for /healthz, readiness once it
    holds partitions, one line per 30 s while the broker is away."""
    import faust

    from streams.kafka.reachability import OutageMonitor

    assigned: list[bool] = [False]

    @app.timer(interval=1.0, name="health-heartbeat")  # type: ignore[untyped-decorator]
    async def beat() -> None:
        """Proves the event loop turns, and notes whether partitions are assigned."""
        heartbeat.beat()
        try:
            assigned[0] = bool(app.consumer.assignment())
        except Exception:  # noqa: BLE001 - a consumer not started yet has none
            assigned[0] = False

    endpoints.started(lambda: None if assigned[0] else "no partition assigned yet")
    console.print(f"{what} consuming from {root.settings.bootstrap}")
    quiet = root.settings.log_level != "DEBUG"

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            """aiokafka logs each retry against a broker that is away (several lines every
            100 ms); the outage monitor says it once per 30 s instead. DEBUG shows all."""
            super().on_setup_root_logger(logger, level)
            # faust leaves the root logger at DEBUG for its spinner: every debug call of
            # faust and aiokafka then builds a record only to drop it (5% of the
            # reporting app's time); the configured level stands
            logger.setLevel(root.settings.log_level)
            if quiet:
                logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    monitor = OutageMonitor(root.settings, what).start()
    try:
        Worker(app, loglevel=root.settings.log_level.lower(), quiet=True).execute_from_commandline()
    finally:
        monitor.close()
