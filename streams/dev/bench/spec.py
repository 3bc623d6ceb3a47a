"""What the harness hands a peer process, and what the peer reports back.

A peer is started as `python -m streams.dev.bench.<peer>` with a `PeerSpec` as JSON on stdin
(so the pseudonym key never shows in `ps`). It runs until SIGTERM. As soon as it hands its
first input record to its processing code it writes `{"first_consumed_at": <epoch s>}` to
`spec.report_path` (write, then rename: the harness never reads half a file). Stdlib only:
the Quix peer imports this from another virtualenv.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ORES = "ores"
COMNEXIO = "comnexio"
QUARANTINE = "quarantine"
PASSTHROUGH = "passthrough"
RESTRICTED = "restricted"  # the same-work roles (`same_work`): the router's other outputs
RECORDINGS = "recordings"
SIGNALS = "signals"


@dataclass(frozen=True)
class PeerSpec:
    """Everything a peer needs; `outputs` maps a role (ores, comnexio, ...) to a topic.

    `same_work`: do the router's work (`same_work.SameWorkTagger`, with `master_key_hex`
    wrapping the data keys) instead of bare tagging, with transactions committed every
    `commit_every` events (the router's batch size) where the peer supports them.
    """

    client_config: dict[str, str]
    input_topics: list[str]
    outputs: dict[str, str]
    group_id: str
    report_path: str
    policy_path: str = ""
    pseudonym_key_hex: str = field(default="", repr=False)
    same_work: bool = False
    master_key_hex: str = field(default="", repr=False)
    commit_every: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PeerSpec:
        return cls(**json.loads(text))

    @classmethod
    def from_stdin(cls) -> PeerSpec:
        return cls.from_json(sys.stdin.read())


def write_report(path: str, report: dict[str, Any]) -> None:
    """Atomically replace the report file with `report` as JSON."""
    temporary = f"{path}.tmp"
    Path(temporary).write_text(json.dumps(report))
    os.replace(temporary, path)


class FirstConsumed:
    """Reports the wall-clock instant of the first record, once; cheap to call per record."""

    __slots__ = ("_path", "done")

    def __init__(self, report_path: str) -> None:
        self._path = report_path
        self.done = False

    def mark(self) -> None:
        if not self.done:
            self.done = True
            write_report(self._path, {"first_consumed_at": time.time()})
