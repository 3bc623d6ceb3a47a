"""Sealing in the helper: the router resolves subjects and leaves a hole in each tagged
event; the helper seals the events it holds under the keys the router sends for that
batch only; the tagged events filled in are what the router would have written itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session, sessionmaker

from processors.crypto import FieldCipher, new_data_key
from processors.pii import compile_paths, rewrite_pii
from processors.policy import Policy, parse_policy
from processors.routing import NO_RESTRICTIONS
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.examples import CHANNELS, example_events
from schemas.serde import AvroSerde
from schemas.topic_names import (
    CONTACT_COMNEXIO,
    CONTACT_DEADLETTER,
    CONTACT_ORES,
    CONTACT_QUARANTINE,
    raw_topic,
)
from schemas.validation import from_json
from streams.plaintext import open_event, vault_lookup
from streams.router.decode import Decoded, Outcome
from streams.router.dedup import DedupWindow
from streams.router.directory import SubjectDirectory
from streams.router.helper import DecodeHelper, HelperFailed, SealRequest
from streams.router.limits import OutputLimits
from streams.router.pipeline import BatchOutcome, Hole, Output, RouterPipeline
from streams.settings import PROJECT_ROOT
from streams.topics import load_topics
from tests.unit.router.conftest import MASTER_KEY, PSEUDONYM_KEY

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(yaml.safe_load((PROJECT_ROOT / "infra" / "policy.yaml").read_text()))


def _pipeline(
    catalog: SchemaCatalog,
    policy: Policy,
    directory: SubjectDirectory,
    limits: OutputLimits | None = None,
) -> RouterPipeline:
    return RouterPipeline(
        topics=load_topics(PROJECT_ROOT / "infra" / "topics.yaml"),
        schemas=catalog,
        policy=policy,
        directory=directory,
        subject_status=lambda _subject: NO_RESTRICTIONS,
        dedup=DedupWindow(1000),
        limits=limits or OutputLimits.fixed(),
        max_event_bytes=512 * 1024,
    )


class _Record:
    def __init__(self, topic: str, value: bytes | None, offset: int) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]


def _records(catalog: SchemaCatalog) -> list[_Record]:
    """Every channel's examples, and a record that is not an event at all."""
    serde = AvroSerde(catalog)
    records = []
    for channel in CHANNELS:
        contract = catalog.latest(CHANNEL_CONTRACTS[channel])
        for event in example_events(channel):
            value = serde.serialize(from_json(contract, event), contract)
            records.append(_Record(raw_topic(channel), value, len(records)))
    records.insert(3, _Record(raw_topic("phone"), b"not avro", 999))
    return records


def _helper(pipeline: RouterPipeline) -> DecodeHelper:
    return DecodeHelper(pipeline.decoder_config(PSEUDONYM_KEY))


def _request(records: list[_Record]) -> list[tuple[str, bytes | None]]:
    return [(r.topic(), r.value()) for r in records]


def _plain(serde: AvroSerde, value: bytes) -> dict[str, Any]:
    return serde.deserialize(value)[1]


def _opened(
    serde: AvroSerde, outcome: BatchOutcome, sessions: sessionmaker[Session]
) -> dict[str, dict[str, Any]]:
    """The source events inside the tagged and quarantined outputs, decrypted, by id."""
    opened = {}
    with sessions() as session:
        for output in outcome.outputs:
            if output.topic in (CONTACT_ORES, CONTACT_COMNEXIO, CONTACT_QUARANTINE):
                record = open_event(
                    serde, _plain(serde, output.value), MASTER_KEY, vault_lookup(session)
                )
                opened[record["envelope"]["event_id"]] = record
    return opened


def test_events_sealed_in_the_helper_are_those_the_router_would_have_sealed(
    catalog: SchemaCatalog,
    policy: Policy,
    directory: SubjectDirectory,
    sessions: sessionmaker[Session],
) -> None:
    pipeline, serde, records = (
        _pipeline(catalog, policy, directory),
        AvroSerde(catalog),
        _records(catalog),
    )
    helper = _helper(pipeline)
    try:
        pending = helper.submit(_request(records), NOW)
        decoded = pending.result()
        held = [d for d in decoded if isinstance(d, Decoded) and d.sealed_size]
        assert held
        assert all(d.chunks == d.pii == () for d in held)  # no plaintext crossed back
        outcome = pipeline.route(records, decoded, NOW, defer_sealing=True)
        assert outcome.holes
        assert all(outcome.outputs[h.output].value == b"" for h in outcome.holes)
        request = outcome.seal_request(pending.batch)
        assert len(request.keys) == len({h.cipher.key_id for h in outcome.holes})
        outcome.fill(helper.seal(request).result())
        assert not outcome.holes
    finally:
        helper.close()
    # The same records routed in this process, as without a helper, on a second pipeline
    # over the same ledger: the same outputs, bytes for bytes but the random nonces.
    here = _pipeline(catalog, policy, directory).process(records, NOW)
    assert [(o.topic, o.key, o.headers) for o in outcome.outputs] == [
        (o.topic, o.key, o.headers) for o in here.outputs
    ]
    assert [len(o.value) for o in outcome.outputs] == [len(o.value) for o in here.outputs]
    tagged = _opened(serde, outcome, sessions)
    assert tagged == _opened(serde, here, sessions)
    originals = {}
    for record in records[:3] + records[4:]:
        event = _plain(serde, record.value() or b"")
        originals[event["envelope"]["event_id"]] = event
    assert tagged == {i: e for i, e in originals.items() if i in tagged}
    assert len(tagged) >= len(held)


def test_a_tagged_event_too_large_for_its_topic_is_dead_lettered_before_sealing(
    catalog: SchemaCatalog, policy: Policy, directory: SubjectDirectory
) -> None:
    topics = load_topics(PROJECT_ROOT / "infra" / "topics.yaml")
    records = _records(catalog)
    pipeline = _pipeline(catalog, policy, directory)
    helper = _helper(pipeline)
    try:
        decoded = helper.submit(_request(records), NOW).result()
    finally:
        helper.close()
    largest = max(d.sealed_size for d in decoded if isinstance(d, Decoded))
    limits = OutputLimits({topics.name(CONTACT_ORES): largest}, OutputLimits.fixed().default)
    outcome = _pipeline(catalog, policy, directory, limits).route(
        records, decoded, NOW, defer_sealing=True
    )
    letters = [
        _plain(AvroSerde(catalog), o.value)
        for o in outcome.outputs
        if o.topic == CONTACT_DEADLETTER
    ]
    assert "too_large" in {letter["reason_code"] for letter in letters}
    assert all(outcome.outputs[h.output].value == b"" for h in outcome.holes)  # not filled yet


def test_the_helper_lets_go_of_what_it_holds_and_a_wrong_length_is_refused(
    catalog: SchemaCatalog, policy: Policy, directory: SubjectDirectory
) -> None:
    pipeline, records = _pipeline(catalog, policy, directory), _records(catalog)
    helper = _helper(pipeline)
    try:
        first = helper.submit(_request(records), NOW)
        second = helper.submit(_request(records), NOW)
        decoded: list[Outcome] = second.result()
        index = next(i for i, d in enumerate(decoded) if isinstance(d, Decoded) and d.sealed_size)
        key = new_data_key()
        sealed = helper.seal(SealRequest(second.batch, {"k-1": key}, [(index, "k-1")])).result()
        assert len(sealed) == 1
        assert len(sealed[0]) == decoded[index].sealed_size  # type: ignore[union-attr]
        # Sealing a batch lets go of it and of every batch before it (dropped by an abort).
        for batch in (second.batch, first.batch):
            with pytest.raises(HelperFailed, match="KeyError"):
                helper.seal(SealRequest(batch, {"k-1": key}, [(index, "k-1")])).result()
        assert len(helper.submit(_request(records), NOW).result()) == len(records)  # it goes on
    finally:
        helper.close()
    opened = FieldCipher("k-1", key)
    contract, record = AvroSerde(catalog).deserialize(sealed[0])
    rewrite_pii(record, compile_paths(contract.pii_fields), lambda p, t: opened.decrypt(t, p))
    assert record == _plain(AvroSerde(catalog), records[index].value() or b"")
    outcome = BatchOutcome(outputs=[Output("t", b"k", b"", [])])
    outcome.holes = [Hole(0, index, opened, b"<", b">", len(sealed[0]))]
    with pytest.raises(RuntimeError, match="not the length"):
        outcome.fill([sealed[0][1:]])
    outcome.fill(sealed)
    assert outcome.outputs == [Output("t", b"k", b"<" + sealed[0] + b">", [])]
