"""The `RouterRunner` that measures the real router, like the peers, in its own process."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from streams.bootstrap import Container
from streams.dev.bench.harness import GroupProgress, PeerLaunch, child_env, run_peer
from streams.dev.bench.router_bench import RouterRun
from streams.dev.bench.spec import PeerSpec
from streams.ledger import upgrade
from streams.router.worker import GROUP_ID


def run_real_router(root: Container, input_topics: Sequence[str], events: int) -> RouterRun:
    """Route the loaded input with `contactflow run router` semantics; events/s and RSS."""
    with tempfile.TemporaryDirectory(prefix="contactflow-bench-router-") as scratch:
        workdir = Path(scratch)
        data_dir = workdir / "data"
        upgrade(f"sqlite:///{data_dir / 'ledger.db'}")
        settings = root.settings
        env = child_env(
            CONTACTFLOW_BOOTSTRAP_SERVERS=settings.bootstrap,
            CONTACTFLOW_TOPIC_PREFIX=settings.topic_prefix,
            CONTACTFLOW_DATA_DIR=str(data_dir),
            CONTACTFLOW_ROUTER_INSTANCE="bench",
        )
        env = {k: v for k, v in env.items() if not k.startswith("CONTACTFLOW_DATABASE")}
        spec = PeerSpec(
            client_config={},
            input_topics=list(input_topics),
            outputs={},
            group_id=root.settings.scoped(GROUP_ID),
            report_path=str(workdir / "report.json"),
        )
        launch = PeerLaunch(
            "router", [sys.executable, "-m", "streams.dev.bench.router_peer"], workdir, env
        )
        progress = GroupProgress(root.admin(), root.settings.scoped(GROUP_ID), input_topics)
        run = run_peer(launch, spec, progress, events)
    return RouterRun(run.events_per_s, run.peak_rss_bytes, run.cpu_s)
