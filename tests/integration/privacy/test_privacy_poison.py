"""No single request may stop the privacy app: one the broker refuses to take the outputs
of goes to the dead letters with the broker's error, and the app goes on.

The ORES instruction topic's `max.message.bytes` is lowered under the size of one
instruction while the app runs (an operator's mistake, or a policy on the topic): the
restriction request that needs an instruction is refused by the broker on every try.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from appproc import privacy_app, wait_for
from flow import decoded, publish, restriction_request, route_person
from people import PHONE
from topicconfig import set_max_message_bytes

from streams.bootstrap import Container
from streams.control.privacy.service import PrivacyService
from streams.ledger import UnknownRequestError

pytestmark = pytest.mark.integration
INSTRUCTIONS = "privacy.controller.ores.v1"


def test_a_request_whose_outputs_the_broker_refuses_is_dead_lettered_and_the_app_goes_on(
    container: Container, privacy: PrivacyService, tmp_path: Path
) -> None:
    route_person(container, datetime.now(UTC))
    requests_topic = container.topics.name("privacy.requests.v1")
    log = tmp_path / "privacy-app.log"
    with privacy_app(container, log, CONTACTFLOW_LOG_LEVEL="INFO") as app:
        set_max_message_bytes(container, INSTRUCTIONS, 64)  # no instruction fits
        publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-refused",
                restriction_request("dsr-refused"))  # fmt: skip

        def letter() -> dict[str, Any] | None:
            for _, record in decoded(container, "contact.deadletter.v1"):
                if record["source_topic"] == requests_topic:
                    return record
            return None

        dead = wait_for(letter, "the refused request's dead letter", log)
        assert dead["reason_code"] == "MSG_SIZE_TOO_LARGE"
        assert dead["source_offset"] == 0
        assert PHONE not in dead["reason"]
        assert app.poll() is None, f"the app stopped on one request\n{log.read_text()}"

        set_max_message_bytes(container, INSTRUCTIONS, None)
        publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-after",
                restriction_request("dsr-after"))  # fmt: skip

        def instructed() -> bool:
            try:
                privacy.get("dsr-after")
            except UnknownRequestError:
                return False
            return any(r["request_id"] == "dsr-after" for _, r in decoded(container, INSTRUCTIONS))

        wait_for(instructed, "the next request to be taken in and instructed", log)
        assert app.poll() is None
    said = log.read_text()
    assert "Traceback" not in said
    assert PHONE not in said
