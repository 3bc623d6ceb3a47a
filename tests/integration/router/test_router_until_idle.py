"""`RouterWorker.run(max_idle_s)` (the demo, the benches, `run router --max-idle`) stops
when every assigned partition has been read to its end, not when the first fetch after
the assignment is slow to answer: on a loaded machine that fetch can take longer than
`max_idle_s`, and the router stopped having routed nothing (seen in CI: a dead-letter
summary of 0 where 2 were due)."""

from __future__ import annotations

import pytest

from schemas.examples import example_events
from streams.kafka.readback import read_all
from streams.ledger import upgrade
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration


def test_a_zero_idle_limit_still_routes_everything_already_there(container) -> None:  # type: ignore[no-untyped-def]
    upgrade(container.settings.resolved_database_url())
    producer = container.producer()
    sent = [(channel, event) for channel in ("phone", "chat", "email", "survey", "social")
            for event in example_events(channel)]  # fmt: skip
    for channel, event in sent:
        producer.send(channel, event)
    assert producer.flush().delivered == len(sent)

    stats = RouterWorker(container).run(max_idle_s=0.0)

    assert stats.events_in == len(sent)
    tagged = [
        message
        for logical in ("contact.ores.v1", "contact.comnexio.v1")
        for message in read_all(
            container.settings.kafka_client_config(), container.topics.name(logical)
        )
    ]
    assert len(tagged) == len(sent)
