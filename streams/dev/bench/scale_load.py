"""Fill a ledger with invented people for `contactflow bench scale`, through the router's
own write path.

Person `i` has a phone number (+32 48x, 10,000,000 possible; the bench workload's people
use 47x) and an e-mail address at scale.example.org, and is loaded as if the router had
routed one inbound call naming them by both: the identifiers come from
`processors.routing.subject_identifiers`, and the subject, its identifier digests, its
data key and its (ORES, phone) footprint are written by `SubjectDirectory.resolve`,
`ensure_ciphers` and `record_footprints` in one ledger transaction per chunk, as the
router does per batch. tests/integration/router/test_scale_loader_matches_router.py
checks the rows are the router's for the same people.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session, sessionmaker

from processors.pseudonym import Pseudonymiser
from processors.routing import subject_identifiers
from streams.router.directory import MIB, SubjectDirectory

FILLER_CONTROLLER: Final = "ORES"
FILLER_CHANNEL: Final = "phone"
MAX_PEOPLE: Final = 10_000_000
_CHUNK: Final = 2_000
_LOADER_CACHE_BYTES: Final = 16 * MIB  # the loader needs no cache: a chunk is new people


def filler_subject(index: int) -> dict[str, Any]:
    """The `subject` of an event naming invented person `index`."""
    if not 0 <= index < MAX_PEOPLE:
        raise ValueError(f"an invented person's index is 0..{MAX_PEOPLE - 1}")
    return {"phone": f"+32 48{index:07d}", "email": f"person{index}@scale.example.org"}


def filler_phone(index: int) -> str:
    return str(filler_subject(index)["phone"])


def load_people(
    sessions: sessionmaker[Session],
    pseudonymiser: Pseudonymiser,
    master_key: bytes,
    people: range,
    now: datetime,
    say: Callable[[str], None] = lambda _: None,
) -> float:
    """Write `people` (indexes) into the ledger as the router would; seconds it took.
    Says how far it got about every 5 %."""
    directory = SubjectDirectory(
        sessions, pseudonymiser, master_key, cache_bytes=_LOADER_CACHE_BYTES
    )
    started = time.perf_counter()
    step = max(len(people) // 20, _CHUNK)
    next_report = step
    done = 0
    for chunk in _chunks(people):
        pending = [directory.digests(subject_identifiers(filler_subject(i))) for i in chunk]
        with directory.batch():
            subjects = {s for s in directory.resolve(pending, now) if s is not None}
            directory.ensure_ciphers(subjects, now)
            directory.record_footprints(
                {(s, FILLER_CONTROLLER, FILLER_CHANNEL) for s in subjects}, now
            )
        done += len(chunk)
        if done >= next_report or done == len(people):
            elapsed = time.perf_counter() - started
            say(f"scale: loaded {done:,}/{len(people):,} people "
                f"({done / max(elapsed, 1e-9):,.0f}/s)")  # fmt: skip
            next_report += step
    return time.perf_counter() - started


def _chunks(people: range) -> Iterator[range]:
    for start in range(0, len(people), _CHUNK):
        yield people[start : start + _CHUNK]
