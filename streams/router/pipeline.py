"""The router's work on one batch: raw records in, output records out, nothing lost.

Each input record ends as exactly one of: tagged event(s) on the controller's topic (plus
the retention input for recordings), a restricted event, a quarantined event, a dead
letter, or a counted drop (a producer's retry of an event already routed, or a purpose
the subject objected to). An objection to a derived purpose (reporting) drops nothing: the
tagged event lists it in `governance.excluded_purposes`. The pipeline decides and encodes;
the worker produces the outputs and commits them with the input offsets in one Kafka
transaction.

A batch goes through two stages: `streams.router.decode` turns each raw record into its
facts (in the helper process when the worker has one), then `route` de-duplicates,
resolves subjects in the ledger, attributes, encrypts and encodes, in the main process.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from opentelemetry import trace
from opentelemetry.trace import Tracer

from processors.policy import Decisions, Policy
from processors.routing import Route, SubjectStatus, choose_route, excluded_purposes
from schemas import records
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CHANNELS,
    CONTACT_DEADLETTER,
    CONTACT_QUARANTINE,
    CONTACT_RESTRICTED,
    CONTROLLER_TOPICS,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
    raw_topic,
)
from streams.errors import ContactflowError
from streams.kafka.refusals import SIZE_ERROR_NAMES
from streams.router.decode import (
    Decoded,
    EventDecoder,
    Outcome,
    Rejection,
    Request,
    seal,
)
from streams.router.dedup import DedupWindow, Seen
from streams.router.directory import LedgerWrite, SubjectDirectory
from streams.router.helper import DecoderConfig
from streams.router.limits import OutputLimits, record_size
from streams.router.templates import TaggedWriter, fill
from streams.topics import TopicCatalog

SCHEMA_HEADER = "contactflow-schema"
TRACE_HEADER = "traceparent"
CHANNEL_OF_TOPIC = {raw_topic(channel): channel for channel in CHANNELS}
TOO_LARGE = "too_large"
BROKER_REJECTED = "broker_rejected"
OUTPUT_TOPICS = (*CONTROLLER_TOPICS.values(), CONTACT_RESTRICTED, CONTACT_QUARANTINE,
                 RECORDINGS_STANDARD, CONTACT_DEADLETTER, RETENTION_SIGNALS)  # fmt: skip
_REUSED = Rejection("validate", "event_id_reused", "event id already used for other content")
_ERASED = Rejection("pseudonymise", "subject_erased", "the subject was erased")


class InputRecord(Protocol):
    """What the pipeline reads of a consumed message (confluent_kafka.Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


class Output(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class BatchOutcome:
    outputs: list[Output] = field(default_factory=list)
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    traceparents: list[bytes] = field(default_factory=list)
    footprints: set[tuple[str, str, str]] = field(default_factory=set)
    # the batch's ledger rows, when the directory defers them: written before Kafka commits
    ledger_write: LedgerWrite | None = None


@dataclass(slots=True)
class _Event:
    message: InputRecord
    channel: str
    decoded: Decoded
    subject: str | None = None


class RouterPipeline:
    """Decodes, validates, pseudonymises, attributes, encrypts and routes raw events.

    Everything it works with comes in as an argument: the topic and schema catalogs, the
    policy, the subjects and their keys (`directory`, over the ledger), each subject's
    privacy state (`subject_status`), the dedup window, and the output topics' size
    limits. It touches no Kafka client; `streams.router.worker.router_pipeline` builds it
    from the container.
    """

    def __init__(
        self,
        *,
        topics: TopicCatalog,
        schemas: SchemaCatalog,
        policy: Policy,
        directory: SubjectDirectory,
        subject_status: Callable[[str], SubjectStatus],
        dedup: DedupWindow,
        limits: OutputLimits,
        max_event_bytes: int,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._limits = limits
        self._policy = policy
        self._directory = directory
        self._status = subject_status
        self._dedup = dedup
        self._channel_of = {topics.name(t): c for t, c in CHANNEL_OF_TOPIC.items()}
        self._expected = {
            topics.name(t): schemas.latest(topics.spec(t).value_schema).name
            for t in CHANNEL_OF_TOPIC
        }
        self._max_bytes = max_event_bytes
        self._decoder = EventDecoder(
            schemas,
            directory.pseudonymiser,
            policy,
            self._channel_of,
            self._expected,
            max_event_bytes,
        )
        self._serde: AvroSerde = self._decoder.serde
        self._decision = Decisions(policy)
        self._derived = policy.derived_purpose_names
        self._tagged_writer = TaggedWriter(schemas, self._serde)
        self._quarantined = schemas.latest("QuarantinedEvent")
        self._dead = schemas.latest("DeadLetter")
        self.topic = {name: topics.name(name) for name in OUTPUT_TOPICS}
        self.input_topics = sorted(self._channel_of)

    def decoder_config(self, pseudonym_key: bytes) -> DecoderConfig:
        """What a helper process needs to decode this pipeline's inputs."""
        return DecoderConfig(
            pseudonym_key, self._policy, self._channel_of, self._expected, self._max_bytes
        )

    @property
    def decoder(self) -> EventDecoder:
        """The first stage, for decoding in this process."""
        return self._decoder

    def process(self, messages: Sequence[InputRecord], now: datetime) -> BatchOutcome:
        """Both stages in this process."""
        with self._tracer.start_as_current_span("decode and validate"):
            decoded = self._decoder.decode_batch(decode_request(messages), now)
        return self.route(messages, decoded, now)

    def route(
        self, messages: Sequence[InputRecord], decoded: Sequence[Outcome], now: datetime
    ) -> BatchOutcome:
        """The second stage, given the first stage's outcome for each message."""
        outcome = BatchOutcome()
        with self._tracer.start_as_current_span("de-duplicate"):
            events = self._admit(messages, decoded, now, outcome)
        self._dedup.seal()  # this batch's ids: checked against by the next while it commits
        round_trips = self._directory.ledger_round_trips
        with self._directory.batch() as ledger:  # one ledger transaction, before Kafka's
            with self._tracer.start_as_current_span("resolve subjects"):
                self._resolve_subjects(events, now)
            with self._tracer.start_as_current_span("tag, encrypt and route"):
                for event in events:
                    self._route(event, now, outcome)
            with self._tracer.start_as_current_span("record footprints"):
                self._directory.record_footprints(outcome.footprints, now)
        outcome.ledger_write = ledger.write
        trace.get_current_span().set_attribute(
            "contactflow.ledger.round_trips", self._directory.ledger_round_trips - round_trips
        )
        return outcome

    def _admit(
        self,
        messages: Sequence[InputRecord],
        decoded: Sequence[Outcome],
        now: datetime,
        outcome: BatchOutcome,
    ) -> list[_Event]:
        """Dead-letter the rejected, drop a producer's retries, keep the rest in order."""
        events: list[_Event] = []
        counts = outcome.counts
        check = self._dedup.check_digest
        for message, item in zip(messages, decoded, strict=True):
            topic = message.topic() or ""
            channel = self._channel_of.get(topic, "unknown")
            counts["in", channel] += 1
            if isinstance(item, Rejection):
                self._reject(message, item, now, outcome)
                continue
            seen = check((topic, message.partition() or 0), item.event_id, item.content)
            if seen is Seen.NEW:
                events.append(_Event(message, channel, item))
            elif seen is Seen.RETRY:
                counts["duplicate", channel] += 1
            else:
                self._reject(message, _REUSED, now, outcome)
        return events

    # -- subjects, attribution, outputs -------------------------------------------------

    def _resolve_subjects(self, events: list[_Event], now: datetime) -> None:
        pending = []
        cached_subject = self._directory.cached_subject
        for event in events:
            event.subject = cached_subject(event.decoded.digests)
            if event.subject is None:
                pending.append(event)
        if pending:
            subjects = self._directory.resolve([e.decoded.digests for e in pending], now)
            for event, subject in zip(pending, subjects, strict=True):
                event.subject = subject
            current = self._directory.current
            for event in events:  # a merge in this batch may have retired a cached subject
                if event.subject is not None:
                    event.subject = current(event.subject)
        self._directory.ensure_ciphers({e.subject for e in events if e.subject}, now)

    def _route(self, event: _Event, now: datetime, outcome: BatchOutcome) -> None:
        message, decoded, subject = event.message, event.decoded, event.subject
        if subject is None:
            self._reject(message, _ERASED, now, outcome)
            return
        status = self._status(subject)
        if status.erased:  # erased since this worker cached the subject's key
            self._directory.forget(subject)
            self._reject(message, _ERASED, now, outcome)
            return
        attribution, hold_reason = self._decision(
            (decoded.client, decoded.service, decoded.purpose, event.channel, decoded.kind)
        )
        route = choose_route(attribution, status)
        if route is Route.SUPPRESSED:
            outcome.counts["suppressed", decoded.purpose] += 1
            return
        cipher = self._directory.cached_cipher(subject)
        if cipher is None:  # erased in the ledger; its state not read yet
            self._directory.forget(subject)
            self._reject(message, _ERASED, now, outcome)
            return
        sealed = seal(decoded, cipher.encrypt_fields)
        headers = [h for h in message.headers() or () if h[0] == TRACE_HEADER]
        if headers:
            outcome.traceparents.extend(v for _, v in headers)
        if route is Route.QUARANTINE or attribution is None:
            value = self._quarantine_record(event, sealed, cipher.key_id, now)
            quarantined = Output(
                self.topic[CONTACT_QUARANTINE], decoded.contact_id.encode(), value, headers
            )
            if self._outgrown(message, quarantined, now, outcome):
                return
            outcome.outputs.append(quarantined)
            outcome.counts["quarantined", event.channel] += 1
            return
        templates = decoded.templates
        if templates is None:  # the decode stage applies the same policy: it cannot happen
            raise RuntimeError("an attributed event came without its output templates")
        subject_key = subject.encode()
        restricted = route is Route.RESTRICTED
        topic = CONTACT_RESTRICTED if restricted else CONTROLLER_TOPICS[attribution.controller]
        tagged = self._tagged_writer.write(
            head=templates.tagged_head,
            event_id=decoded.event_id,
            contact_id=decoded.contact_id,
            channel=event.channel,
            kind=decoded.kind,
            occurred_at=decoded.occurred_at,
            attribution=attribution,
            restricted=restricted,
            subject=subject,
            key_id=cipher.key_id,
            source_fingerprint=decoded.fingerprint_hex,
            sealed=sealed,
            traceparent=_traceparent(headers),
            excluded_purposes=excluded_purposes(status, self._derived),
        )
        output = Output(self.topic[topic], subject_key, tagged, headers)
        if self._outgrown(message, output, now, outcome):
            return
        outcome.outputs.append(output)
        outcome.footprints.add((subject, attribution.controller, event.channel))
        outcome.counts["out", topic, attribution.controller] += 1
        if templates.retention is not None:
            recording_id, parts = templates.retention
            recording = fill(parts, (subject_key,))
            outcome.outputs.append(
                Output(self.topic[RECORDINGS_STANDARD], recording_id, recording, headers)
            )
            outcome.counts["out", RECORDINGS_STANDARD, attribution.controller] += 1
        if hold_reason is not None and templates.signal is not None:
            signal = fill(templates.signal, (subject_key,))
            outcome.outputs.append(
                Output(self.topic[RETENTION_SIGNALS], subject_key, signal, headers)
            )
            outcome.counts["hold_signal", hold_reason] += 1

    def _quarantine_record(self, event: _Event, sealed: bytes, key_id: str, now: datetime) -> bytes:
        decoded = event.decoded
        quarantined = {
            "event_id": decoded.event_id,
            "contact_id": decoded.contact_id,
            "channel": event.channel,
            "kind": decoded.kind,
            "occurred_at": decoded.occurred_at,
            "client": decoded.client,
            "service": decoded.service,
            "purpose": decoded.purpose,
            "reason": "no policy rule matches (client, service, purpose, channel, kind)",
            "policy_version": self._policy.version,
            "subject_pseudonym": event.subject,
            "key_id": key_id,
            "source_fingerprint": decoded.fingerprint_hex,
            "event": sealed,
            "quarantined_at": now,
        }
        return self._serde.serialize(quarantined, self._quarantined)

    def refused(self, message: InputRecord, error: str, now: datetime) -> BatchOutcome:
        """What is left of a record whose outputs the broker refused (`error`, its code):
        a dead-letter reference, `too_large` for a size error, else `broker_rejected`."""
        outcome = BatchOutcome()
        outcome.counts["in", self._channel_of.get(message.topic() or "", "unknown")] += 1
        size_error = error in SIZE_ERROR_NAMES
        reason = f"the broker refused its outputs ({error})"
        code = TOO_LARGE if size_error else BROKER_REJECTED
        self._reject(message, Rejection("produce", code, reason), now, outcome, reference=True)
        return outcome

    def _outgrown(
        self, message: InputRecord, output: Output, now: datetime, outcome: BatchOutcome
    ) -> bool:
        """Dead-letter an event whose output its topic would refuse (a reference: the event
        itself is larger than the dead-letter topic would take, or close to it)."""
        size = record_size(output.key, output.value, output.headers)
        limit = self._limits[output.topic]
        if size <= limit:
            return False
        logical = next(name for name, physical in self.topic.items() if physical == output.topic)
        reason = (
            f"its {logical} record would be {size} bytes, over the {limit}-byte limit of that topic"
        )
        self._reject(message, Rejection("produce", TOO_LARGE, reason), now, outcome)
        return True

    def _reject(
        self,
        message: InputRecord,
        rejection: Rejection,
        now: datetime,
        outcome: BatchOutcome,
        *,
        reference: bool = False,
    ) -> None:
        letter, code = self.dead_letter(message, rejection, now, reference=reference)
        outcome.outputs.append(letter)
        outcome.counts["dead_letter", code] += 1

    def dead_letter(
        self, message: InputRecord, rejection: Rejection, now: datetime, *, reference: bool
    ) -> tuple[Output, str]:
        """The dead letter of `message` and its reason code: with the original bytes when
        they fit the topic, else a reference (`too_large`, size and SHA-256, no bytes).

        A rejection for size (`too_large`) is always a reference, and so is one asked for
        (`reference`): the record it would carry is the one a topic refused.
        """
        topic, partition, offset = (
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
        )
        headers = {k: v or b"" for k, v in message.headers() or ()}
        value = records.dead_letter(
            source_topic=topic, source_partition=partition, source_offset=offset,
            stage=rejection.stage, reason_code=rejection.code, reason=rejection.reason,
            original_key=message.key(), original_value=message.value(),
            original_headers=headers, failed_at=now,
        )  # fmt: skip
        key = records.dead_letter_key(topic, partition, offset)
        deadletters = self.topic[CONTACT_DEADLETTER]
        limit = self._limits[deadletters]
        if not reference and rejection.code != TOO_LARGE:
            letter = self._serde.serialize(value, self._dead)
            if len(key) + len(letter) <= limit:
                return Output(deadletters, key, letter, []), rejection.code
        original = message.value() or b""
        reason = _reference_reason(rejection, len(original), limit, reference)
        value.update(
            reason_code=rejection.code if reference else TOO_LARGE,
            reason=reason,
            original_key=None,
            original_value=None,
            original_size=len(original),
            original_sha256=hashlib.sha256(original).hexdigest(),
        )
        letter = self._serde.serialize(value, self._dead)
        if len(key) + len(letter) > limit:  # headers too large: keep their names only
            value["original_headers"] = dict.fromkeys(headers, b"")
            value["reason"] = f"{reason}; header values dropped to fit"
            letter = self._serde.serialize(value, self._dead)
        if len(key) + len(letter) > limit:
            raise DeadLetterTooLarge(
                f"even a reference to {topic} partition {partition} offset {offset} "
                f"({len(key) + len(letter)} bytes) exceeds the {limit}-byte limit of "
                f"{deadletters}: raise that topic's max.message.bytes"
            )
        return Output(deadletters, key, letter, []), str(value["reason_code"])


class DeadLetterTooLarge(ContactflowError):
    """Not even a dead-letter reference fits the dead-letter topic: its limit is broken."""


def _reference_reason(rejection: Rejection, size: int, limit: int, reference: bool) -> str:
    if reference or rejection.code == TOO_LARGE:
        return f"{rejection.reason}; only a reference is kept ({size}-byte value)"
    return (
        f"{rejection.code}: {rejection.reason}; its dead letter would exceed the "
        f"{limit}-byte limit of the dead-letter topic, so only a reference is kept "
        f"({size}-byte value)"
    )


def decode_request(messages: Sequence[InputRecord]) -> list[Request]:
    """What the decode stage reads of each message: its topic and value."""
    return [(message.topic() or "", message.value()) for message in messages]


def _traceparent(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The first traceparent header, as the tagged event carries it (None if it is null)."""
    for key, value in headers or ():
        if key == TRACE_HEADER:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else None
    return None
