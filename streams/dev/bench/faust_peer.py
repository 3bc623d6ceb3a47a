"""(b1) Peer: a straightforward faust-streaming agent doing the bare tagging, event by event.

What a Python team would write first with faust: one `faust.App` (in-memory store, web
server off, no leader topic, raw serializers), one agent over the five raw topics iterating
its stream event by event, `BareTagger.tag` on each, and `await topic.send()` per event to
the ORES, COMNEXIO or quarantine output. Default faust producer and consumer settings;
at-least-once, no transactions.

Run as `python -m streams.dev.bench.faust_peer` with a PeerSpec on stdin (in a scratch working
directory: faust writes its data dir there); a `faust.Worker` runs it until SIGTERM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from streams.dev.bench.spec import FirstConsumed, PeerSpec
from streams.dev.bench.tagging import tagger_from_spec


def _credentials(config: dict[str, str]) -> Any:
    if "sasl.username" not in config:
        return None
    return faust.SASLCredentials(
        username=config["sasl.username"],
        password=config["sasl.password"],
        mechanism=config.get("sasl.mechanism", "SCRAM-SHA-512"),
    )


def build_app(spec: PeerSpec, datadir: Path) -> faust.App:
    """The faust app of the peer: one agent tagging and forwarding each raw event."""
    servers = spec.client_config["bootstrap.servers"].split(",")
    app = faust.App(
        spec.group_id,
        broker=[f"kafka://{server}" for server in servers],
        broker_credentials=_credentials(spec.client_config),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        autodiscover=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(*spec.input_topics, key_type=bytes, value_type=bytes)
    outputs = {name: app.topic(name) for name in set(spec.outputs.values())}
    tagger = tagger_from_spec(spec.policy_path, spec.pseudonym_key_hex, spec.outputs)
    first = FirstConsumed(spec.report_path)

    async def tag_events(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            first.mark()
            routed = tagger.tag(raw)
            await outputs[routed.topic].send(key=routed.key, value=routed.value)

    app.agent(source, name="tag_events")(tag_events)
    return app


def main() -> None:
    spec = PeerSpec.from_stdin()
    app = build_app(spec, Path.cwd() / "faust-data")
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    # The terminal spinner sets the root logger to DEBUG so that every log call spins it:
    # ~3 debug records per event. Without a terminal it is noise; turning it off is fair.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
