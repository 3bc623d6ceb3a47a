"""(c) The real router as a bench peer: `contactflow run router`, plus a first-consumed mark.

Run as `python -m streams.dev.bench.router_peer` with a PeerSpec on stdin and the router's
settings in the environment (`CONTACTFLOW_*`, prepared by `router_runner`). It is the
production `RouterWorker` with transactions on; the only addition is the report of the
instant its first batch reached the pipeline, the same mark every other peer writes.
"""

from __future__ import annotations

from typing import Any

from streams.bootstrap import bootstrap
from streams.dev.bench.spec import FirstConsumed, PeerSpec
from streams.router.worker import RouterWorker


class _MarkedRouter(RouterWorker):
    """The router, reporting when its first batch arrives (for a fair start time)."""

    def __init__(self, *args: Any, first: FirstConsumed, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first = first

    def _run_batch(self, messages: Any) -> None:
        self._first.mark()
        super()._run_batch(messages)


def main() -> None:
    spec = PeerSpec.from_stdin()
    worker = _MarkedRouter(bootstrap(), first=FirstConsumed(spec.report_path))
    worker.install_signal_handlers()
    worker.run()


if __name__ == "__main__":
    main()
