"""No single request may stop the privacy app: one the broker refuses to take the outputs
of goes to the dead letters with the broker's error, and the app goes on; one that meets
a bug of contactflow's is parked there too (`internal_error`), never skipped, and a
replay takes it in once the bug is gone.

The ORES instruction topic's `max.message.bytes` is lowered under the size of one
instruction while the app runs (an operator's mistake, or a policy on the topic): the
restriction request that needs an instruction is refused by the broker on every try.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from appproc import app_env, privacy_app, running_privacy_app, wait_for
from flow import decoded, publish, restriction_request, route_person, taken_in
from people import PHONE
from topicconfig import set_max_message_bytes

from streams.bootstrap import Container
from streams.control.privacy.service import PrivacyService
from streams.ledger import UnknownRequestError
from streams.ops.deadletters import DeadLetters

pytestmark = pytest.mark.integration
INSTRUCTIONS = "privacy.controller.ores.v1"
HERE = Path(__file__).resolve().parent


def _letter_from(container: Container, logical: str) -> dict[str, Any] | None:
    source = container.topics.name(logical)
    for _, record in decoded(container, "contact.deadletter.v1"):
        if record["source_topic"] == source:
            return record
    return None


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


def test_a_request_that_meets_a_bug_is_parked_not_skipped_and_a_replay_takes_it_in(
    container: Container, privacy: PrivacyService, tmp_path: Path
) -> None:
    log = tmp_path / "privacy-app.log"
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    env = app_env(container, CONTACTFLOW_LOG_LEVEL="INFO", PYTHONPATH=path)
    program = (str(HERE / "buggy_privacy_app.py"),)
    with running_privacy_app(env, log, program) as app:
        publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-bug",
                restriction_request("dsr-bug"))  # fmt: skip
        dead = wait_for(lambda: _letter_from(container, "privacy.requests.v1"),
                        "the dead letter of the request that met the bug", log)  # fmt: skip
        assert dead["reason_code"] == "internal_error"
        assert dead["stage"] == "privacy"
        assert "TypeError at " in dead["reason"]
        assert "buggy_privacy_app.py" in dead["reason"], "where the bug was raised"
        assert dead["original_value"], "the record's bytes are kept for the replay"
        assert not taken_in(privacy, "dsr-bug")

        publish(container, "privacy.requests.v1", "PrivacyRequest", "dsr-next",
                restriction_request("dsr-next"))  # fmt: skip
        wait_for(lambda: taken_in(privacy, "dsr-next"), "the next request to be taken in", log)
        assert app.poll() is None, f"the app stopped on one request\n{log.read_text()}"

        # The bug is gone (it struck once): the replay sends the parked request back.
        report = DeadLetters(container, actor="test").replay("internal_error", datetime.now(UTC))
        assert (report.matched, report.sent) == (1, 1)
        wait_for(lambda: taken_in(privacy, "dsr-bug"), "the replayed request", log)
        assert app.poll() is None
    said = log.read_text()
    errors = [line for line in said.splitlines() if "[ERROR]" in line]
    assert len(errors) == 2, said  # what went wrong, where; and the dead letter's line
    assert "TypeError at tests/integration/privacy/buggy_privacy_app.py" in errors[0]
    assert errors[1].rstrip().endswith("internal_error")
    assert "message withheld" in said  # the traceback, without the exception's message
    assert "buggy_privacy_app.py" in said
    assert PHONE not in said, "the exception's message quoted the phone: never logged"
    assert PHONE not in dead["reason"]
