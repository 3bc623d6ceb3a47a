"""Keeping Python's cycle collector off the objects a long-running worker starts with.

A worker's start-up leaves a few hundred thousand objects that live as long as it does:
modules, schemas, the SQLAlchemy, OpenTelemetry and Kafka client state. Every full pass
of the cycle collector walks all of them again, and a router batch allocates enough to
trigger such passes regularly. `freeze_startup_heap` moves them out of the collector's
generations for good once start-up is done (`gc.freeze`). Objects created afterwards are
collected as before, cycles included. Measured on the router (docs/benchmarks.md): its
main process spent about 13% of its time in the collector; freezing gives back part of it.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect start-up garbage, then keep every object alive now out of later collections;
    returns how many objects that is."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
