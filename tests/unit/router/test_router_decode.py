"""The router's decode stage: sealing by cutting the received bytes, output templates, the
helper process, and the phone-number fast path, each against the straightforward way."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import pytest
import yaml

from processors.crypto import FieldCipher, new_data_key
from processors.identity import InvalidIdentifier, normalise_phone
from processors.pii import compile_paths, rewrite_pii
from processors.policy import Decisions, Policy, parse_policy
from processors.pseudonym import Pseudonymiser
from processors.routing import recording_of, retain_until
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.examples import CHANNELS, example_events
from schemas.serde import AvroSerde
from schemas.validation import from_json
from streams.dev.bench.workload import encode_workload, generate_workload
from streams.router.decode import Decoded, EventDecoder, Rejection, seal
from streams.router.helper import DecodeHelper, DecoderConfig, HelperFailed, Pending
from streams.router.templates import TaggedWriter, fill
from streams.settings import PROJECT_ROOT

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TOPICS = {f"raw.{channel}": channel for channel in CHANNEL_CONTRACTS}
EXPECTED = {f"raw.{channel}": name for channel, name in CHANNEL_CONTRACTS.items()}
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# governance.excluded_purposes of the tagged events written (a subject's objections)
EXCLUDED: tuple[tuple[str, ...], ...] = ((), ("reporting",), (), ("profiling", "reporting"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return _policy()


@pytest.fixture(scope="module")
def decoder(catalog: SchemaCatalog, policy: Policy) -> EventDecoder:
    return EventDecoder(catalog, Pseudonymiser(b"p" * 32), policy, TOPICS, EXPECTED, 512 * 1024)


@pytest.fixture(scope="module")
def raw_events(catalog: SchemaCatalog) -> list[tuple[str, bytes]]:
    serde = AvroSerde(catalog)
    events = [
        (f"raw.{channel}", value)
        for channel, values in encode_workload(generate_workload(1500, 5), catalog).items()
        for _, value in values
    ]
    for channel in CHANNELS:
        contract = catalog.latest(CHANNEL_CONTRACTS[channel])
        events.extend(
            (f"raw.{channel}", serde.serialize(from_json(contract, e), contract))
            for e in example_events(channel)
        )
    return events


def _fake_encrypt(value: str, path: str) -> str:
    return f"cf1.<{path}|{value[::-1]}>"


def _fake_encrypt_fields(fields: Sequence[tuple[str, str]]) -> list[bytes]:
    return [_fake_encrypt(value, path).encode() for path, value in fields]


def _reencoded(serde: AvroSerde, value: bytes) -> bytes:
    """What the router produced before: decode, rewrite every PII field, encode again."""
    contract, record = serde.deserialize(value)
    rewrite_pii(record, compile_paths(contract.pii_fields),
                lambda path, text: _fake_encrypt(text, path))  # fmt: skip
    return serde.serialize(record, contract)


@pytest.fixture
def helper(policy: Policy) -> Iterator[DecodeHelper]:
    """A helper process of the tests' topics, closed after the test."""
    started = DecodeHelper(DecoderConfig(b"p" * 32, policy, TOPICS, EXPECTED, 512 * 1024))
    yield started
    started.close()


def test_sealing_by_cutting_equals_re_encoding(
    catalog: SchemaCatalog, decoder: EventDecoder, raw_events: list[tuple[str, bytes]]
) -> None:
    serde = AvroSerde(catalog)
    sealed_somewhere = 0
    for topic, value in raw_events:
        (decoded,) = decoder.decode_batch([(topic, value)], NOW)
        assert isinstance(decoded, Decoded)
        assert seal(decoded, _fake_encrypt_fields) == _reencoded(serde, value)
        sealed_somewhere += len(decoded.pii)
    assert sealed_somewhere > len(raw_events)  # most events have several PII values


def test_sealed_fields_decrypt_back_under_the_subject_key(
    catalog: SchemaCatalog, decoder: EventDecoder, raw_events: list[tuple[str, bytes]]
) -> None:
    serde = AvroSerde(catalog)
    cipher = FieldCipher("k-1", new_data_key())
    for topic, value in raw_events[:200]:
        (decoded,) = decoder.decode_batch([(topic, value)], NOW)
        assert isinstance(decoded, Decoded)
        contract, sealed = serde.deserialize(seal(decoded, cipher.encrypt_fields))
        for path, plain in decoded.pii:
            assert plain.encode() not in seal(decoded, cipher.encrypt_fields), path
        rewrite_pii(sealed, compile_paths(contract.pii_fields),
                    lambda path, token: cipher.decrypt(token, path))  # fmt: skip
        assert sealed == serde.deserialize(value)[1]


def test_non_canonical_bytes_are_sealed_by_re_encoding(
    catalog: SchemaCatalog, decoder: EventDecoder, raw_events: list[tuple[str, bytes]]
) -> None:
    """A length written on two bytes (legal, not minimal): the cut would keep it, so the
    walker refuses and the event is re-encoded, as before."""
    serde = AvroSerde(catalog)
    checked = 0
    for topic, value in raw_events[:300]:
        contract, _ = serde.deserialize(value)
        spans = decoder._rules_of(contract).spans.spans(value)
        assert spans is not None
        if not spans or value[spans[0][0]] >= 0x80:
            continue
        start = spans[0][0]
        stretched = value[:start] + bytes([value[start] | 0x80, 0]) + value[start + 1 :]
        assert decoder._rules_of(contract).spans.spans(stretched) is None
        (decoded,) = decoder.decode_batch([(topic, stretched)], NOW)
        assert isinstance(decoded, Decoded)
        assert seal(decoded, _fake_encrypt_fields) == _reencoded(serde, value)
        checked += 1
    assert checked > 100


def test_templates_filled_in_equal_the_records_encoded_whole(
    catalog: SchemaCatalog, decoder: EventDecoder, policy: Policy,
    raw_events: list[tuple[str, bytes]],
) -> None:  # fmt: skip
    serde = AvroSerde(catalog)
    tagged_contract = catalog.latest("TaggedContactEvent")
    writer = TaggedWriter(catalog, serde)
    decisions = Decisions(policy)
    subject, key_id = "s-" + "ab" * 16, "k-" + "cd" * 16
    counted = {"tagged": 0, "retention": 0, "retention_no_media": 0, "signal": 0}
    for number, (topic, value) in enumerate(raw_events):
        (decoded,) = decoder.decode_batch([(topic, value)], NOW)
        assert isinstance(decoded, Decoded)
        contract, record = serde.deserialize(value)
        envelope, channel = record["envelope"], TOPICS[topic]
        attribution, reason = decisions((envelope["client"], envelope["service"],
                                         envelope["purpose"], channel, record["kind"]))  # fmt: skip
        if attribution is None:  # no rule: quarantined, encoded whole by the router
            assert decoded.templates is None
            continue
        assert decoded.templates is not None
        restricted, trace = number % 5 == 0, TRACE if number % 3 else None
        excluded = EXCLUDED[number % len(EXCLUDED)]
        event_bytes = bytes([number % 256]) * (number % 900)
        tagged = {
            "event_id": envelope["event_id"], "contact_id": envelope["contact_id"],
            "channel": channel, "kind": record["kind"], "occurred_at": envelope["occurred_at"],
            "governance": {"controller": attribution.controller,
                           "processor": attribution.processor, "purpose": attribution.purpose,
                           "legal_basis": attribution.legal_basis,
                           "subject_pseudonym": subject,
                           "policy_version": attribution.policy_version,
                           "restricted": restricted,
                           "retention_class": attribution.retention_class,
                           "excluded_purposes": list(excluded)},
            "key_id": key_id, "source_fingerprint": contract.fingerprint_hex,
            "event": event_bytes, "traceparent": trace,
        }  # fmt: skip
        fields = dict(
            event_id=envelope["event_id"], contact_id=envelope["contact_id"], channel=channel,
            kind=record["kind"], occurred_at=envelope["occurred_at"], attribution=attribution,
            restricted=restricted, subject=subject, key_id=key_id,
            source_fingerprint=contract.fingerprint_hex, sealed=event_bytes, traceparent=trace,
            excluded_purposes=excluded,
        )  # fmt: skip
        expected_tagged = serde.serialize(tagged, tagged_contract)
        assert decoded.templates.tagged_head is not None  # written by the decode stage
        assert writer.write(head=decoded.templates.tagged_head, **fields) == expected_tagged
        assert writer.write(head=None, **fields) == expected_tagged
        counted["tagged"] += 1
        recording = recording_of(record["kind"], record["payload"], envelope["occurred_at"])
        period = policy.retention_classes[attribution.retention_class].recording_period_days
        if recording is not None and retain_until(recording.ended_at, period) is not None:
            assert decoded.templates.retention is not None
            recording_id, parts = decoded.templates.retention
            assert recording_id == recording.recording_id.encode()
            expected = _retention(
                serde, catalog, record, channel, attribution, recording, period, subject
            )
            assert fill(parts, (subject.encode(),)) == expected
            counted["retention" if recording.media_ref else "retention_no_media"] += 1
        else:
            assert decoded.templates.retention is None
        assert (decoded.templates.signal is None) == (reason is None)
        if reason is not None:
            signal = {
                "signal_id": envelope["event_id"], "reason": reason,
                "subject_pseudonym": subject, "contact_id": envelope["contact_id"],
                "channel": channel, "kind": record["kind"],
                "occurred_at": envelope["occurred_at"], "policy_version": policy.version,
            }  # fmt: skip
            expected = serde.serialize(signal, catalog.latest("HoldSignal"))
            assert decoded.templates.signal is not None
            assert fill(decoded.templates.signal, (subject.encode(),)) == expected
            counted["signal"] += 1
    assert all(counted.values()), counted


def test_tagged_writer_timestamps_are_written_as_avro_writes_them(catalog: SchemaCatalog) -> None:
    serde = AvroSerde(catalog)
    writer, contract = TaggedWriter(catalog, serde), catalog.latest("TaggedContactEvent")
    attribution = Decisions(_policy())(("ORES", "incoming_call", "contact_handling", "phone",
                                        "inbound_call"))[0]  # fmt: skip
    assert attribution is not None
    rng = random.Random(2)
    moments = [datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999,
               tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC)]  # fmt: skip
    moments += [datetime.fromtimestamp(rng.uniform(-3e9, 7e9), UTC) for _ in range(500)]
    for moment in moments:
        fields = dict(event_id="e", contact_id="c", channel="phone", kind="k", occurred_at=moment,
                      attribution=attribution, restricted=False, subject="s-1", key_id="k-1",
                      source_fingerprint="f", sealed=b"x", traceparent=None)  # fmt: skip
        record = {**{k: v for k, v in fields.items() if k in ("event_id", "contact_id",
                  "channel", "kind", "occurred_at")},
                  "governance": {"controller": attribution.controller,
                                 "processor": attribution.processor,
                                 "purpose": attribution.purpose,
                                 "legal_basis": attribution.legal_basis,
                                 "subject_pseudonym": "s-1",
                                 "policy_version": attribution.policy_version,
                                 "restricted": False,
                                 "retention_class": attribution.retention_class},
                  "key_id": "k-1", "source_fingerprint": "f", "event": b"x",
                  "traceparent": None}  # fmt: skip
        head = writer.head("e", "c", "phone", "k", moment, attribution)
        assert writer.write(head=head, **fields) == serde.serialize(record, contract), moment


def _policy() -> Policy:
    return parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))


def _retention(
    serde: AvroSerde, catalog: SchemaCatalog, record: dict[str, Any], channel: str,
    attribution: Any, recording: Any, period: int | None, subject: str,
) -> bytes:  # fmt: skip
    value = {
        "recording_id": recording.recording_id, "contact_id": record["envelope"]["contact_id"],
        "channel": channel, "recording_kind": recording.recording_kind,
        "media_ref": recording.media_ref, "controller": attribution.controller,
        "purpose": attribution.purpose, "subject_pseudonym": subject,
        "ended_at": recording.ended_at, "retain_until": retain_until(recording.ended_at, period),
        "state": "standard", "hold_reasons": [], "policy_version": attribution.policy_version,
    }  # fmt: skip
    return serde.serialize(value, catalog.latest("RecordingRetention"))


def test_rejections_name_the_problem_never_the_value(decoder: EventDecoder) -> None:
    outcomes = decoder.decode_batch(
        [("raw.phone", None), ("raw.phone", b"\xc3\x01" + b"\x00" * 8 + b"\x02"),
         ("raw.phone", b"not avro")],
        NOW,
    )  # fmt: skip
    assert [o.code for o in outcomes if isinstance(o, Rejection)] == [
        "no_value", "unknown_fingerprint", "malformed"
    ]  # fmt: skip


def test_the_helper_process_decodes_like_this_process(
    decoder: EventDecoder, helper: DecodeHelper, raw_events: list[tuple[str, bytes]]
) -> None:
    request: list[tuple[str, bytes | None]] = list(raw_events[:400])
    request.append(("raw.phone", b"\xc3\x01 broken"))
    first = helper.submit(request[:200], NOW)
    second = helper.submit(request[200:], NOW)
    assert first.result() + second.result() == decoder.decode_batch(request, NOW)
    # Several batches outstanding, each more than a pipe holds, read newest first:
    # neither process waits for the other to read (the helper's I/O has threads).
    big: list[tuple[str, bytes | None]] = list(raw_events) * 3
    batches = [helper.submit(big, NOW) for _ in range(3)]
    expected = decoder.decode_batch(big, NOW)
    assert [b.result() == expected for b in reversed(batches)] == [True] * 3
    helper.submit(request, NOW)  # left unread: close() still ends the helper
    failing = helper.submit([("raw.phone", 123)], NOW)  # type: ignore[list-item]
    with pytest.raises(HelperFailed) as failure:
        failing.result()
    assert str(failure.value) == "TypeError"  # the type only: no data crosses
    again = helper.submit(request[:5], NOW)
    assert again.result() == decoder.decode_batch(request[:5], NOW)


def test_belgian_mobile_numbers_skip_phonenumbers_with_the_same_result() -> None:
    rng = random.Random(11)
    prefixes = ["+32", "0032", "0", "+320", "32", "+", "00", "", "+33", "0033"]
    for _ in range(20_000):
        digits = "4" + "".join(rng.choice("0123456789") for _ in range(rng.choice((7, 8, 8, 9))))
        raw = rng.choice(prefixes) + digits
        if rng.random() < 0.6:
            chars = list(raw)
            for _ in range(rng.randrange(4)):
                chars.insert(rng.randrange(len(chars) + 1), " ")
            raw = "".join(chars)
        assert _normalised(raw) == _by_phonenumbers(raw), raw


def _normalised(raw: str) -> str:
    try:
        return normalise_phone(raw).value
    except InvalidIdentifier as error:
        return f"refused: {error}"


def _by_phonenumbers(raw: str) -> str:
    text = raw.strip()
    if not text or len(text) > 40:
        return "refused: invalid phone: empty or too long"
    try:
        number = phonenumbers.parse(text, "BE")
    except phonenumbers.NumberParseException:
        return "refused: invalid phone: not a phone number"
    if not phonenumbers.is_valid_number(number):
        return "refused: invalid phone: not a number that can exist"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_the_helpers_replies_are_read_as_they_come_not_when_asked_for(
    helper: DecodeHelper, raw_events: list[tuple[str, bytes]]
) -> None:
    """A reply larger than the pipe is read off it while the router does other work: the
    helper is not held up until the router asks for it, and asking costs no waiting."""
    big: list[tuple[str, bytes | None]] = list(raw_events) * 8  # a reply of MBs
    batches = [helper.submit(big, NOW) for _ in range(2)]
    deadline = time.monotonic() + 60
    while helper.replies_waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # waits for the helper's work, not for a time to pass
    assert helper.replies_waiting == 2
    assert [len(b.result()) for b in batches] == [len(big), len(big)]
    assert helper.replies_waiting == 0


def test_a_helper_that_dies_fails_every_wait_for_its_replies(
    helper: DecodeHelper, raw_events: list[tuple[str, bytes]]
) -> None:
    helper._process.kill()
    helper._process.wait()
    for _ in range(2):  # a request sent after its death fails to send
        with pytest.raises(HelperFailed):
            helper.submit(list(raw_events[:10]), NOW).result()
    for waiting in (Pending(helper), Pending(helper)):  # and each wait for a reply
        with pytest.raises(HelperFailed, match="gone"):
            waiting.result()
