"""The reporting app (`contactflow run reporting`): the contact centre's KPIs, anonymous.

A faust-streaming app in two stages. `extract-facts` reads the tagged topics
(read_committed: an aborted router transaction is never counted), keeps what each event
adds to the reporting (`processors.kpi.facts_of`: counts and sums, no identifier, text or
agent id) and repartitions it on `reporting.facts.v1`, keyed by group and day (or week), so
one partition owns every window it updates. `apply-facts` adds each fact to its windows in
the `kpi-cells` table (RocksDB via rocksdict, changelog `reporting.cells-changelog.v1`);
a cell remembers the last source offset it applied, so the facts replayed after a crash
count once. A timer publishes the figures of the windows that changed on the compacted
`reporting.kpi.v1`, measures withheld under k distinct people; a later figure of a window
replaces the earlier one, and it is marked final once the grace period is over.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import faust

from processors.kpi import (
    Cell,
    Entry,
    Group,
    KpiConfig,
    Window,
    apply_fact,
    batch_facts,
    cells_to_forget,
    entries_of,
    figure_of,
    parse_cell_key,
    routed_time,
)
from schemas import records
from schemas.errors import SchemaError
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CONTACT_COMNEXIO,
    CONTACT_DEADLETTER,
    CONTACT_ORES,
    REPORTING_CELLS_CHANGELOG,
    REPORTING_FACTS,
    REPORTING_KPI,
)
from streams.bootstrap import Container
from streams.control.app import faust_credentials
from streams.errors import ContactflowError
from streams.kafka.faust_isolation import read_committed
from streams.runtime.durations import human_duration

log = logging.getLogger(__name__)
APP_ID = "contactflow-reporting"
STAGE, APPLY_STAGE = "reporting-extract", "reporting-apply"
REPUBLISH_FINAL_FOR = timedelta(days=2)  # after a restart, windows final since are re-sent
EXTRACT_BATCH, EXTRACT_WITHIN_S = 2000, 0.2  # tagged events per batch, longest wait for one
CELLS_TABLE = "kpi-cells"
# The key of the empty record the app sends itself on each partition of the facts topic, so
# the agent owning the partition looks its windows over (`forget_cells`).
LOOK_OVER = b"look-over"
# RocksDB per table partition: small caches, the cells are few and small.
_ROCKSDB = {"driver": "rocksdict", "block_cache_size": 8 << 20,
            "block_cache_compressed_size": 2 << 20, "write_buffer_size": 4 << 20,
            "max_write_buffer_number": 2}  # fmt: skip


_held: list[Any] = []  # the open lock file of this process's store


def _hold_store(datadir: Path) -> None:
    """One reporting app per store: a second one on the same data directory would die
    inside RocksDB on a lock with a traceback; it is refused here in one line instead."""
    handle = (datadir / "app.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ContactflowError(
            f"another reporting app is using {datadir}; give each app its own "
            "CONTACTFLOW_DATA_DIR (they share the work through their consumer group)"
        ) from None
    _held.append(handle)


@dataclass
class _Windows:
    """The windows to publish at the next round, and those published but not yet final."""

    due: dict[str, tuple[Window, Group]] = field(default_factory=dict)
    open: dict[str, tuple[Window, Group]] = field(default_factory=dict)


class TableCells:
    """A faust table of encoded `KpiCell` values seen as a mapping of key to `Cell`."""

    def __init__(self, table: Any, serde: AvroSerde, contract: Any) -> None:
        self._table, self._serde, self._contract = table, serde, contract
        self.stored: dict[str, Cell] = {}  # stored since the last publication: no read back

    def get(self, key: str) -> Cell | None:
        value = self._table.get(key.encode())
        if value is None:
            return None
        return Cell.from_record(self._serde.deserialize(value)[1])

    def __setitem__(self, key: str, cell: Cell) -> None:
        self._table[key.encode()] = self._serde.serialize(cell.to_record(), self._contract)
        self.stored[key] = cell

    def __delitem__(self, key: str) -> None:
        """Remove a cell: from the store, and from the changelog by a tombstone on the
        partition of the event being processed (faust's rule), so only inside the agent
        that owns `key`'s partition (`keys_of_partition`)."""
        del self._table[key.encode()]
        self.stored.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        for key in list(self._table.keys()):
            yield key.decode() if isinstance(key, bytes) else str(key)

    def keys_of_partition(self, partition: int) -> list[str]:
        """The cells this worker stores for one partition of the table (faust's RocksDB
        store keeps one database per partition; its keys are read from that one)."""
        store = self._table.data
        keys = store._visible_keys(store._db_for_partition(partition))
        return [key.decode() if isinstance(key, bytes) else str(key) for key in keys]


class FactExtractor:
    """Tagged event bytes in, the entries they add to the reporting out; a batch of entries
    in, encoded `KpiFact` records out (one per group and day or week)."""

    def __init__(self, serde: AvroSerde, config: KpiConfig, fact_contract: Any) -> None:
        self._serde, self._config, self._contract = serde, config, fact_contract

    def entries(self, value: bytes, source: str, offset: int, routed_at: datetime) -> list[Entry]:
        """What one tagged event adds; schema and shape errors when it cannot be read."""
        _, tagged = self._serde.deserialize(value)
        _, raw = self._serde.deserialize(tagged["event"])
        return entries_of(tagged, raw, source=source, offset=offset, routed_at=routed_at,
                          config=self._config)  # fmt: skip

    def facts(self, entries: list[Entry]) -> list[tuple[bytes, bytes]]:
        return [(key.encode(), self._serde.serialize(fact, self._contract))
                for key, fact in batch_facts(entries)]  # fmt: skip


def create_reporting_app(
    container: Container, config: KpiConfig, clock: Callable[[], datetime], *,
    publish_interval_s: float = 1.0, forget_interval_s: float = 3600.0,
) -> faust.App:  # fmt: skip
    settings = container.settings
    datadir = settings.data_dir / "faust-reporting"
    datadir.mkdir(parents=True, exist_ok=True)
    _hold_store(datadir)
    app = faust.App(
        settings.scoped(APP_ID), broker=f"kafka://{settings.bootstrap}",
        broker_credentials=faust_credentials(settings), store="rocksdb://",
        web_enabled=False, topic_allow_declare=False, topic_disable_leader=True,
        consumer_auto_offset_reset="earliest", datadir=str(datadir),
    )  # fmt: skip
    read_committed(app)
    topics, serde, schemas = container.topics, AvroSerde(container.schemas), container.schemas
    contracts = {n: schemas.latest(n) for n in ("KpiFact", "KpiCell", "KpiFigure", "DeadLetter")}
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    tagged = app.topic(topics.name(CONTACT_ORES), topics.name(CONTACT_COMNEXIO), **raw)
    facts_topic = app.topic(topics.name(REPORTING_FACTS), **raw)
    kpi_topic = app.topic(topics.name(REPORTING_KPI), **raw)
    dead_letters = app.topic(topics.name(CONTACT_DEADLETTER), **raw)
    table = app.Table(
        CELLS_TABLE, partitions=topics.spec(REPORTING_FACTS).partitions,
        changelog_topic=app.topic(topics.name(REPORTING_CELLS_CHANGELOG), **raw),
        options=dict(_ROCKSDB), key_type=bytes, value_type=bytes,
    )  # fmt: skip
    cells = TableCells(table, serde, contracts["KpiCell"])
    extractor = FactExtractor(serde, config, contracts["KpiFact"])
    windows = _Windows()

    async def extract(stream: Any) -> None:
        """Batches of tagged events in, one fact per group and day (or week) of the batch
        out: a few messages per batch instead of one or two per event. The batch's input
        offsets are committed only after its facts are flushed."""
        async for events in stream.take_events(EXTRACT_BATCH, within=EXTRACT_WITHIN_S):
            entries: list[Entry] = []
            unreadable: list[tuple[Any, bytes, Exception]] = []
            for event in events:
                if event.value is not None:
                    entries += _entries(event.message, event.value, unreadable)
            for message, value, error in unreadable:
                await _dead_letter(message, value, error, STAGE)
            for key, value in extractor.facts(entries):
                await facts_topic.send(key=key, value=value)

    def _entries(message: Any, value: bytes, unreadable: list[Any]) -> list[Entry]:
        """What one tagged event adds; an event that cannot be read is noted in
        `unreadable` (dead-lettered after the batch) and adds nothing."""
        source = f"{message.topic}/{message.partition}"
        routed_at = routed_time(round(message.timestamp * 1000))
        try:
            return extractor.entries(value, source, message.offset, routed_at)
        except (SchemaError, KeyError, TypeError, ValueError) as error:
            unreadable.append((message, value, error))
            return []

    async def _dead_letter(message: Any, value: bytes, error: Exception, stage: str) -> None:
        code = type(error).__name__
        log.error("%s failed at %s[%s]@%s: %s", stage, message.topic, message.partition,
                  message.offset, code)  # fmt: skip
        letter = records.dead_letter(
            source_topic=message.topic, source_partition=message.partition,
            source_offset=message.offset, stage=stage, reason_code=code,
            reason=f"record not readable for reporting ({code})",
            original_key=message.key, original_value=value, failed_at=clock(),
        )  # fmt: skip
        where = records.dead_letter_key(message.topic, message.partition, message.offset)
        await dead_letters.send(key=where, value=serde.serialize(letter, contracts["DeadLetter"]))

    async def apply(stream: Any) -> None:
        async for event in stream.events():
            if event.value is None:
                if event.key == LOOK_OVER:
                    forget_cells(event.message.partition, clock())
                continue
            try:
                _, fact = serde.deserialize(event.value)
                touched = apply_fact(cells, fact, config.min_subjects, config.grace,
                                     partial(config.forgotten, now=clock()))  # fmt: skip
            except (SchemaError, KeyError, TypeError, ValueError) as error:
                await _dead_letter(event.message, event.value, error, APPLY_STAGE)
                continue
            for key, window, group in touched:
                windows.due[key] = (window, group)

    def forget_cells(partition: int, now: datetime) -> None:
        """Let go of the partition's cells whose figure has been final for
        `config.keep_cells`, with their subject tags and source offsets. Run by the agent
        that owns the partition, on a `LOOK_OVER` record (a cell's tombstone must go to the
        changelog partition of the event being processed). A window still to be published
        is kept for the next look."""
        pending = windows.due.keys() | windows.open.keys()
        gone = [key for key in cells_to_forget(cells.keys_of_partition(partition), now, config)
                if key not in pending]  # fmt: skip
        for key in gone:
            del cells[key]
        if gone:
            kept = human_duration(int(config.keep_cells.total_seconds() * 1000))
            log.info("reporting: let go of %d cell(s) of partition %d, final for over %s",
                     len(gone), partition, kept)  # fmt: skip

    @app.timer(interval=forget_interval_s, name="look-over-windows")  # type: ignore[untyped-decorator]
    async def look_over() -> None:
        """A `LOOK_OVER` record to each partition of the facts topic: its agent then looks
        the partition's cells over, whether facts still come there or not."""
        for partition in range(topics.spec(REPORTING_FACTS).partitions):
            await facts_topic.send(key=LOOK_OVER, value=None, partition=partition)

    app.agent(tagged, name="extract-facts")(extract)
    app.agent(facts_topic, name="apply-facts")(apply)

    @table.on_recover
    async def republish_recovered() -> None:
        """After recovery or a rebalance, publish the windows held here once more (all but
        those final for days): a figure whose publication a crash cut short is published
        now."""
        settled = clock() - config.grace - REPUBLISH_FINAL_FOR
        for key in cells:
            window, group = parse_cell_key(key)
            if window.end > settled:  # older ones were published final long ago
                windows.due[key] = (window, group)

    @app.timer(interval=publish_interval_s, name="publish-figures")  # type: ignore[untyped-decorator]
    async def publish() -> None:
        """Publish the windows that changed, and those whose grace period just ended (a
        final figure), each once per round."""
        now = clock()
        due, windows.due = windows.due, {}
        stored, cells.stored = cells.stored, {}
        for key, (window, group) in list(windows.open.items()):
            if now >= window.end + config.grace:
                due.setdefault(key, (window, group))
        for key, (window, group) in due.items():
            cell = stored.get(key) or cells.get(key)
            if cell is None or cell.revision == 0:
                continue  # only late events so far: nothing counted, nothing to show
            final = now >= window.end + config.grace
            figure = figure_of(window, group, cell, config.min_subjects, final=final, now=now)
            value = serde.serialize(figure, contracts["KpiFigure"])
            await kpi_topic.send(key=key.encode(), value=value)
            if final:
                windows.open.pop(key, None)
            else:
                windows.open[key] = (window, group)

    return app
