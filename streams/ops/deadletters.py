"""Dead letters for operators: what failed and why, and replaying what can now pass.

`contact.deadletter.v1` holds each record the router or the privacy app could not
process, with the reason and the record's original bytes. `summarise` counts them by
source topic, stage and reason code; `replay` sends the original key, value and headers
of the chosen ones back to the topic they came from (after the contract, the policy or
the producer was fixed), each once: the hash-chained audit log records every replay
with the dead letters' positions, and a dead letter already replayed is skipped. Nothing
here shows or logs the original bytes: they may hold personal data in clear.

Those bytes stay on the topic until its retention (14 days) deletes them, out of reach of
an erasure, which only knows the subject by pseudonym. `purge` deletes them sooner: every
dead letter that failed before a cut-off, partition by partition (Kafka's DeleteRecords,
so the records go at once for every reader, and from disk when their segment is
deleted), with an audit entry. It is how an erasure reaches them, and how a deployment
keeps them for days rather than weeks without changing the topic's retention.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition

from schemas.serde import AvroSerde
from schemas.topic_names import CONTACT_DEADLETTER
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.kafka.outbox import deliver_all
from streams.kafka.readback import read_all
from streams.ledger import AuditLog, session_factory

REPLAYED_ACTION = "deadletter.replayed"
REPLAY_HEADER = "contactflow-replayed-from"
PURGED_ACTION = "deadletter.purged"
_AUDIT_CHUNK = 500  # positions per audit entry


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, by its position on the dead-letter topic; no original bytes."""

    partition: int
    offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    reason_code: str
    failed_at: datetime

    @property
    def position(self) -> tuple[int, int]:
        return self.partition, self.offset


@dataclass
class Summary:
    """Dead letters counted by (source topic, stage, reason code)."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    oldest: datetime | None = None
    newest: datetime | None = None
    replayed: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> str:
        rows = [
            {"source_topic": t, "stage": s, "reason_code": r, "count": n}
            for (t, s, r), n in sorted(self.counts.items())
        ]
        return json.dumps(
            {
                "total": self.total,
                "already_replayed": self.replayed,
                "oldest": self.oldest.isoformat() if self.oldest else None,
                "newest": self.newest.isoformat() if self.newest else None,
                "by_reason": rows,
            },
            indent=2,
        )


@dataclass(frozen=True)
class ReplayOutcome:
    matched: int  # dead letters with the chosen reason (and source topic)
    skipped: int  # replayed before
    sent: int  # sent back now (0 on a dry run)
    by_topic: dict[str, int]
    references: int = 0  # references without bytes (too large to keep): never replayable


@dataclass(frozen=True)
class PurgeOutcome:
    purged: int  # dead letters deleted (on a dry run: that would be)
    never_replayed: int  # of those, the ones no replay sent back
    kept: int  # dead letters left on the topic
    kept_older: int  # of those, failed before the cut-off but behind a younger one
    cuts: dict[int, int]  # partition -> its first offset kept


class DeadLetters:
    """Reads the dead-letter topic; replays chosen dead letters to their source topics."""

    def __init__(self, container: Container, *, actor: str = "cli") -> None:
        self._container = container
        self._actor = actor
        self._topic = container.topics.name(CONTACT_DEADLETTER)
        self._contract = container.schemas.latest("DeadLetter")
        self._declared = {container.topics.name(spec.name) for spec in container.topics.specs}

    def summarise(self, say: Callable[[str], None] = lambda _: None) -> Summary:
        letters = [letter for letter, _ in self._read(say)]
        replayed = self._replayed()
        summary = Summary(replayed=sum(1 for letter in letters if letter.position in replayed))
        for letter in letters:
            summary.counts[letter.source_topic, letter.stage, letter.reason_code] += 1
        times = [letter.failed_at for letter in letters]
        summary.oldest, summary.newest = (min(times), max(times)) if times else (None, None)
        return summary

    def replay(
        self,
        reason_code: str,
        now: datetime,
        *,
        source_topic: str | None = None,
        dry_run: bool = False,
        say: Callable[[str], None] = lambda _: None,
    ) -> ReplayOutcome:
        """Send the dead letters with `reason_code` back where they came from, once each."""
        chosen = [
            (letter, record)
            for letter, record in self._read(say)
            if letter.reason_code == reason_code
            and (source_topic is None or letter.source_topic == source_topic)
        ]
        replayed = self._replayed()
        fresh = [(letter, record) for letter, record in chosen if letter.position not in replayed]
        references = sum(1 for _, record in fresh if record["original_value"] is None)
        fresh = [
            (letter, record) for letter, record in fresh if record["original_value"] is not None
        ]
        unknown = sorted({letter.source_topic for letter, _ in fresh} - self._declared)
        if unknown:
            raise ContactflowError(
                f"{len(unknown)} source topic(s) of these dead letters are not declared in "
                f"infra/topics.yaml (first: {unknown[0]}); nothing was replayed"
            )
        by_topic = dict(Counter(letter.source_topic for letter, _ in fresh))
        if dry_run or not fresh:
            skipped = len(chosen) - len(fresh) - references
            return ReplayOutcome(len(chosen), skipped, 0, by_topic, references)
        say(f"replaying {len(fresh):,} dead letter(s)")
        self._send(fresh)
        self._record([letter for letter, _ in fresh], reason_code, now)
        skipped = len(chosen) - len(fresh) - references
        return ReplayOutcome(len(chosen), skipped, len(fresh), by_topic, references)

    def purge(
        self,
        before: datetime,
        now: datetime,
        *,
        dry_run: bool = False,
        say: Callable[[str], None] = lambda _: None,
    ) -> PurgeOutcome:
        """Delete the dead letters that failed before `before`, replayed or not.

        Kafka deletes a partition's records below an offset, so each partition is cut at
        its first dead letter that failed at `before` or later (routers' clocks may differ
        a little): one failed earlier but behind it is kept, and counted in `kept_older`.
        Only dead letters read here are ever cut, never a transaction still open.
        """
        if before > now:
            raise ContactflowError("the cut-off is in the future; nothing was purged")
        letters = [letter for letter, _ in self._read(say)]
        by_partition: dict[int, list[DeadLetter]] = defaultdict(list)
        for letter in letters:
            by_partition[letter.partition].append(letter)
        cuts: dict[int, int] = {}
        for partition, in_partition in by_partition.items():
            in_partition.sort(key=lambda letter: letter.offset)
            cut = next(
                (letter.offset for letter in in_partition if letter.failed_at >= before),
                in_partition[-1].offset + 1,
            )
            if cut > in_partition[0].offset:
                cuts[partition] = cut
        purged = [letter for letter in letters if letter.offset < cuts.get(letter.partition, -1)]
        replayed = self._replayed()

        def never_replayed(chosen: list[DeadLetter]) -> int:
            return sum(1 for letter in chosen if letter.position not in replayed)

        outcome = PurgeOutcome(
            purged=len(purged),
            never_replayed=never_replayed(purged),
            kept=len(letters) - len(purged),
            kept_older=sum(1 for letter in letters if letter.failed_at < before) - len(purged),
            cuts=cuts,
        )
        if dry_run or not cuts:
            return outcome
        say(f"deleting {len(purged):,} dead letter(s)")
        failed = self._delete(cuts)
        done = {p: o for p, o in cuts.items() if p not in failed}
        if done:  # what was deleted is recorded, even when another partition refused
            gone = [letter for letter in purged if letter.partition in done]
            with session_factory(self._container.ledger_engine).begin() as session:
                AuditLog(session).append(
                    self._actor, PURGED_ACTION, now,
                    details={"topic": self._topic, "before": before.isoformat(),
                             "count": len(gone),
                             "never_replayed": never_replayed(gone),
                             "cuts": [[p, o] for p, o in sorted(done.items())]},
                )  # fmt: skip
        if failed:
            raise ContactflowError(
                f"purge incomplete: {len(done)} of {len(cuts)} partition(s) cut and recorded "
                f"in the audit log; {'; '.join(f'partition {p}: {e}' for p, e in failed.items())}"
                ". A retry cuts the rest. On a secured broker DeleteRecords needs the topic's "
                "DELETE permission: run it as the admin principal"
            )
        return outcome

    def _delete(self, cuts: dict[int, int]) -> dict[int, str]:
        """Delete each partition's records below its cut; the refused ones, with why."""
        admin = self._container.admin()
        futures = admin.delete_records(
            [TopicPartition(self._topic, p, o) for p, o in sorted(cuts.items())],
            request_timeout=60,
            operation_timeout=60,
        )
        failed: dict[int, str] = {}
        for tp, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                failed[tp.partition] = exc.args[0].name()
        return failed

    # -- reading ---------------------------------------------------------------------------

    def _read(self, say: Callable[[str], None]) -> list[tuple[DeadLetter, dict[str, Any]]]:
        say(f"reading {self._topic}")
        serde = AvroSerde(self._container.schemas)
        letters = []
        for message in read_all(self._container.settings.kafka_client_config(), self._topic):
            value = message.value()
            if value is None:
                continue
            _, record = serde.deserialize(value, reader=self._contract)
            letter = DeadLetter(
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                source_topic=record["source_topic"],
                source_partition=record["source_partition"],
                source_offset=record["source_offset"],
                stage=record["stage"],
                reason_code=record["reason_code"],
                failed_at=record["failed_at"],
            )
            letters.append((letter, record))
        say(f"read {len(letters):,} dead letter(s)")
        return letters

    def _replayed(self) -> set[tuple[int, int]]:
        """Positions on this dead-letter topic replayed before (from the audit log)."""
        with session_factory(self._container.ledger_engine)() as session:
            entries = AuditLog(session).entries(action=REPLAYED_ACTION)
        positions: set[tuple[int, int]] = set()
        for entry in entries:
            if entry.details.get("topic") == self._topic:
                positions.update((int(p), int(o)) for p, o in entry.details.get("positions", ()))
        return positions

    # -- replaying -------------------------------------------------------------------------

    def _send(self, letters: Sequence[tuple[DeadLetter, dict[str, Any]]]) -> None:
        # Not idempotent: an idempotent producer needs a PID, and a role that may write
        # nowhere gets a fatal CLUSTER_AUTHORIZATION_FAILED instead of a clear refusal per
        # record. A retry's duplicate is a retry to the worker (same id and bytes): dropped.
        config = self._container.settings.kafka_client_config()
        producer = Producer({**config, "acks": "all", "enable.idempotence": False})
        records = []
        for letter, record in letters:
            headers: list[tuple[str, str | bytes | None]] = list(
                (record["original_headers"] or {}).items()
            )
            origin = f"{self._topic}:{letter.partition}:{letter.offset}".encode()
            headers.append((REPLAY_HEADER, origin))
            records.append(
                (letter.source_topic, record["original_key"], record["original_value"], headers)
            )
        delivery = deliver_all(producer, records)
        if not delivery.complete:
            raise ContactflowError(
                f"replay incomplete: {delivery.describe()}; the audit log records no replay, "
                "so a retry sends them again"
            )

    def _record(self, letters: Iterable[DeadLetter], reason_code: str, now: datetime) -> None:
        positions = sorted(letter.position for letter in letters)
        with session_factory(self._container.ledger_engine).begin() as session:
            audit = AuditLog(session)
            for start in range(0, len(positions), _AUDIT_CHUNK):
                chunk = positions[start : start + _AUDIT_CHUNK]
                audit.append(
                    self._actor, REPLAYED_ACTION, now,
                    details={"topic": self._topic, "reason_code": reason_code,
                             "count": len(chunk), "positions": [list(p) for p in chunk]},
                )  # fmt: skip
