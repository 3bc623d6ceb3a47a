"""The router's work on one batch: raw records in, output records out, nothing lost.

Each input record ends as exactly one of: tagged event(s) on the controller's topic (plus
the retention input for recordings), a restricted event, a quarantined event, a dead
letter, or a counted drop (a producer's retry of an event already routed, or a purpose
the subject objected to). The pipeline decides and encodes; the worker produces the
outputs and commits them with the input offsets in one Kafka transaction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Tracer

from processors.identity import Identifier, IdentifierKind, InvalidIdentifier
from processors.pii import PiiPath, compile_paths, rewrite_pii
from processors.policy import (
    Attribution,
    ContactFacts,
    Policy,
    attribute_controller,
    hold_signal_of,
)
from processors.routing import (
    CONTROLLER_TOPICS,
    DEADLETTER_TOPIC,
    QUARANTINE_TOPIC,
    RECORDINGS_TOPIC,
    RESTRICTED_TOPIC,
    SIGNALS_TOPIC,
    Route,
    SubjectStatus,
    choose_route,
    implausible_time,
    recording_of,
    retain_until,
    subject_identifiers,
)
from schemas.catalog import Contract, SchemaCatalog
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.serde import AvroSerde
from streams.producer import CHANNELS, raw_topic
from streams.router.dedup import DedupWindow, Seen
from streams.router.directory import Digests, SubjectDirectory
from streams.topics import TopicCatalog

SCHEMA_HEADER = "contactflow-schema"
TRACE_HEADER = "traceparent"
CHANNEL_OF_TOPIC = {raw_topic(channel): channel for channel in CHANNELS}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class InputRecord(Protocol):
    """What the pipeline reads of a consumed message (confluent_kafka.Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class BatchOutcome:
    outputs: list[Output] = field(default_factory=list)
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    traceparents: list[bytes] = field(default_factory=list)


class Rejected(Exception):
    """An input that goes to the dead-letter topic; the reason never quotes its values."""

    def __init__(self, stage: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.code, self.reason = stage, code, reason


@dataclass(slots=True)
class _Event:
    message: InputRecord
    channel: str
    contract: Contract
    record: dict[str, Any]
    digests: Digests
    subject: str | None = None


@dataclass(frozen=True)
class _ContractRules:
    pii: tuple[PiiPath, ...]
    branch_of_kind: dict[str, str]
    bounds: dict[str, list[tuple[str, int | float | None, int | float | None]]]


class RouterPipeline:
    """Decodes, validates, pseudonymises, attributes, encrypts and routes raw events."""

    def __init__(
        self,
        *,
        topics: TopicCatalog,
        schemas: SchemaCatalog,
        policy: Policy,
        directory: SubjectDirectory,
        subject_status: Callable[[str], SubjectStatus],
        dedup: DedupWindow,
        max_event_bytes: int,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._serde = AvroSerde(schemas)
        self._policy = policy
        self._directory = directory
        self._status = subject_status
        self._dedup = dedup
        self._max_bytes = max_event_bytes
        self._channel_of = {topics.name(t): c for t, c in CHANNEL_OF_TOPIC.items()}
        self._expected = {
            topics.name(t): schemas.latest(topics.spec(t).value_schema).name
            for t in CHANNEL_OF_TOPIC
        }
        self._rules: dict[bytes, _ContractRules] = {}
        self._tagged = schemas.latest("TaggedContactEvent")
        self._quarantined = schemas.latest("QuarantinedEvent")
        self._retention = schemas.latest("RecordingRetention")
        self._dead = schemas.latest("DeadLetter")
        self._signal = schemas.latest("HoldSignal")
        self.topic = {
            name: topics.name(name)
            for name in (*CONTROLLER_TOPICS.values(), RESTRICTED_TOPIC, QUARANTINE_TOPIC,
                         RECORDINGS_TOPIC, DEADLETTER_TOPIC, SIGNALS_TOPIC)
        }  # fmt: skip
        self.input_topics = sorted(self._channel_of)

    def process(self, messages: Sequence[InputRecord], now: datetime) -> BatchOutcome:
        outcome = BatchOutcome()
        with self._tracer.start_as_current_span("decode and validate"):
            events = self._decode_all(messages, now, outcome)
        with self._tracer.start_as_current_span("resolve subjects") as span:
            round_trips = self._directory.ledger_round_trips
            self._resolve_subjects(events, now)
            span.set_attribute("contactflow.ledger.round_trips",
                               self._directory.ledger_round_trips - round_trips)  # fmt: skip
        with self._tracer.start_as_current_span("tag, encrypt and route"):
            for event in events:
                self._route(event, now, outcome)
        return outcome

    def _decode_all(
        self, messages: Sequence[InputRecord], now: datetime, outcome: BatchOutcome
    ) -> list[_Event]:
        events: list[_Event] = []
        for message in messages:
            channel = self._channel_of.get(message.topic() or "", "unknown")
            outcome.counts["in", channel] += 1
            try:
                event = self._decode(message, channel, now)
            except Rejected as rejected:
                outcome.outputs.append(self._dead_letter(message, rejected, now))
                outcome.counts["dead_letter", rejected.code] += 1
                continue
            if event is not None:
                events.append(event)
            else:
                outcome.counts["duplicate", channel] += 1
        return events

    # -- decode and validate ------------------------------------------------------------

    def _decode(self, message: InputRecord, channel: str, now: datetime) -> _Event | None:
        value = message.value()
        if value is None:
            raise Rejected("decode", "no_value", "record has no value")
        if len(value) > self._max_bytes:
            raise Rejected(
                "decode", "oversized", f"{len(value)} bytes exceeds the {self._max_bytes} limit"
            )
        try:
            contract, record = self._serde.deserialize(value)
        except UnknownFingerprint:
            raise Rejected(
                "decode", "unknown_fingerprint", "no contract has this fingerprint"
            ) from None
        except (MalformedPayload, SchemaMismatch) as exc:
            raise Rejected("decode", "malformed", str(exc)) from None
        expected = self._expected.get(message.topic() or "")
        if contract.name != expected:
            raise Rejected(
                "validate", "wrong_contract", f"{contract.label} is not the contract of this topic"
            )
        rules = self._rules_of(contract)
        self._check_payload(record, rules)
        envelope = record["envelope"]
        if not _is_uuid(envelope["event_id"]) or not envelope["contact_id"].strip():
            raise Rejected(
                "validate", "bad_id", "envelope.event_id or envelope.contact_id is invalid"
            )
        problem = implausible_time(envelope["occurred_at"], now)
        if problem:
            raise Rejected("validate", "implausible_time", f"envelope.{problem}")
        try:
            identifiers = subject_identifiers(envelope["subject"])
        except InvalidIdentifier as exc:
            raise Rejected("pseudonymise", f"invalid_{exc.kind.value}", str(exc)) from None
        if not identifiers:
            identifiers = [Identifier(IdentifierKind.CONTACT, envelope["contact_id"])]
        seen = self._dedup.check(
            (message.topic() or "", message.partition() or 0), envelope["event_id"], value
        )
        if seen is Seen.REUSED:
            raise Rejected("validate", "event_id_reused", "event id already used for other content")
        if seen is Seen.RETRY:
            return None
        return _Event(message, channel, contract, record, self._directory.digests(identifiers))

    def _rules_of(self, contract: Contract) -> _ContractRules:
        rules = self._rules.get(contract.fingerprint)
        if rules is None:
            branch_of_kind: dict[str, str] = {}
            bounds: dict[str, list[tuple[str, int | float | None, int | float | None]]] = {}
            payload = next(f for f in contract.definition["fields"] if f["name"] == "payload")
            for branch in payload["type"]:
                name = (
                    branch["name"]
                    if "." in branch["name"]
                    else f"{contract.name.rsplit('.', 1)[0]}.{branch['name']}"
                )
                branch_of_kind.update(dict.fromkeys(branch.get("kinds", ()), name))
                bounds[name] = [
                    (f["name"], f.get("minimum"), f.get("maximum"))
                    for f in branch["fields"]
                    if "minimum" in f or "maximum" in f
                ]
            rules = _ContractRules(compile_paths(contract.pii_fields), branch_of_kind, bounds)
            self._rules[contract.fingerprint] = rules
        return rules

    @staticmethod
    def _check_payload(record: dict[str, Any], rules: _ContractRules) -> None:
        payload = record["payload"]
        if isinstance(payload, tuple):
            branch, body = payload
        else:  # a union of one record decodes to the record itself
            branch, body = next(iter(rules.bounds)), payload
        if rules.branch_of_kind.get(record["kind"]) != branch:
            raise Rejected("validate", "kind_mismatch", "payload does not agree with kind")
        for name, low, high in rules.bounds.get(branch, ()):
            value = body.get(name)
            if value is not None and (
                (low is not None and value < low) or (high is not None and value > high)
            ):
                raise Rejected("validate", "out_of_range", f"payload.{name} is out of range")

    # -- subjects, attribution, outputs -------------------------------------------------

    def _resolve_subjects(self, events: list[_Event], now: datetime) -> None:
        pending = []
        for event in events:
            event.subject = self._directory.cached_subject(event.digests)
            if event.subject is None:
                pending.append(event)
        if pending:
            subjects = self._directory.resolve([e.digests for e in pending], now)
            for event, subject in zip(pending, subjects, strict=True):
                event.subject = subject
            for event in events:  # a merge in this batch may have retired a cached subject
                if event.subject is not None:
                    event.subject = self._directory.current(event.subject)
        self._directory.ensure_ciphers({e.subject for e in events if e.subject}, now)

    def _route(self, event: _Event, now: datetime, outcome: BatchOutcome) -> None:
        message, record, envelope = event.message, event.record, event.record["envelope"]
        if event.subject is None:
            rejected = Rejected("pseudonymise", "subject_erased", "the subject was erased")
            outcome.outputs.append(self._dead_letter(message, rejected, now))
            outcome.counts["dead_letter", rejected.code] += 1
            return
        facts = ContactFacts(
            envelope["client"], envelope["service"], envelope["purpose"], event.channel,
            record["kind"],
        )  # fmt: skip
        attribution = attribute_controller(self._policy, facts)
        status = self._status(event.subject)
        route = choose_route(attribution, status)
        if route is Route.SUPPRESSED:
            outcome.counts["suppressed", facts.purpose] += 1
            return
        cipher = self._directory.cipher(event.subject)
        rewrite_pii(
            record,
            self._rules_of(event.contract).pii,
            lambda path, value: cipher.encrypt(value, path),
        )
        sealed = self._serde.serialize(record, event.contract)
        headers = [h for h in message.headers() or () if h[0] == TRACE_HEADER]
        outcome.traceparents.extend(v for _, v in headers)
        subject_key = event.subject.encode()
        if route is Route.QUARANTINE or attribution is None:
            value = self._quarantine_record(event, sealed, cipher.key_id, now)
            outcome.outputs.append(
                Output(
                    self.topic[QUARANTINE_TOPIC], envelope["contact_id"].encode(), value, headers
                )
            )
            outcome.counts["quarantined", event.channel] += 1
            return
        topic = (
            RESTRICTED_TOPIC
            if route is Route.RESTRICTED
            else CONTROLLER_TOPICS[attribution.controller]
        )
        tagged = self._tagged_record(event, attribution, route, sealed, cipher.key_id, headers)
        outcome.outputs.append(Output(self.topic[topic], subject_key, tagged, headers))
        outcome.counts["out", topic, attribution.controller] += 1
        recording = self._retention_record(event, attribution, now)
        if recording is not None:
            outcome.outputs.append(Output(self.topic[RECORDINGS_TOPIC], *recording, headers))
            outcome.counts["out", RECORDINGS_TOPIC, attribution.controller] += 1
        reason = hold_signal_of(self._policy, facts)
        if reason is not None:
            signal = self._signal_record(event, reason)
            outcome.outputs.append(Output(self.topic[SIGNALS_TOPIC], subject_key, signal, headers))
            outcome.counts["hold_signal", reason] += 1

    def _tagged_record(
        self, event: _Event, attribution: Attribution, route: Route, sealed: bytes, key_id: str,
        headers: list[tuple[str, bytes]],
    ) -> bytes:  # fmt: skip
        envelope = event.record["envelope"]
        tagged = {
            "event_id": envelope["event_id"],
            "contact_id": envelope["contact_id"],
            "channel": event.channel,
            "kind": event.record["kind"],
            "occurred_at": envelope["occurred_at"],
            "governance": {
                "controller": attribution.controller,
                "processor": attribution.processor,
                "purpose": attribution.purpose,
                "legal_basis": attribution.legal_basis,
                "subject_pseudonym": event.subject,
                "policy_version": attribution.policy_version,
                "restricted": route is Route.RESTRICTED,
                "retention_class": attribution.retention_class,
            },
            "key_id": key_id,
            "source_fingerprint": event.contract.fingerprint_hex,
            "event": sealed,
            "traceparent": headers[0][1].decode("ascii", "replace") if headers else None,
        }
        return self._serde.serialize(tagged, self._tagged)

    def _quarantine_record(self, event: _Event, sealed: bytes, key_id: str, now: datetime) -> bytes:
        envelope = event.record["envelope"]
        quarantined = {
            "event_id": envelope["event_id"],
            "contact_id": envelope["contact_id"],
            "channel": event.channel,
            "kind": event.record["kind"],
            "occurred_at": envelope["occurred_at"],
            "client": envelope["client"],
            "service": envelope["service"],
            "purpose": envelope["purpose"],
            "reason": "no policy rule matches (client, service, purpose, channel, kind)",
            "policy_version": self._policy.version,
            "subject_pseudonym": event.subject,
            "key_id": key_id,
            "source_fingerprint": event.contract.fingerprint_hex,
            "event": sealed,
            "quarantined_at": now,
        }
        return self._serde.serialize(quarantined, self._quarantined)

    def _retention_record(
        self, event: _Event, attribution: Attribution, now: datetime
    ) -> tuple[bytes, bytes] | None:
        envelope = event.record["envelope"]
        recording = recording_of(
            event.record["kind"], event.record["payload"], envelope["occurred_at"]
        )
        if recording is None:
            return None
        period = self._policy.retention_classes[attribution.retention_class].recording_period_days
        until = retain_until(recording.ended_at, period)
        if until is None:
            return None
        value = {
            "recording_id": recording.recording_id,
            "contact_id": envelope["contact_id"],
            "channel": event.channel,
            "recording_kind": recording.recording_kind,
            "media_ref": recording.media_ref,
            "controller": attribution.controller,
            "purpose": attribution.purpose,
            "subject_pseudonym": event.subject,
            "ended_at": recording.ended_at,
            "retain_until": until,
            "state": "standard",
            "hold_reasons": [],
            "policy_version": attribution.policy_version,
        }
        return recording.recording_id.encode(), self._serde.serialize(value, self._retention)

    def _signal_record(self, event: _Event, reason: str) -> bytes:
        envelope = event.record["envelope"]
        signal = {
            "signal_id": envelope["event_id"],
            "reason": reason,
            "subject_pseudonym": event.subject,
            "contact_id": envelope["contact_id"],
            "channel": event.channel,
            "kind": event.record["kind"],
            "occurred_at": envelope["occurred_at"],
            "policy_version": self._policy.version,
        }
        return self._serde.serialize(signal, self._signal)

    def _dead_letter(self, message: InputRecord, rejected: Rejected, now: datetime) -> Output:
        topic, partition, offset = (
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
        )
        value = {
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "stage": rejected.stage,
            "reason_code": rejected.code,
            "reason": rejected.reason,
            "original_key": message.key(),
            "original_value": message.value(),
            "original_headers": {k: v or b"" for k, v in message.headers() or ()},
            "failed_at": now,
        }
        key = f"{topic}:{partition}:{offset}".encode()
        return Output(
            self.topic[DEADLETTER_TOPIC], key, self._serde.serialize(value, self._dead), []
        )
