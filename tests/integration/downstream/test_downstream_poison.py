"""No single command may stop a downstream consumer: one whose answer the broker refuses
for what the answer is (here: `privacy.acks.v1` limited under the size of one answer, an
operator's mistake or a topic policy) is skipped, said in one line, counted, and the
consumer goes on; the privacy app then sees that consumer as late on that request.
"""

from __future__ import annotations

import logging

import pytest
from downstream_commands import command, publish, read_acks
from topicconfig import set_max_message_bytes

from streams.bootstrap import Container
from streams.sdk.downstream.client import DownstreamConsumer
from streams.sdk.downstream.example import example_answer

pytestmark = pytest.mark.integration


def test_a_command_whose_answer_the_broker_refuses_is_skipped_and_serving_goes_on(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    refused = [command("crm", "erase"), command("crm", "restrict")]
    publish(container, refused)
    set_max_message_bytes(container, "privacy.acks.v1", 64)  # no answer fits
    with caplog.at_level(logging.WARNING), DownstreamConsumer(container, "crm") as consumer:
        stats = consumer.serve(example_answer, max_idle_s=2)  # returns: it did not stop
        assert stats.received == 2
        set_max_message_bytes(container, "privacy.acks.v1", None)
        later = command("crm", "erase")
        publish(container, [later])
        again = consumer.serve(example_answer, max_idle_s=2)
    assert (again.received, again.answered["done"]) == (1, 1), "the refused ones are not re-read"
    acks = {a["command_id"] for _, a in read_acks(container)}
    assert acks == {later["command_id"]}
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert said, caplog.text
    assert all(c["command_id"] in caplog.text for c in refused), "each skipped command named"
    assert "MSG_SIZE_TOO_LARGE" in caplog.text
