"""The control plane's one input step (`streams.control.inputs`): an unusable record is
dead-lettered with its reason code and bytes, a transient failure is tried again, and a
programming error propagates instead of being dead-lettered as bad input."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from processors.identity import IdentifierKind, InvalidIdentifier
from processors.privacy import PrivacyRequestError, RequestRefused, TransitionError
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.topic_names import (
    PRIVACY_ACKS,
    PRIVACY_INSTRUCTIONS,
    PRIVACY_REQUESTS,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
)
from streams.control.inputs import (
    INPUT_ERRORS,
    InputStep,
    InternalError,
    Outcome,
    apply_now,
    attempt,
    is_transient,
    privacy_steps,
    retention_steps,
)
from streams.kafka.outbox import Delivery, OutboxRefused
from streams.ledger.errors import (
    InvalidIdentifierError,
    InvalidRetentionValueError,
    LedgerError,
    StaleRequestError,
    UnknownCommandError,
    UnknownRequestError,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeRecord:
    """A consumed record, as confluent-kafka's Message shows it."""

    value_bytes: bytes | None = b"\xc3\x01 a record"
    topic_name: str = "cf.privacy.requests.v1"
    partition_no: int = 2
    offset_no: int = 41
    key_bytes: bytes | None = b"dsr-1"

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_no

    def offset(self) -> int:
        return self.offset_no

    def key(self) -> bytes | None:
        return self.key_bytes

    def value(self) -> bytes | None:
        return self.value_bytes


@dataclass
class Handler:
    """Raises the given errors in turn, then returns `result`; notes what it was given."""

    errors: list[BaseException] = field(default_factory=list)
    result: object = "applied"
    calls: list[tuple[bytes, datetime]] = field(default_factory=list)
    letters: list[tuple[Any, Exception, str, datetime]] = field(default_factory=list)
    letter_errors: list[BaseException] = field(default_factory=list)

    def apply(self, value: bytes, now: datetime) -> object:
        self.calls.append((value, now))
        if self.errors:
            raise self.errors.pop(0)
        return self.result

    def dead_letter(self, record: Any, error: Exception, code: str, now: datetime) -> None:
        if self.letter_errors:
            raise self.letter_errors.pop(0)
        self.letters.append((record, error, code, now))

    def step(self) -> InputStep:
        return InputStep(PRIVACY_REQUESTS, "privacy", self.apply, self.dead_letter)


def refused(*names: str, undelivered: int = 0) -> OutboxRefused:
    return OutboxRefused("Kafka did not take them", Delivery(undelivered=undelivered,
                                                             refusals=list(names)))  # fmt: skip


BAD_INPUT = [
    MalformedPayload("payload is 3 bytes, shorter than the 10-byte header"),
    UnknownFingerprint("no contract version has fingerprint 00"),
    SchemaMismatch("cannot resolve data written with PrivacyRequest v1"),
    RequestRefused("purpose", "not a purpose of the policy for this request"),
    PrivacyRequestError("purpose is required for objection and only for them"),
    TransitionError("request dsr-1: cannot instruct in state executing"),
    InvalidIdentifier(IdentifierKind.PHONE, "not a phone number"),
    InvalidIdentifierError("pseudonym must be lowercase hex"),
    InvalidRetentionValueError("retain_until must not be before ended_at"),
    UnknownRequestError("dsr-unknown"),
    UnknownCommandError("cmd-unknown"),
]

PROGRAMMING_ERRORS = [
    KeyError("request_id"),
    AttributeError("'NoneType' object has no attribute 'state'"),
    TypeError("unsupported operand"),
    ValueError("not enough values to unpack"),
    LookupError("somewhere"),
    ZeroDivisionError("division by zero"),
    LedgerError("submit stores a new request: use apply for a transition"),
    IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
]


@pytest.mark.parametrize("error", BAD_INPUT, ids=lambda e: type(e).__name__)
def test_an_unusable_record_is_dead_lettered_with_its_reason_and_bytes(
    error: Exception,
) -> None:
    handler, record = Handler(errors=[error]), FakeRecord()
    outcome = attempt(handler.step(), record, NOW)
    assert outcome == Outcome(dead_letter_code=type(error).__name__)
    assert outcome.dead_lettered
    assert handler.letters == [(record, error, type(error).__name__, NOW)]
    assert handler.calls == [(record.value_bytes, NOW)]


def test_outputs_kafka_refuses_for_what_they_are_dead_letter_the_input_with_its_code() -> None:
    error = refused("MSG_SIZE_TOO_LARGE")
    handler = Handler(errors=[error])
    outcome = attempt(handler.step(), FakeRecord(), NOW)
    assert outcome.dead_letter_code == "MSG_SIZE_TOO_LARGE"
    assert handler.letters[0][1:3] == (error, "MSG_SIZE_TOO_LARGE")


@pytest.mark.parametrize("error", PROGRAMMING_ERRORS, ids=lambda e: type(e).__name__)
def test_a_programming_error_propagates_and_nothing_is_dead_lettered(error: Exception) -> None:
    handler = Handler(errors=[error])
    with pytest.raises(type(error)):
        attempt(handler.step(), FakeRecord(), NOW)
    with pytest.raises(type(error)):
        apply_now(Handler(errors=[error]).step(), FakeRecord(), NOW, first_pause_s=0)
    assert handler.letters == []


def test_input_errors_name_no_builtin_exception() -> None:
    builtin = {e for e in vars(builtins).values() if isinstance(e, type)}
    assert not builtin & set(INPUT_ERRORS)
    assert not any(is_transient(e) for e in BAD_INPUT + PROGRAMMING_ERRORS)


TRANSIENT = [
    refused(undelivered=3),  # the broker away: nothing acknowledged in time
    refused("NOT_ENOUGH_REPLICAS"),
    OperationalError("SELECT 1", {}, Exception("connection refused")),
    StaleRequestError("request", "dsr-1"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_transient_failure_is_tried_again_then_the_record_is_taken(error: Exception) -> None:
    assert is_transient(error)
    handler = Handler(errors=[error, error])
    outcome = apply_now(handler.step(), FakeRecord(), NOW, first_pause_s=0)
    assert outcome == Outcome(result="applied")
    assert len(handler.calls) == 3
    assert handler.letters == []


def test_the_catch_up_gives_up_after_its_tries_and_raises_the_failure() -> None:
    error = OperationalError("SELECT 1", {}, Exception("no answer"))
    handler = Handler(errors=[error] * 5)
    with pytest.raises(OperationalError):
        apply_now(handler.step(), FakeRecord(), NOW, tries=3, first_pause_s=0)
    assert len(handler.calls) == 3


def test_a_dead_letter_kafka_does_not_take_is_tried_again() -> None:
    handler = Handler(errors=[RequestRefused("reason", "too long")] * 2,
                      letter_errors=[refused(undelivered=1)])  # fmt: skip
    outcome = apply_now(handler.step(), FakeRecord(), NOW, first_pause_s=0)
    assert outcome.dead_letter_code == "RequestRefused"
    assert len(handler.letters) == 1


def test_a_tombstone_is_not_applied() -> None:
    handler = Handler()
    assert attempt(handler.step(), FakeRecord(value_bytes=None), NOW) == Outcome()
    assert handler.calls == []


class StubPrivacy:
    def __init__(self) -> None:
        self.letters: list[tuple[Any, ...]] = []

    def submit_message(self, value: bytes, now: datetime) -> str:
        return "submitted"

    def instruct_message(self, value: bytes, now: datetime) -> str:
        return "instructed"

    def acknowledge_message(self, value: bytes, now: datetime) -> str:
        return "acknowledged"

    def dead_letter(self, message: Any, stage: str, error: Exception, now: datetime, *,
                    code: str | None = None) -> None:  # fmt: skip
        self.letters.append((message, stage, error, now, code))


class StubRetention:
    def __init__(self) -> None:
        self.letters: list[tuple[Any, ...]] = []

    def ingest_recording(self, value: bytes, now: datetime) -> str:
        return "registered"

    def apply_signal(self, value: bytes, now: datetime) -> int:
        raise MalformedPayload("payload does not start with the Avro single-object marker")

    def dead_letter(self, *args: Any) -> None:
        self.letters.append(args)


def test_each_privacy_input_topic_goes_to_its_service_call_and_dead_letters_there() -> None:
    service = StubPrivacy()
    steps = privacy_steps(service)  # type: ignore[arg-type]
    assert {k: attempt(s, FakeRecord(), NOW).result for k, s in steps.items()} == {
        PRIVACY_REQUESTS: "submitted", PRIVACY_INSTRUCTIONS: "instructed",
        PRIVACY_ACKS: "acknowledged",
    }  # fmt: skip
    record, error = FakeRecord(), RequestRefused("request_id", "empty")
    steps[PRIVACY_REQUESTS].dead_letter(record, error, "RequestRefused", NOW)
    assert service.letters == [(record, "privacy", error, NOW, "RequestRefused")]


def test_retention_input_topics_dead_letter_a_bad_record_instead_of_skipping_it() -> None:
    service = StubRetention()
    steps = retention_steps(service)  # type: ignore[arg-type]
    assert attempt(steps[RECORDINGS_STANDARD], FakeRecord(), NOW).result == "registered"
    record = FakeRecord(value_bytes=b"not avro", topic_name="cf.retention.signals.v1",
                        partition_no=0, offset_no=7, key_bytes=b"s-1")  # fmt: skip
    outcome = attempt(steps[RETENTION_SIGNALS], record, NOW)
    assert outcome.dead_letter_code == "MalformedPayload"
    ((topic, partition, offset, key, value, stage, code, reason, now),) = service.letters
    assert (topic, partition, offset, key, value) == ("cf.retention.signals.v1", 0, 7, b"s-1",
                                                      b"not avro")  # fmt: skip
    assert (stage, code, now) == ("hold", "MalformedPayload", NOW)
    assert "single-object marker" in reason


def _raises_in_a_library() -> None:
    from sqlalchemy import make_url

    make_url(42)  # type: ignore[arg-type]  # SQLAlchemy refuses it, deep in its own code


def test_an_internal_error_names_our_innermost_frame_and_never_the_message() -> None:
    try:
        _raises_in_a_library()
    except Exception as exc:  # noqa: BLE001 - the error under test
        error = exc
    failure = InternalError(KeyError("+32 471 55 66 77"))  # no traceback: unknown place
    assert str(failure).startswith("KeyError at an unknown place: a contactflow error")
    assert "+32" not in str(failure)
    failure = InternalError(error)
    assert str(failure).startswith("ArgumentError at tests/unit/control/test_control_inputs.py:")
    assert "in _raises_in_a_library" in str(failure)
    assert "site-packages" in failure.stack  # the whole traceback is kept for the log
