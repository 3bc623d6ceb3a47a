"""The downstream SDK's values without a broker: answers, the reference answer, registry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.bootstrap import bootstrap
from streams.sdk.downstream.client import (
    Answer,
    DownstreamConsumer,
    DownstreamError,
    ReceivedCommand,
    answer_failed,
)
from streams.sdk.downstream.example import example_answer
from streams.settings import Settings

ISSUED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
COMMAND = ReceivedCommand(
    command_id="cmd-1", request_id="req-1", command="erase", consumer="recording_store",
    subject_pseudonym="sp-" + "a" * 32, controller="ORES", purpose=None, issued_at=ISSUED,
    answer_by=ISSUED + timedelta(days=2), attempt=1, held_recordings=(), rectified_kinds=(),
    topic="privacy.erasure.v1", partition=0, offset=0,
)  # fmt: skip


@pytest.mark.parametrize("outcome", ["done", "not_found", "retained_under_hold"])
def test_final_outcomes_need_no_reason(outcome: str) -> None:
    assert Answer(outcome).reason is None
    assert Answer(outcome, "why").reason == "why"


def test_failed_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="must give its reason"):
        Answer("failed")
    assert Answer("failed", "crm timeout").outcome == "failed"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_reason_is_non_blank_and_at_most_500_characters(reason: str) -> None:
    with pytest.raises(ValueError, match="non-blank string of 1-500"):
        Answer("failed", reason)


@pytest.mark.parametrize("outcome", ["ok", "DONE", "erased", ""])
def test_unknown_outcomes_are_refused_without_quoting_them(outcome: str) -> None:
    with pytest.raises(ValueError, match="outcome must be one of") as caught:
        Answer(outcome)
    assert outcome == "" or outcome not in str(caught.value)


def test_the_default_error_policy_gives_the_type_name_never_the_message() -> None:
    answer = answer_failed(LookupError(f"no row for {COMMAND.subject_pseudonym}"), COMMAND)
    assert answer == Answer("failed", "LookupError")


def test_example_answer_keeps_held_recordings_on_erase() -> None:
    held = replace(COMMAND, held_recordings=("rec-1",))
    assert example_answer(held) == Answer("retained_under_hold", "kept under legal hold")


@pytest.mark.parametrize(
    "command", ["erase", "restrict", "lift_restriction", "rectify", "suppress", "stop_purpose"]
)
def test_example_answer_is_done_otherwise(command: str) -> None:
    assert example_answer(replace(COMMAND, command=command)) == Answer("done")
    if command != "erase":  # holds matter to erasure only
        held = replace(COMMAND, command=command, held_recordings=("rec-1",))
        assert example_answer(held) == Answer("done")


def test_an_unregistered_consumer_is_refused_before_connecting(tmp_path: Path) -> None:
    root = bootstrap(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(DownstreamError, match=r"'billing' is not registered.*registered: "):
        DownstreamConsumer(root, "billing")


def test_command_reader_gives_reason_codes_for_what_it_cannot_read() -> None:
    from schemas.catalog import SchemaCatalog
    from schemas.serde import AvroSerde
    from streams.sdk.downstream.wire import CommandReader

    schemas = SchemaCatalog.load()
    serde = AvroSerde(schemas)
    ack = {"command_id": "c", "request_id": "r", "consumer": "crm", "outcome": "done",
           "reason": None, "acknowledged_at": ISSUED}  # fmt: skip
    record = {"command_id": "c", "request_id": "r", "command": "erase", "consumer": "crm",
              "subject_pseudonym": "sp-" + "b" * 32, "controller": "COMNEXIO", "purpose": None,
              "issued_at": ISSUED, "answer_by": ISSUED, "attempt": 3,
              "held_recordings": ["rec-1"], "rectified_kinds": []}  # fmt: skip
    reader = CommandReader(schemas)
    assert reader.read(None) == (None, "tombstone")
    assert reader.read(b"plain text") == (None, "malformed")
    assert reader.read(b"\xc3\x01" + bytes(8)) == (None, "unknown_writer")
    assert reader.read(serde.serialize(ack, schemas.latest("Acknowledgement"))) == (
        None, "not_a_command"
    )  # fmt: skip
    assert reader.read(serde.serialize(record, schemas.latest("DownstreamCommand"))) == (
        record, "ok"
    )  # fmt: skip
