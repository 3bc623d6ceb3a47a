"""The privacy app's event loop keeps turning while its ledger work runs: the blocking
handler (a ledger transaction, an outbox flush) runs in the app's `LedgerThread`, and an
agent takes its next record only once the last one is done. No broker: a slow handler
stands in for the ledger, and a heartbeat coroutine on the same loop measures the loop."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from sqlalchemy.exc import OperationalError

from schemas.errors import MalformedPayload
from schemas.topic_names import PRIVACY_REQUESTS
from streams.control.app import _this_round, consume_inputs
from streams.control.inputs import InputStep, LedgerThread, Outcome, apply_in_thread
from streams.control.instruments import ControlInstruments
from streams.ledger.errors import StaleRequestError
from streams.telemetry import Telemetry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEAT_S = 0.05
# A loop blocked by a 2 s handler would show a 2 s gap; a busy 2-core CI box may delay a
# beat by a few hundred ms, never by the handler's whole duration.
MAX_GAP_S = 0.75


def clock() -> datetime:
    return NOW


@dataclass
class Message:
    """What faust hands an agent as `event.message`."""

    offset: int = 0
    topic: str = "cf.privacy.requests.v1"
    partition: int = 0
    key: bytes | None = None
    headers: Any = field(default_factory=list)


def instruments(telemetry: Telemetry | None = None) -> ControlInstruments:
    return ControlInstruments(telemetry or Telemetry.in_memory(), "contactflow-control")


@dataclass
class Record:
    value_bytes: bytes = b"record"
    offset_no: int = 0

    def topic(self) -> str:
        return "cf.privacy.requests.v1"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_no

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self.value_bytes


@dataclass
class SlowLedger:
    """A handler that blocks its thread like a slow ledger transaction and notes when and
    where each record ran."""

    seconds: float
    errors: list[BaseException] = field(default_factory=list)
    runs: list[tuple[bytes, float, float, int]] = field(default_factory=list)

    def apply(self, value: bytes, now: datetime) -> str:
        started = time.monotonic()
        time.sleep(self.seconds)
        self.runs.append((value, started, time.monotonic(), threading.get_ident()))
        if self.errors:
            raise self.errors.pop(0)
        return f"applied {value.decode()}"

    def dead_letter(self, record: Any, error: Exception, code: str, now: datetime) -> None:
        raise AssertionError(f"nothing here is dead-lettered ({code})")

    def step(self) -> InputStep:
        return InputStep(PRIVACY_REQUESTS, "privacy", self.apply, self.dead_letter)


async def with_heartbeat(work: Awaitable[Any]) -> tuple[Any, list[float]]:
    """`work`'s result and the gaps between beats of a coroutine ticking every 50 ms on the
    same loop meanwhile."""
    beats: list[float] = [time.monotonic()]

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(BEAT_S)
            beats.append(time.monotonic())

    ticking = asyncio.create_task(heartbeat())
    try:
        result = await work
    finally:
        ticking.cancel()
    beats.append(time.monotonic())
    return result, [later - earlier for earlier, later in itertools.pairwise(beats)]


def run(main: Callable[[LedgerThread], Awaitable[Any]]) -> Any:
    thread = LedgerThread()
    try:
        return asyncio.run(main(thread))  # type: ignore[arg-type]
    finally:
        thread.close()


def test_a_two_second_ledger_call_does_not_stop_the_loop() -> None:
    ledger = SlowLedger(seconds=2.0)

    async def main(thread: LedgerThread) -> tuple[Outcome, list[float], int]:
        outcome, gaps = await with_heartbeat(apply_in_thread(ledger.step(), Record(), clock,
                                                             thread))  # fmt: skip
        return outcome, gaps, threading.get_ident()

    outcome, gaps, loop_thread = run(main)
    assert outcome == Outcome(result="applied record")
    ((_, started, ended, ledger_thread),) = ledger.runs
    assert ended - started >= 2.0
    assert ledger_thread != loop_thread, "the handler ran on the event loop's thread"
    assert max(gaps) < MAX_GAP_S, f"the loop stalled {max(gaps):.2f} s"
    assert len(gaps) >= 2.0 / BEAT_S / 3, f"only {len(gaps)} beats in 2 s"


def test_an_agent_takes_its_records_in_order_one_at_a_time_while_the_loop_turns() -> None:
    ledger = SlowLedger(seconds=0.7)
    telemetry = Telemetry.in_memory()

    async def events() -> AsyncIterator[tuple[Any, bytes]]:
        for offset in range(3):
            yield Message(offset), f"r{offset}".encode()

    async def main(thread: LedgerThread) -> list[float]:
        _, gaps = await with_heartbeat(consume_inputs(events(), ledger.step(), clock, thread,
                                                      instruments(telemetry)))  # fmt: skip
        return gaps

    gaps = run(main)
    assert [value for value, *_ in ledger.runs] == [b"r0", b"r1", b"r2"]
    for (_, _, ended, _), (_, started, _, _) in itertools.pairwise(ledger.runs):
        assert started >= ended, "a record started before the one ahead of it was done"
    assert max(gaps) < MAX_GAP_S, f"the loop stalled {max(gaps):.2f} s"
    spans = [s.name for s in telemetry.span_exporter.get_finished_spans()]  # type: ignore[union-attr]
    assert spans == ["process cf.privacy.requests.v1"] * 3


def test_the_records_span_and_context_reach_the_ledger_thread() -> None:
    seen: list[tuple[str, str | None]] = []
    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)

    def apply(value: bytes, now: datetime) -> None:
        span = trace.get_current_span()
        seen.append((getattr(span, "name", ""), marker.get()))

    step = InputStep(PRIVACY_REQUESTS, "privacy", apply, lambda *_: None)

    async def events() -> AsyncIterator[tuple[Any, bytes]]:
        marker.set("set on the loop")
        yield Message(), b"r"

    run(lambda thread: consume_inputs(events(), step, clock, thread, instruments()))
    assert seen == [("process cf.privacy.requests.v1", "set on the loop")]


def test_a_transient_failure_waits_on_the_loop_not_in_it() -> None:
    ledger = SlowLedger(seconds=0.2, errors=[StaleRequestError("request", "dsr-1")])

    async def main(thread: LedgerThread) -> tuple[Outcome, list[float]]:
        work = apply_in_thread(ledger.step(), Record(), clock, thread, first_pause_s=0.5)
        return await with_heartbeat(work)  # type: ignore[no-any-return]

    outcome, gaps = run(main)
    assert outcome == Outcome(result="applied record")
    assert len(ledger.runs) == 2
    assert max(gaps) < MAX_GAP_S


@dataclass
class ParkingLedger(SlowLedger):
    """A SlowLedger whose dead letters are noted (and may fail transiently first)."""

    letters: list[tuple[bytes, str, str]] = field(default_factory=list)
    letter_errors: list[BaseException] = field(default_factory=list)

    def dead_letter(self, record: Any, error: Exception, code: str, now: datetime) -> None:
        if self.letter_errors:
            raise self.letter_errors.pop(0)
        self.letters.append((record.value(), code, str(error)))


def test_a_programming_error_parks_the_record_and_the_agent_takes_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Left to faust, the agent restarted and the record was lost (neither applied nor
    parked). Parked, it keeps its bytes for a replay once the bug is fixed."""
    gone = OperationalError("INSERT", {}, Exception("gone"))
    ledger = ParkingLedger(seconds=0.0, errors=[KeyError("+32 471 55 66 77")],
                           letter_errors=[gone])  # fmt: skip
    telemetry = Telemetry.in_memory()

    async def events() -> AsyncIterator[tuple[Any, bytes]]:
        yield Message(0), b"r0"
        yield Message(1), b"r1"

    run(lambda thread: consume_inputs(events(), ledger.step(), clock, thread,
                                      instruments(telemetry), first_pause_s=0))  # fmt: skip

    assert [value for value, *_ in ledger.runs] == [b"r0", b"r1"]
    ((value, code, reason),) = ledger.letters  # parked once, after a transient failure
    assert (value, code) == (b"r0", "internal_error")
    assert reason.startswith("KeyError at tests/unit/control/test_control_loop.py:")
    assert "in apply" in reason
    assert "+32" not in reason
    said = caplog.text
    assert "internal_error" in said
    assert "message withheld" in said
    assert "+32" not in said
    assert "internal_error" in telemetry.exported_text()


def test_a_record_that_cannot_even_be_parked_leaves_the_agent() -> None:
    ledger = ParkingLedger(seconds=0.0, errors=[KeyError("request_id")],
                           letter_errors=[TypeError("a bug in the dead-letter path")])  # fmt: skip

    async def events() -> AsyncIterator[tuple[Any, bytes]]:
        yield Message(0), b"r0"
        yield Message(1), b"r1"

    with pytest.raises(TypeError):
        run(lambda thread: consume_inputs(events(), ledger.step(), clock, thread, instruments()))
    assert len(ledger.runs) == 1, "the record after the error was taken"


def test_a_timer_round_runs_in_the_thread_and_an_outage_skips_only_that_round() -> None:
    calls: list[int] = []

    def sweep(now: datetime) -> str:
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        if len(calls) == 3:
            raise TypeError("a bug")
        return "swept"

    async def main(thread: LedgerThread) -> list[Any]:
        results = [await _this_round(thread, "expire-recordings", sweep, NOW) for _ in range(4)]
        return [*results, threading.get_ident()]

    skipped, swept, bug_skipped, swept_again, loop_thread = run(main)
    assert (skipped, swept) == (None, "swept")
    # a bug skips its round too (an ERROR line): left to faust, the timer never ran again
    assert (bug_skipped, swept_again) == (None, "swept")
    assert loop_thread not in calls


def test_an_agent_dead_letters_a_bad_record_counts_it_and_goes_on() -> None:
    letters: list[tuple[int, str]] = []

    def apply(value: bytes, now: datetime) -> str:
        if value == b"bad":
            raise MalformedPayload("payload is 3 bytes, shorter than the 10-byte header")
        return "applied"

    def dead_letter(record: Any, error: Exception, code: str, now: datetime) -> None:
        letters.append((record.offset(), code))

    step = InputStep(PRIVACY_REQUESTS, "privacy", apply, dead_letter)
    telemetry = Telemetry.in_memory()

    async def events() -> AsyncIterator[tuple[Any, bytes]]:
        yield Message(0), b"bad"
        yield Message(1), b"good"

    run(lambda thread: consume_inputs(events(), step, clock, thread, instruments(telemetry)))
    assert letters == [(0, "MalformedPayload")]
    text = telemetry.exported_text()
    assert "reason=MalformedPayload" in text


def test_the_ledger_thread_says_when_its_call_has_run_too_long() -> None:
    """What /healthz of the privacy app reads: a call that never returns (the loop, in
    which the heartbeat beats, keeps turning meanwhile)."""
    now = [100.0]
    release = threading.Event()
    thread = LedgerThread(stale_after_s=300.0, clock=lambda: now[0])

    def hangs() -> str:
        release.wait(10)
        return "done"

    async def main() -> list[str | None]:
        said = [thread.check()]
        call = asyncio.ensure_future(thread.run(hangs))
        while thread.check() is None and now[0] < 1000:
            await asyncio.sleep(0.01)
            said.append(thread.check())  # running, not for long: healthy
            now[0] += 301.0
        said.append(thread.check())
        release.set()
        assert await call == "done"
        said.append(thread.check())
        return said

    try:
        said = asyncio.run(main())
    finally:
        thread.close()
    assert said[0] is None
    assert said[-1] is None, "healthy again once the call returned"
    assert said[-2] is not None
    assert said[-2].startswith("ledger call hangs running for ")
    assert said[-2].endswith("s (limit 300 s)")
