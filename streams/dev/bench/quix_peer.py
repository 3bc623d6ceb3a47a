"""(b2) Peer: a Quix Streams application doing the bare tagging.

What many Python users pick instead of faust: one `quixstreams.Application` (at-least-once,
default commit interval, no state, no changelog topics, topics not auto-created), one
StreamingDataFrame per raw topic: `.apply(BareTagger.tag)` then `.to_topic()` with the
output topic chosen per record (ORES, COMNEXIO or quarantine) and the pseudonym as key.

Runs in its own virtualenv (see `streams.dev.bench.quix_env`: Quix Streams pins a
confluent-kafka older than ours), started by the harness as
`<bench venv>/bin/python -m streams.dev.bench.quix_peer` with a PeerSpec on stdin and only our
own packages on PYTHONPATH; stops on SIGTERM (Quix handles it). Quix Streams is imported
dynamically so this module type-checks in the main virtualenv, which does not have it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from streams.dev.bench.spec import FirstConsumed, PeerSpec
from streams.dev.bench.tagging import Routed, tagger_from_spec


def build_app(spec: PeerSpec, state_dir: Path) -> Any:
    """The Quix Streams application of the peer, ready to `run()`."""
    quix = importlib.import_module("quixstreams")
    configuration = importlib.import_module("quixstreams.kafka.configuration")
    serializers = importlib.import_module("quixstreams.models.serializers")

    class RoutedValue(serializers.Serializer):  # type: ignore[misc, name-defined]
        """Writes the value of a `Routed` record (already Avro-encoded)."""

        def __call__(self, value: Routed, ctx: Any) -> bytes:
            return value.value

    app = quix.Application(
        broker_address=configuration.ConnectionConfig.from_librdkafka_dict(spec.client_config),
        consumer_group=spec.group_id,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=str(state_dir),
        loglevel="WARNING",
    )
    outputs = {
        name: app.topic(name, key_serializer="bytes", value_serializer=RoutedValue())
        for name in set(spec.outputs.values())
    }
    tagger = tagger_from_spec(spec.policy_path, spec.pseudonym_key_hex, spec.outputs)
    first = FirstConsumed(spec.report_path)

    def tag(raw: bytes) -> Routed:
        first.mark()
        return tagger.tag(raw)

    def destination(value: Routed, _key: Any, _timestamp: int, _headers: Any) -> Any:
        return outputs[value.topic]

    for name in spec.input_topics:
        source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(source).apply(tag).to_topic(destination, key=lambda routed: routed.key)
    return app


def main() -> None:
    spec = PeerSpec.from_stdin()
    build_app(spec, Path.cwd() / "quix-state").run()


if __name__ == "__main__":
    main()
