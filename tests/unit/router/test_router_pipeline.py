"""RouterPipeline on its own: no broker, no container.

The pipeline gets its catalogs, the policy file, the output limits, a subject directory
over a real SQLite ledger and a subject-state lookup as arguments. Its inputs are stand-ins
for consumed records (`_Record`: topic, partition, offset, key, value, headers): these
tests are about routing decisions and the records written, not about Kafka.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from processors.identity import InvalidIdentifier, normalise_phone
from processors.pii import compile_paths, rewrite_pii
from processors.policy import Policy, parse_policy
from processors.routing import NO_RESTRICTIONS, SubjectStatus
from schemas import records
from schemas.catalog import CHANNEL_CONTRACTS, Contract, SchemaCatalog
from schemas.examples import CHANNELS, example_events
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CONTACT_COMNEXIO,
    CONTACT_DEADLETTER,
    CONTACT_ORES,
    CONTACT_QUARANTINE,
    CONTACT_RESTRICTED,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
    raw_topic,
)
from schemas.validation import from_json
from streams.router.dedup import DedupWindow
from streams.router.directory import SubjectDirectory
from streams.router.limits import OutputLimits
from streams.router.pipeline import BatchOutcome, Output, RouterPipeline
from streams.settings import PROJECT_ROOT
from streams.topics import TopicCatalog, load_topics

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PREFIX = "unit."  # outputs must be named through the catalog, never spelt
TRACE = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# A producer header the router must not pass on (it is not a trace parent).
CALLER_HEADER = ("x-caller", b"+32 471 12 34 56")


@dataclass
class _Record:
    """A consumed record as the pipeline reads it (the methods of confluent_kafka.Message)."""

    _topic: str
    _value: bytes | None
    _offset: int
    _partition: int = 0
    _key: bytes | None = b"contact-key"
    _headers: list[tuple[str, bytes]] = field(
        default_factory=lambda: [("traceparent", TRACE), CALLER_HEADER]
    )

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


@pytest.fixture(scope="module")
def topics() -> TopicCatalog:
    return load_topics(PROJECT_ROOT / "infra" / "topics.yaml", prefix=PREFIX)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))


@pytest.fixture(scope="module")
def serde(catalog: SchemaCatalog) -> AvroSerde:
    return AvroSerde(catalog)


@pytest.fixture
def statuses() -> dict[str, SubjectStatus]:
    """The privacy state of subjects (as privacy.subject-state.v1 would have it)."""
    return {}


@pytest.fixture
def make_pipeline(
    topics: TopicCatalog,
    catalog: SchemaCatalog,
    policy: Policy,
    directory: SubjectDirectory,
    statuses: dict[str, SubjectStatus],
) -> Callable[..., RouterPipeline]:
    def make(limits: OutputLimits | None = None) -> RouterPipeline:
        return RouterPipeline(
            topics=topics,
            schemas=catalog,
            policy=policy,
            directory=directory,
            subject_status=lambda subject: statuses.get(subject, NO_RESTRICTIONS),
            dedup=DedupWindow(1000),
            limits=limits or OutputLimits.fixed(),
            max_event_bytes=512 * 1024,
        )

    return make


@pytest.fixture
def pipeline(make_pipeline: Callable[..., RouterPipeline]) -> RouterPipeline:
    return make_pipeline()


class _Inputs:
    """Encodes producer events (JSON, as `schemas.examples` gives them) as raw records."""

    def __init__(self, catalog: SchemaCatalog, serde: AvroSerde) -> None:
        self._catalog, self._serde = catalog, serde
        self._offset = 0

    def encode(self, channel: str, event: dict[str, Any]) -> bytes:
        contract = self._catalog.latest(CHANNEL_CONTRACTS[channel])
        return self._serde.serialize(from_json(contract, event), contract)

    def record(self, channel: str, event: dict[str, Any]) -> _Record:
        return self.raw(PREFIX + raw_topic(channel), self.encode(channel, event))

    def raw(self, topic: str, value: bytes | None) -> _Record:
        self._offset += 1
        return _Record(topic, value, self._offset)


@pytest.fixture
def inputs(catalog: SchemaCatalog, serde: AvroSerde) -> _Inputs:
    return _Inputs(catalog, serde)


def _logical(output: Output) -> str:
    assert output.topic.startswith(PREFIX)
    return output.topic.removeprefix(PREFIX)


def _on(outcome: BatchOutcome, topic: str) -> list[Output]:
    return [output for output in outcome.outputs if _logical(output) == topic]


def _decoded(serde: AvroSerde, output: Output) -> dict[str, Any]:
    _, record = serde.deserialize(output.value)
    return record


def _example(channel: str, kind: str) -> dict[str, Any]:
    return next(e for e in example_events(channel) if e["kind"] == kind)


def _again(event: dict[str, Any], number: int, **envelope: Any) -> dict[str, Any]:
    """The same person's event under a new event id (and contact id), with `envelope` set."""
    event = {**event, "envelope": {**event["envelope"], **envelope}}
    event["envelope"]["event_id"] = f"00000000-0000-4000-8000-{number:012d}"
    event["envelope"]["contact_id"] = f"contact-{number}"
    return event


# -- routing -------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_valid_event_goes_to_its_controllers_topic_keyed_by_its_subject(
    channel: str, pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    events = example_events(channel)
    outcome = pipeline.process([inputs.record(channel, e) for e in events], NOW)
    tagged = _on(outcome, CONTACT_ORES) + _on(outcome, CONTACT_COMNEXIO)
    assert len(tagged) == len(events)
    for output in tagged:
        record = _decoded(serde, output)
        governance = record["governance"]
        expected = CONTACT_COMNEXIO if governance["purpose"] == "coaching" else CONTACT_ORES
        assert _logical(output) == expected
        assert governance["controller"] == ("COMNEXIO" if expected == CONTACT_COMNEXIO else "ORES")
        assert output.key == governance["subject_pseudonym"].encode()
        assert output.key.startswith(b"s-")
        assert governance["restricted"] is False
        assert record["channel"] == channel
        assert output.headers == [("traceparent", TRACE)]
        assert record["traceparent"] == TRACE.decode()
    assert {record["event_id"] for record in (_decoded(serde, o) for o in tagged)} == {
        e["envelope"]["event_id"] for e in events
    }
    assert _on(outcome, CONTACT_DEADLETTER) == _on(outcome, CONTACT_QUARANTINE) == []


def test_a_recording_gets_a_retention_record_under_its_subject(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    recording = _example("phone", "recording_available")  # re-listened for coaching
    outcome = pipeline.process([inputs.record("phone", recording)], NOW)
    (tagged,) = _on(outcome, CONTACT_COMNEXIO)
    (retention,) = _on(outcome, RECORDINGS_STANDARD)
    record = _decoded(serde, retention)
    assert retention.key == recording["payload"]["recording_id"].encode()
    assert record["subject_pseudonym"].encode() == tagged.key
    assert (record["controller"], record["purpose"]) == ("COMNEXIO", "coaching")
    ended = datetime.fromisoformat(recording["payload"]["ended_at"])
    assert record["retain_until"] == ended + timedelta(days=30)  # the coaching class
    assert _on(outcome, RETENTION_SIGNALS) == []


def test_a_complaint_signals_a_hold_on_its_subject(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    complaint = _example("email", "email_received")  # service: complaint
    outcome = pipeline.process([inputs.record("email", complaint)], NOW)
    (tagged,) = _on(outcome, CONTACT_ORES)
    (signal,) = _on(outcome, RETENTION_SIGNALS)
    record = _decoded(serde, signal)
    assert signal.key == tagged.key
    assert record["reason"] == "complaint"
    assert record["subject_pseudonym"].encode() == tagged.key
    assert record["signal_id"] == complaint["envelope"]["event_id"]
    assert len(_on(outcome, RECORDINGS_STANDARD)) == 1  # the e-mail body is a recording too
    assert outcome.counts["hold_signal", "complaint"] == 1


def test_a_restricted_subjects_event_goes_to_the_restricted_topic(
    pipeline: RouterPipeline,
    inputs: _Inputs,
    serde: AvroSerde,
    statuses: dict[str, SubjectStatus],
) -> None:
    call = _example("phone", "inbound_call")
    first = pipeline.process([inputs.record("phone", call)], NOW)
    (tagged,) = _on(first, CONTACT_ORES)
    statuses[tagged.key.decode()] = SubjectStatus(restricted=True)

    outcome = pipeline.process([inputs.record("phone", _again(call, 1))], NOW)
    (restricted,) = outcome.outputs
    assert _logical(restricted) == CONTACT_RESTRICTED
    assert restricted.key == tagged.key
    assert _decoded(serde, restricted)["governance"]["restricted"] is True


def test_an_objected_purpose_is_not_produced(
    pipeline: RouterPipeline,
    inputs: _Inputs,
    statuses: dict[str, SubjectStatus],
) -> None:
    call = _example("phone", "inbound_call")
    (tagged,) = _on(pipeline.process([inputs.record("phone", call)], NOW), CONTACT_ORES)
    statuses[tagged.key.decode()] = SubjectStatus(objected_purposes=frozenset({"coaching"}))

    recording = _example("phone", "recording_available")  # purpose coaching, same phone
    outcome = pipeline.process(
        [inputs.record("phone", recording), inputs.record("phone", _again(call, 2))], NOW
    )
    (still_handled,) = outcome.outputs  # the contact handling for ORES goes on
    assert _logical(still_handled) == CONTACT_ORES
    assert outcome.counts["suppressed", "coaching"] == 1


# KPI fields each channel's newest contract version adds (phone v3, the others v2)
KPI_FIELDS = {
    "phone": ("queued_at", "wrap_up_s"),
    "chat": ("first_response_at",),
    "email": ("replied_to_received_at",),
    "survey": ("survey_type", "related_channel", "csat"),
    "social": ("comment_received_at",),
}


def _as_version(contract: Contract, event: dict[str, Any]) -> dict[str, Any]:
    """`event` without the payload fields `contract` (an older version) does not have."""
    union = next(f for f in contract.definition["fields"] if f["name"] == "payload")["type"]
    branch = next(b for b in union if event["kind"] in b["kinds"])
    known = {f["name"] for f in branch["fields"]}
    return {**event, "payload": {k: v for k, v in event["payload"].items() if k in known}}


def _masked(contract: Contract, record: dict[str, Any]) -> dict[str, Any]:
    rewrite_pii(record, compile_paths(contract.pii_fields), lambda _path, _value: "*")
    return record


@pytest.mark.parametrize("channel", CHANNELS)
def test_events_of_every_contract_version_are_tagged_for_their_controller(
    channel: str, pipeline: RouterPipeline, inputs: _Inputs, catalog: SchemaCatalog,
    serde: AvroSerde,
) -> None:  # fmt: skip
    """Producers move to a new version at their own pace: events written with each version
    of their channel's contract are routed alike, and the tagged event keeps the bytes as
    written, so the newest version's KPI fields reach the controller's topic."""
    name, number, carried = CHANNEL_CONTRACTS[channel], 100, set()
    newest = catalog.latest(name)
    assert newest.version == (3 if channel == "phone" else 2)
    assert catalog.latest("TaggedContactEvent").version == 2
    for version in catalog.versions(name):
        contract = catalog.get(name, version)
        for event in example_events(channel):
            number += 1
            raw = from_json(contract, _as_version(contract, _again(event, number)))
            value = serde.serialize(raw, contract)
            outcome = pipeline.process([inputs.raw(PREFIX + raw_topic(channel), value)], NOW)
            (output,) = _on(outcome, CONTACT_ORES) + _on(outcome, CONTACT_COMNEXIO)
            tagged_writer, tagged = serde.deserialize(output.value)
            assert tagged_writer.label == "TaggedContactEvent v2"
            controller = "COMNEXIO" if raw["envelope"]["purpose"] == "coaching" else "ORES"
            assert tagged["governance"]["controller"] == controller
            assert (tagged["channel"], tagged["kind"]) == (channel, raw["kind"])
            assert tagged["governance"]["excluded_purposes"] == []
            assert tagged["source_fingerprint"] == contract.fingerprint_hex
            writer, sealed = serde.deserialize(tagged["event"])
            assert writer is contract
            assert _masked(contract, sealed) == _masked(contract, raw)
            if contract is newest:
                body = sealed["payload"]
                body = body[1] if isinstance(body, tuple) else body
                carried.update(f for f in KPI_FIELDS[channel] if body.get(f) is not None)
    assert carried == set(KPI_FIELDS[channel])


def test_the_newest_examples_carry_every_kpi_field(catalog: SchemaCatalog) -> None:
    for channel, fields in KPI_FIELDS.items():
        contract = catalog.latest(CHANNEL_CONTRACTS[channel])
        for name in fields:
            assert any(e["payload"].get(name) is not None for e in example_events(channel)), (
                f"{contract.label}: no example sets {name}"
            )


def test_an_objection_to_reporting_marks_the_subjects_events_and_still_produces_them(
    pipeline: RouterPipeline,
    inputs: _Inputs,
    serde: AvroSerde,
    statuses: dict[str, SubjectStatus],
) -> None:
    """Reporting is derived from the contact-handling events: an objection to it keeps
    them flowing to the controller, each naming the purpose it must be kept out of."""
    call = _example("phone", "inbound_call")
    comment = _example("social", "comment_received")  # another person
    (tagged,) = _on(pipeline.process([inputs.record("phone", call)], NOW), CONTACT_ORES)
    subject = tagged.key.decode()
    assert _decoded(serde, tagged)["governance"]["excluded_purposes"] == []
    statuses[subject] = SubjectStatus(objected_purposes=frozenset({"reporting"}))

    outcome = pipeline.process(
        [inputs.record("phone", _again(call, 7)), inputs.record("social", comment)], NOW
    )
    by_subject = {o.key.decode(): _decoded(serde, o) for o in _on(outcome, CONTACT_ORES)}
    assert len(by_subject) == 2
    assert by_subject.pop(subject)["governance"]["excluded_purposes"] == ["reporting"]
    (other,) = by_subject.values()
    assert other["governance"]["excluded_purposes"] == []
    assert outcome.counts["suppressed", "reporting"] == 0

    statuses[subject] = SubjectStatus(objected_purposes=frozenset({"coaching", "reporting"}))
    recording = _example("phone", "recording_available")  # coaching, the same phone
    outcome = pipeline.process(
        [inputs.record("phone", recording), inputs.record("phone", _again(call, 8))], NOW
    )
    (handled,) = outcome.outputs  # coaching is not produced; contact handling is, marked
    assert _logical(handled) == CONTACT_ORES
    assert _decoded(serde, handled)["governance"]["excluded_purposes"] == ["reporting"]
    assert outcome.counts["suppressed", "coaching"] == 1

    statuses[subject] = SubjectStatus(restricted=True, objected_purposes=frozenset({"reporting"}))
    (restricted,) = pipeline.process([inputs.record("phone", _again(call, 9))], NOW).outputs
    assert _logical(restricted) == CONTACT_RESTRICTED
    assert _decoded(serde, restricted)["governance"]["excluded_purposes"] == ["reporting"]


def test_an_event_no_policy_rule_covers_is_quarantined(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    event = _again(_example("phone", "inbound_call"), 3, service="horoscope")
    outcome = pipeline.process([inputs.record("phone", event)], NOW)
    (quarantined,) = outcome.outputs
    record = _decoded(serde, quarantined)
    assert _logical(quarantined) == CONTACT_QUARANTINE
    assert quarantined.key == b"contact-3"
    assert record["service"] == "horoscope"
    assert "no policy rule" in record["reason"]
    assert record["subject_pseudonym"].startswith("s-")
    assert outcome.counts["quarantined", "phone"] == 1


def test_a_producers_retry_is_dropped_and_a_reused_event_id_dead_lettered(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    call = _example("phone", "inbound_call")
    changed = {**call, "payload": {**call["payload"], "duration_s": 7}}  # same event id
    outcome = pipeline.process([inputs.record("phone", call), inputs.record("phone", call)], NOW)
    assert [_logical(o) for o in outcome.outputs] == [CONTACT_ORES]
    assert outcome.counts["duplicate", "phone"] == 1
    (letter,) = pipeline.process([inputs.record("phone", changed)], NOW).outputs
    assert _decoded(serde, letter)["reason_code"] == "event_id_reused"


# -- dead letters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stage", "code"),
    [
        (b"\xc3\x01" + b"\x00" * 8 + b"not an event", "decode", "unknown_fingerprint"),
        (b"plain text, not Avro", "decode", "malformed"),
        (None, "decode", "no_value"),
    ],
)
def test_a_bad_record_becomes_a_dead_letter_with_its_reason_and_bytes(
    value: bytes | None,
    stage: str,
    code: str,
    pipeline: RouterPipeline,
    inputs: _Inputs,
    serde: AvroSerde,
) -> None:
    message = inputs.raw(PREFIX + raw_topic("chat"), value)
    outcome = pipeline.process([message], NOW)
    (letter,) = outcome.outputs
    record = _decoded(serde, letter)
    assert _logical(letter) == CONTACT_DEADLETTER
    assert letter.key == records.dead_letter_key(message.topic() or "", 0, message.offset() or 0)
    assert (record["stage"], record["reason_code"]) == (stage, code)
    assert record["reason"]
    assert record["original_value"] == value
    assert record["original_key"] == b"contact-key"
    assert record["original_headers"] == dict(message.headers() or ())
    assert record["source_topic"] == message.topic()
    assert outcome.counts["dead_letter", code] == 1


def test_an_event_on_another_channels_topic_is_dead_lettered(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    value = inputs.encode("email", _example("email", "email_sent"))
    outcome = pipeline.process([inputs.raw(PREFIX + raw_topic("phone"), value)], NOW)
    (letter,) = outcome.outputs
    record = _decoded(serde, letter)
    assert (record["stage"], record["reason_code"]) == ("validate", "wrong_contract")
    assert record["original_value"] == value


def test_an_output_too_large_for_its_topic_leaves_a_reference(
    make_pipeline: Callable[..., RouterPipeline],
    topics: TopicCatalog,
    inputs: _Inputs,
    serde: AvroSerde,
) -> None:
    limits = OutputLimits({topics.name(CONTACT_ORES): 300}, OutputLimits.fixed().default)
    pipeline = make_pipeline(limits)
    message = inputs.record("chat", _example("chat", "transcript_available"))
    outcome = pipeline.process([message], NOW)
    (letter,) = outcome.outputs  # neither the tagged event nor its retention record
    record = _decoded(serde, letter)
    original = message.value() or b""
    assert _logical(letter) == CONTACT_DEADLETTER
    assert (record["stage"], record["reason_code"]) == ("produce", "too_large")
    assert "300-byte limit" in record["reason"]
    assert record["original_value"] is None
    assert record["original_key"] is None
    assert record["original_size"] == len(original)
    assert record["original_sha256"] == hashlib.sha256(original).hexdigest()


def test_a_record_whose_outputs_the_broker_refused_leaves_a_reference(
    pipeline: RouterPipeline, inputs: _Inputs, serde: AvroSerde
) -> None:
    message = inputs.record("phone", _example("phone", "inbound_call"))
    too_large = _decoded(serde, pipeline.refused(message, "MSG_SIZE_TOO_LARGE", NOW).outputs[0])
    refused = _decoded(serde, pipeline.refused(message, "POLICY_VIOLATION", NOW).outputs[0])
    assert (too_large["reason_code"], refused["reason_code"]) == ("too_large", "broker_rejected")
    assert refused["original_value"] is None
    assert refused["original_sha256"] == hashlib.sha256(message.value() or b"").hexdigest()


# -- no personal data ------------------------------------------------------------------------


def _personal_data(
    catalog: SchemaCatalog, events: Iterable[tuple[str, dict[str, Any]]]
) -> set[str]:
    """Every personal-data value of `events` (their contracts' pii fields) and the
    caller header, as written and, for phone numbers, as the router normalises them."""
    found: set[str] = set()
    for channel, event in events:
        contract = catalog.latest(CHANNEL_CONTRACTS[channel])

        def collect(_path: str, value: str) -> str:
            found.add(value)
            return value

        rewrite_pii(from_json(contract, event), compile_paths(contract.pii_fields), collect)
    found.add(CALLER_HEADER[1].decode())
    for value in list(found):
        with contextlib.suppress(InvalidIdentifier):
            found.add(normalise_phone(value).value)
    return {value for value in found if len(value) >= 6}


def test_no_personal_data_in_output_keys_headers_or_logs(
    pipeline: RouterPipeline,
    inputs: _Inputs,
    catalog: SchemaCatalog,
    serde: AvroSerde,
    statuses: dict[str, SubjectStatus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events = [(channel, e) for channel in CHANNELS for e in example_events(channel)]
    call = _example("phone", "inbound_call")
    odd = [
        ("phone", _again(call, 4, service="horoscope")),  # quarantined
        ("phone", _again(call, 5, subject={"phone": "+32 471 12"})),  # an invalid number
    ]
    pii = _personal_data(catalog, events + odd)
    assert {"+32471123456", "lea.dupont@example.org", "Julie Martin"} <= pii

    outcomes = [pipeline.process([inputs.record(c, e) for c, e in events + odd], NOW)]
    subject = _on(outcomes[0], CONTACT_ORES)[0].key.decode()
    statuses[subject] = SubjectStatus(restricted=True)
    restricted_call = inputs.record("phone", _again(call, 6))
    outcomes.append(pipeline.process([restricted_call], NOW))
    outcomes.append(pipeline.process([inputs.raw(PREFIX + raw_topic("chat"), b"junk")], NOW))

    outputs = [output for outcome in outcomes for output in outcome.outputs]
    routed = {_logical(output) for output in outputs}
    assert {CONTACT_ORES, CONTACT_COMNEXIO, CONTACT_RESTRICTED, CONTACT_QUARANTINE,
            CONTACT_DEADLETTER, RECORDINGS_STANDARD, RETENTION_SIGNALS} <= routed  # fmt: skip
    for output in outputs:
        where = [output.key, *(name.encode() + value for name, value in output.headers)]
        if _logical(output) == CONTACT_DEADLETTER:  # its value keeps the original bytes
            where.append(_decoded(serde, output)["reason"].encode())
        else:  # every other record carries personal data sealed only
            where.append(output.value)
        for value in pii:
            assert all(value.encode() not in text for text in where), _logical(output)
    logged = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    for value in pii:
        assert all(value not in line for line in logged)
