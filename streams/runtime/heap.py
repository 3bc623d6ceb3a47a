"""Keeping Python's cycle collector off the objects a long-running worker starts with.

A worker's start-up leaves a few hundred thousand objects that live as long as it does:
modules, schemas, the SQLAlchemy, OpenTelemetry and Kafka client state. Every full pass
of the cycle collector walks all of them again, and a router batch allocates enough to
trigger such passes regularly. `freeze_startup_heap` moves them out of the collector's
generations for good once start-up is done (`gc.freeze`). Objects created afterwards are
collected as before, cycles included. Measured on the router (docs/benchmarks.md): its
main process spent about 13% of its time in the collector; freezing gives back part of it.

A router batch then still made the collector run about fifty times (the default starts a
young pass every 700 new container objects, and a batch's decoded events are some 70,000)
and a full pass once every two or three batches, walking every cached subject and key
each time. After the freeze the young generation's threshold is raised (`YOUNG_THRESHOLD`),
so a pass comes once every few batches: the collector's share of a 60,000-event run fell
from about 0.5 s to 0.2 s (docs/benchmarks.md). Cycles are still collected, only later.
"""

from __future__ import annotations

import gc
from typing import Final

# New container objects between two young passes (CPython's default is 700), and how many
# young passes, then middle passes, come before an older generation's (default 10 and 10).
YOUNG_THRESHOLD: Final = 50_000
OLDER_THRESHOLDS: Final = (20, 100)


def freeze_startup_heap() -> int:
    """Collect start-up garbage, then keep every object alive now out of later collections,
    and space the collector's later passes (`YOUNG_THRESHOLD`); returns how many objects
    were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_freeze_count()
