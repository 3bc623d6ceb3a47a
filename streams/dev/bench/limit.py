"""(a) The Python limit: consume, Avro-decode, re-encode, produce; no governance at all.

A bare confluent-kafka loop (batched `consume`, one consumer group, auto-commit, no
transactions) that decodes each raw event with `AvroSerde`, encodes the record again with
the same contract and sends it, with the same key, to `outputs["passthrough"]`. The
producer has the producer SDK's settings (`PRODUCER_CONFIG`). Nothing the router does can
be cheaper per event in Python, so router / limit says how much its governance costs.

Run as `python -m streams.dev.bench.limit` with a PeerSpec on stdin; stops on SIGTERM.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, Producer

from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from streams.dev.bench.spec import PASSTHROUGH, FirstConsumed, PeerSpec

PRODUCER_CONFIG: Final[dict[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}
BATCH: Final = 1000


def run_limit(spec: PeerSpec, stopping: Callable[[], bool]) -> None:
    """Pass every input event through decode+encode to the output until `stopping()`."""
    serde = AvroSerde(SchemaCatalog.load())
    consumer = Consumer(
        {
            **spec.client_config,
            "group.id": spec.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    producer = Producer({**spec.client_config, **PRODUCER_CONFIG})
    output = spec.outputs[PASSTHROUGH]
    first = FirstConsumed(spec.report_path)
    consumer.subscribe(spec.input_topics)
    try:
        while not stopping():
            batch = consumer.consume(BATCH, 0.2)
            if batch:
                first.mark()
            for message in batch:
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                writer, record = serde.deserialize(message.value() or b"")
                value = serde.serialize(record, writer)
                while True:
                    try:
                        producer.produce(output, value, message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
        producer.flush(30)
    finally:
        consumer.close()


def main() -> None:
    spec = PeerSpec.from_stdin()
    stop = False

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_sigterm)
    run_limit(spec, lambda: stop)


if __name__ == "__main__":
    main()
