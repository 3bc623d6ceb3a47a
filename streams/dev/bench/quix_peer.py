"""(b2) Peer: a Quix Streams application doing the bare tagging, or the router's work.

What many Python users pick instead of faust: one `quixstreams.Application` (no state, no
changelog topics, topics not auto-created), one StreamingDataFrame per raw topic:
`.apply(tag)` then `.to_topic()` with the output topic chosen per record and its own key.

- Bare tagging (`tagging.BareTagger`): at-least-once, the default commit interval, one
  output per event (ORES, COMNEXIO or quarantine, keyed by pseudonym).
- Same work (`spec.same_work`, `same_work.SameWorkTagger`): `.apply(tag, expand=True)`,
  since an event gives one to three outputs (tagged event, retention input, hold signal).
  Exactly-once, as the router: Quix's own transactions (the outputs and the input offsets
  in one Kafka transaction per checkpoint), a checkpoint every `spec.commit_every` events
  (the router's batch size) or `SAME_WORK_COMMIT_INTERVAL_S`, whichever comes first, and
  the consumer polled with the router's batch timeout so the last checkpoint is not late.

Runs in its own virtualenv (see `streams.dev.bench.quix_env`: Quix Streams pins a
confluent-kafka older than ours), started by the harness as
`<bench venv>/bin/python -m streams.dev.bench.quix_peer` with a PeerSpec on stdin and only our
own packages on PYTHONPATH; stops on SIGTERM (Quix handles it). Quix Streams is imported
dynamically so this module type-checks in the main virtualenv, which does not have it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from streams.dev.bench.same_work import same_work_tagger_from_spec
from streams.dev.bench.spec import FirstConsumed, PeerSpec
from streams.dev.bench.tagging import Routed, tagger_from_spec

SAME_WORK_COMMIT_INTERVAL_S: Final = 0.25
SAME_WORK_POLL_TIMEOUT_S: Final = 0.1  # the router's default batch timeout


def build_app(spec: PeerSpec, state_dir: Path) -> Any:
    """The Quix Streams application of the peer, ready to `run()`."""
    quix = importlib.import_module("quixstreams")
    configuration = importlib.import_module("quixstreams.kafka.configuration")
    serializers = importlib.import_module("quixstreams.models.serializers")

    class RoutedValue(serializers.Serializer):  # type: ignore[misc, name-defined]
        """Writes the value of a `Routed` record (already Avro-encoded)."""

        def __call__(self, value: Routed, ctx: Any) -> bytes:
            return value.value

    guarantee: dict[str, Any] = {}
    if spec.same_work:
        guarantee = {
            "processing_guarantee": "exactly-once",
            "commit_every": spec.commit_every,
            "commit_interval": SAME_WORK_COMMIT_INTERVAL_S,
            "consumer_poll_timeout": SAME_WORK_POLL_TIMEOUT_S,
        }
    app = quix.Application(
        broker_address=configuration.ConnectionConfig.from_librdkafka_dict(spec.client_config),
        consumer_group=spec.group_id,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=str(state_dir),
        loglevel="WARNING",
        **guarantee,
    )
    outputs = {
        name: app.topic(name, key_serializer="bytes", value_serializer=RoutedValue())
        for name in set(spec.outputs.values())
    }
    tag = _tagging(spec)

    def destination(value: Routed, _key: Any, _timestamp: int, _headers: Any) -> Any:
        return outputs[value.topic]

    for name in spec.input_topics:
        source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(source).apply(tag, expand=spec.same_work).to_topic(
            destination, key=lambda routed: routed.key
        )
    return app


def _tagging(spec: PeerSpec) -> Callable[[bytes], Any]:
    """The per-event function of the peer: one Routed (bare), or a list of them (same work)."""
    first = FirstConsumed(spec.report_path)
    if spec.same_work:
        same = same_work_tagger_from_spec(
            spec.policy_path, spec.pseudonym_key_hex, spec.master_key_hex, spec.outputs
        )

        def tag_same_work(raw: bytes) -> list[Routed]:
            first.mark()
            return same.tag(raw)

        return tag_same_work
    bare = tagger_from_spec(spec.policy_path, spec.pseudonym_key_hex, spec.outputs)

    def tag(raw: bytes) -> Routed:
        first.mark()
        return bare.tag(raw)

    return tag


def main() -> None:
    spec = PeerSpec.from_stdin()
    build_app(spec, Path.cwd() / "quix-state").run()


if __name__ == "__main__":
    main()
