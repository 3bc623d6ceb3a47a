"""`contactflow bench router`: the router measured against the limit and its peers."""

from __future__ import annotations

from typing import Annotated

import typer

from streams.cli._app import app, console, kafka_container, progress

bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("router")
def bench_router(
    events: Annotated[int, typer.Option(min=100, help="Events in the workload.")] = 100_000,
    faust_cap: Annotated[
        int, typer.Option(min=100, help="At most this many events for faust (it is slow).")
    ] = 20_000,
    same_work: Annotated[
        bool,
        typer.Option(
            "--same-work",
            help="Also run a Quix Streams app doing the router's work (identifiers digested, "
            "a dict for the ledger, fields encrypted, retention and hold outputs, "
            "exactly-once); adds router_vs_quix_same_work= to the last line.",
        ),
    ] = False,
) -> None:
    """Limit, Quix Streams, faust and the router on one workload; ratios on the last line."""
    from streams.dev.bench.router_bench import run_router_bench
    from streams.dev.bench.router_runner import run_real_router

    root = kafka_container()
    with progress("bench") as say:
        result = run_router_bench(
            root, events, say, router=run_real_router, faust_cap=faust_cap, same_work=same_work
        )
    for line in result.report_lines():
        console.print(line, soft_wrap=True)


@bench_app.command("privacy")
def bench_privacy(
    requests: Annotated[int, typer.Option(min=1, help="Erasure requests to time.")] = 20,
    heavy_events: Annotated[
        int, typer.Option(min=1, help="Events in the history of the heavy subject.")
    ] = 10_000,
    restrictions: Annotated[int, typer.Option(min=1, help="Restrictions to time.")] = 5,
) -> None:
    """Erasure and restriction end to end on the real broker; figures on the last line."""
    from streams.dev.bench.privacy_bench import run_privacy_bench

    root = kafka_container()
    with progress("bench") as say:
        result = run_privacy_bench(
            root, say, requests=requests, heavy_events=heavy_events, restrictions=restrictions
        )
    for line in result.report_lines():
        console.print(line, soft_wrap=True)


@bench_app.command("scale")
def bench_scale(
    subjects: Annotated[
        int, typer.Option(min=1, help="People loaded into the ledger before measuring.")
    ] = 2_000_000,
    database: Annotated[
        str, typer.Option(help="Ledger database: sqlite (a file) or postgresql.")
    ] = "sqlite",
    postgres_url: Annotated[
        str | None,
        typer.Option(
            envvar="CONTACTFLOW_TEST_POSTGRES_URL",
            help="A PostgreSQL server the bench may create two databases on (dropped after).",
        ),
    ] = None,
    events: Annotated[
        int, typer.Option(min=100, help="Events in the cold and warm passes.")
    ] = 30_000,
    spread: Annotated[
        int, typer.Option(min=1, help="Loaded people routed once each (cache misses, eviction).")
    ] = 80_000,
    requests: Annotated[int, typer.Option(min=1, help="Erasures to time among them.")] = 20,
) -> None:
    """The router and erasure with N people in the ledger, against an empty ledger. Last line:
    scale_subjects= router_vs_empty= router_rss_mib= erasure_p50_s= resolve_p50_ms=."""
    from streams.dev.bench.scale import run_scale_bench

    root = kafka_container()
    with progress("bench scale") as say:
        result = run_scale_bench(
            root, say, subjects=subjects, database=database, postgres_url=postgres_url,
            events=events, spread=spread, requests=requests,
        )  # fmt: skip
    for line in result.report_lines():
        console.print(line, soft_wrap=True)


@bench_app.command("kpi")
def bench_kpi(
    events: Annotated[int, typer.Option(min=100, help="Events in the workload.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the workload.")] = 20251126,
    verify: Annotated[
        bool, typer.Option(help="Run `kpi verify` at the end (it never fails the bench).")
    ] = True,
    apps: Annotated[
        int,
        typer.Option(
            min=1,
            help="Reporting app processes in one consumer group, each with its own data "
            "directory (they share the partitions).",
        ),
    ] = 1,
) -> None:
    """The workload through one router, then the reporting app(s), on a throwaway broker of
    its own. Last line: kpi_events_per_s= kpi_vs_router= kpi_rss_mib= (target >= 1.0)."""
    from streams.dev.bench.kpi_bench import run_kpi_bench

    with progress("bench kpi") as say:
        result = run_kpi_bench(say, events=events, seed=seed, verify=verify, apps=apps)
    for line in result.report_lines():
        console.print(line, soft_wrap=True)


@bench_app.command("faults")
def bench_faults(
    events: Annotated[
        int, typer.Option(min=100, help="At least this many events in the steady flow.")
    ] = 6000,
    kills: Annotated[int, typer.Option(min=0, help="Router SIGKILLs before the node faults.")] = 3,
    rate: Annotated[float, typer.Option(min=5, help="Events per second in the flow.")] = 40.0,
    down: Annotated[
        float, typer.Option(min=1, help="Seconds a killed node or the cluster stays down.")
    ] = 10.0,
) -> None:
    """Router and privacy app on a throwaway 3-node cluster under a steady flow while
    routers, nodes and the cluster die and poison records arrive; every output is read back.
    Last line: faults= lost= duplicated= stalled_partitions= max_recovery_s=; exit 1 unless
    nothing was lost, duplicated or stalled."""
    from streams.dev.bench.faults import run_fault_bench

    with progress("bench faults") as say:
        result = run_fault_bench(say, events=events, kills=kills, rate=rate, down_s=down)
    for line in result.report_lines():
        console.print(line, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)
