"""A deterministic, realistic mixed-channel workload, and a fast way to load it.

`generate_workload(n, seed)` returns exactly `n` JSON-shaped raw events (the shapes of
`schemas.examples`, valid for their channel's latest contract) made of whole contacts: a
call and its recording, a chat session and its transcript, an e-mail and its reply, a
survey and its answer, a comment and its moderation. People come from a pool and are drawn
Zipf-like, so repeat callers are common and spell their number differently per system;
chats carry both an e-mail address and a phone number; e-mail bodies and transcripts run to
hundreds of characters of French or German. Everyone is fake: numbers +32 47x, addresses
@example.org. About 0.5 % of contacts name a service the policy does not know (quarantine).
The same `(n, seed)` always gives the same events.

`encode_workload` validates and Avro-encodes each event once; `produce_workload` sends the
bytes with a plain confluent-kafka producer (no per-event validation or tracing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Producer

from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.serde import AvroSerde
from schemas.validation import from_json
from streams.dev.bench.contacts import ContactStream, RawEvent
from streams.errors import ContactflowError
from streams.kafka.outbox import Record, deliver_all
from streams.sdk.producer import SCHEMA_HEADER

__all__ = [
    "EncodedWorkload",
    "RawEvent",
    "encode_workload",
    "generate_workload",
    "produce_workload",
]


def generate_workload(n: int, seed: int = 20251126) -> list[RawEvent]:
    """Exactly `n` raw events (whole contacts, the last one possibly cut), deterministic."""
    if n < 1:
        raise ValueError("the workload needs at least one event")
    events: list[RawEvent] = []
    for contact in ContactStream(n, seed).contacts():
        events.extend(contact)
        if len(events) >= n:
            return events[:n]
    raise AssertionError("unreachable: the contact stream is endless")


EncodedWorkload = dict[str, list[tuple[bytes, bytes]]]
"""channel -> [(key = contact id, value = Avro single-object bytes)], in generation order."""


def encode_workload(events: list[RawEvent], catalog: SchemaCatalog) -> EncodedWorkload:
    """Validate each event against its channel's latest contract and encode it once."""
    serde = AvroSerde(catalog)
    contracts = {channel: catalog.latest(name) for channel, name in CHANNEL_CONTRACTS.items()}
    encoded: EncodedWorkload = {channel: [] for channel in CHANNEL_CONTRACTS}
    for item in events:
        contract = contracts[item.channel]
        record = from_json(contract, item.event)
        value = serde.serialize(record, contract)
        encoded[item.channel].append((record["envelope"]["contact_id"].encode(), value))
    return encoded


def produce_workload(
    client_config: Mapping[str, Any], topics: Mapping[str, str], encoded: EncodedWorkload
) -> int:
    """Send pre-encoded events to `topics[channel]`; return how many the broker acknowledged.

    The producer SDK's settings (idempotent, acks=all, linger 5 ms) and schema header,
    without per-event validation, and uncompressed: the SDK's lz4 cannot be read by faust's
    aiokafka consumer unless the `lz4` package is installed, which contactflow does not
    require; uncompressed input costs every peer the same. Raises if any event is refused.
    """
    producer = Producer(
        {
            **client_config,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",
        }
    )
    catalog = SchemaCatalog.load()

    def records() -> Iterator[Record]:
        for channel, items in encoded.items():
            contract = catalog.latest(CHANNEL_CONTRACTS[channel])
            headers: list[tuple[str, str | bytes | None]] = [
                (SCHEMA_HEADER, f"{contract.name}.v{contract.version}".encode())
            ]
            for key, value in items:
                yield topics[channel], key, value, headers

    delivery = deliver_all(producer, records())
    if not delivery.complete:
        raise ContactflowError(f"loading the workload failed: {delivery.describe()}")
    return delivery.delivered
