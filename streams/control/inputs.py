"""One input step for the control plane: what each input topic's records go through.

The faust app (`contactflow run privacy`) and the catch-ups (`dsr process`, the retention
catch-up of the demo and tests) hand every record of an input topic to its handler the
same way, with one rule for what may go wrong:

- an unusable input (`INPUT_ERRORS`: bytes that are not a record of the topic's contract,
  a value or a reference the ledger and the processors refuse for what it is), and one
  whose messages Kafka refuses for what they are (`OutboxRefused.about_the_records`), is
  dead-lettered with its reason code and its original bytes, and the next record is taken;
- a transient failure (`is_transient`: the broker or the database away, a ledger row
  another worker changed first) changed nothing (the ledger transaction rolled back), so
  the same record is tried again after a pause;
- anything else is a programming error (a KeyError, TypeError, a plain ValueError of our
  own code...), never taken for the record's fault. In the running app
  (`apply_in_thread`) the record is parked on the dead-letter topic as `internal_error`,
  with its bytes, one ERROR line and the traceback without the exception's message (it
  may quote data), so nothing is lost and the next record is taken: `deadletters replay
  --reason internal_error` sends it back once the bug is fixed. (Left to faust, the agent
  restarted and the record was skipped.) The catch-ups (`apply_now`) raise it, for the
  command to report.

Handlers make blocking ledger transactions and outbox flushes: `LedgerThread` runs them
off the faust event loop, one at a time, as they ran on it before.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, ParamSpec, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from processors.identity import InvalidIdentifier
from processors.privacy import PrivacyRequestError
from schemas.errors import SerdeError
from schemas.topic_names import (
    PRIVACY_ACKS,
    PRIVACY_INSTRUCTIONS,
    PRIVACY_REQUESTS,
    RECORDINGS_STANDARD,
    RETENTION_SIGNALS,
)
from streams.kafka.outbox import OutboxRefused
from streams.ledger.errors import (
    InvalidIdentifierError,
    InvalidRetentionValueError,
    StaleRequestError,
    UnknownCommandError,
    UnknownRequestError,
)

if TYPE_CHECKING:
    from streams.control.privacy.service import PrivacyService
    from streams.control.retention.service import RetentionService

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

INPUT_ERRORS: tuple[type[Exception], ...] = (
    SerdeError,  # not a record of the topic's contract, or its values fit no output record
    PrivacyRequestError,  # a request value or transition refused (RequestRefused too)
    InvalidIdentifier,  # an identifier of a request that cannot be normalised
    InvalidIdentifierError,  # a recording's subject pseudonym that is not one
    InvalidRetentionValueError,  # a recording's or a hold's field outside its values
    UnknownRequestError,  # an instruction for a request the ledger never took in
    UnknownCommandError,  # an answer to a command never issued
)
"""What a handler raises for what its record is (trying it again would fail the same way).
No builtin (KeyError, ValueError...) and no bare `LedgerError` (misuse of the ledger) is
here: those are our bugs, and they propagate."""

INTERNAL_ERROR: Final = "internal_error"  # the reason code of a record a bug stopped
_RETRY_REPORT_S = 30.0  # one line per input per this long while it is retried
_RETRY_PAUSE_MAX_S = 30.0


class InternalError(Exception):
    """A programming error met while applying a record: where it was raised and its
    traceback, never the original exception's message (it may quote the record's data)."""

    def __init__(self, error: BaseException) -> None:
        self.error_type = type(error).__name__
        self.stack = "".join(traceback.format_tb(error.__traceback__)).rstrip()
        super().__init__(
            f"{self.error_type} at {_raised_at(error)}: a contactflow error, not the "
            "record's; replay it once fixed"
        )


_SOURCE_ROOT: Final = str(Path(__file__).resolve().parents[2]) + os.sep


def _raised_at(error: BaseException) -> str:
    """The innermost frame of contactflow's own code that `error` went through."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [
        frame for frame in frames
        if frame.filename.startswith(_SOURCE_ROOT) and "site-packages" not in frame.filename
    ] or frames  # fmt: skip
    if not ours:
        return "an unknown place"
    last = ours[-1]
    return f"{last.filename.removeprefix(_SOURCE_ROOT)}:{last.lineno} in {last.name}"


class InputRecord(Protocol):
    """A consumed record, as confluent-kafka's `Message` shows it (the faust app wraps its
    messages to look the same)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class InputStep:
    """One input topic: the handler of a record's value, and where an unusable one goes.

    `stage` names the step in dead letters and logs; `dead_letter(record, error, code,
    now)` parks the record with its bytes and reason."""

    logical: str
    stage: str
    apply: Callable[[bytes, datetime], object]
    dead_letter: Callable[[InputRecord, Exception, str, datetime], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one record: its handler's result, or the reason code it was
    dead-lettered with."""

    result: object = None
    dead_letter_code: str | None = None

    @property
    def dead_lettered(self) -> bool:
        return self.dead_letter_code is not None


def privacy_steps(service: PrivacyService) -> dict[str, InputStep]:
    """The privacy input topics (requests, ORES's instructions, consumers' answers)."""

    def dead_letter(record: InputRecord, error: Exception, code: str, now: datetime) -> None:
        service.dead_letter(record, "privacy", error, now, code=code)

    return {
        logical: InputStep(logical, "privacy", apply, dead_letter)
        for logical, apply in (
            (PRIVACY_REQUESTS, service.submit_message),
            (PRIVACY_INSTRUCTIONS, service.instruct_message),
            (PRIVACY_ACKS, service.acknowledge_message),
        )
    }


def retention_steps(service: RetentionService) -> dict[str, InputStep]:
    """The retention input topics: recordings to register, signals that place holds."""

    def dead_letter_at(stage: str) -> Callable[[InputRecord, Exception, str, datetime], None]:
        def dead_letter(record: InputRecord, error: Exception, code: str, now: datetime) -> None:
            service.dead_letter(record.topic() or "", record.partition() or 0,
                                record.offset() or 0, record.key(), record.value(), stage,
                                code, str(error), now)  # fmt: skip

        return dead_letter

    return {
        RECORDINGS_STANDARD: InputStep(RECORDINGS_STANDARD, "register",
                                       service.ingest_recording, dead_letter_at("register")),
        RETENTION_SIGNALS: InputStep(RETENTION_SIGNALS, "hold", service.apply_signal,
                                     dead_letter_at("hold")),
    }  # fmt: skip


def is_transient(error: BaseException) -> bool:
    """A failure that left the ledger as it was and may well pass on a later try: Kafka
    not taking messages (unless refused for what they are, which `attempt` dead-letters),
    the database away or timed out, a row another worker changed first."""
    if isinstance(error, OutboxRefused | OperationalError | PoolTimeoutError):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)
    return isinstance(error, StaleRequestError)


def attempt(step: InputStep, record: InputRecord, now: datetime) -> Outcome:
    """One try of `record` through `step` (blocking): applied, or dead-lettered when it is
    unusable. A transient failure or a programming error propagates."""
    value = record.value()
    if value is None:  # a tombstone of a compacted topic carries nothing to apply
        return Outcome()
    try:
        return Outcome(result=step.apply(value, now))
    except INPUT_ERRORS as exc:
        error, code = exc, type(exc).__name__
    except OutboxRefused as exc:
        if not exc.about_the_records:
            raise
        error, code = exc, exc.reason_code
    step.dead_letter(record, error, code, now)
    return Outcome(dead_letter_code=code)


def park(step: InputStep, record: InputRecord, failure: InternalError, now: datetime) -> Outcome:
    """Dead-letter `record` as `internal_error`: a bug stopped it, its bytes are kept."""
    step.dead_letter(record, failure, INTERNAL_ERROR, now)
    return Outcome(dead_letter_code=INTERNAL_ERROR)


class LedgerThread:
    """The one thread an app's blocking work runs in (ledger transactions, outbox flushes,
    admin calls): the event loop keeps turning (heartbeats, fetches, rebalances) while
    that work stays serial, as it was on the loop. The caller's context (its current span)
    goes with each call.

    The loop's heartbeat cannot see a call that never returns (a database that stopped
    answering mid-statement: the agents wait, the loop turns), so `check` says when the
    running call is older than `stale_after_s`, for /healthz."""

    def __init__(
        self, name: str = "control-ledger", *, stale_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._running: tuple[str, float] | None = None  # the call's name, when it began

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        name = getattr(fn, "__name__", "call")
        if args and isinstance(args[0], InputStep):  # `attempt` or `park` of a record
            name = f"{name} ({args[0].logical})"
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._timed, name, call
        )

    def _timed(self, name: str, call: Callable[[], _T]) -> _T:
        self._running = (name, self._clock())
        try:
            return call()
        finally:
            self._running = None

    def check(self) -> str | None:
        """None, or why the thread looks hung: its call has run past `stale_after_s`."""
        running = self._running
        if running is None:
            return None
        name, began = running
        elapsed = self._clock() - began
        if elapsed <= self._stale_after_s:
            return None
        return f"ledger call {name} running for {elapsed:.0f} s (limit {self._stale_after_s:.0f} s)"

    def close(self) -> None:
        """Wait for the work in hand, then stop the thread."""
        self._executor.shutdown(wait=True)


async def apply_in_thread(
    step: InputStep, record: InputRecord, clock: Callable[[], datetime], thread: LedgerThread,
    *, first_pause_s: float = 1.0,
) -> Outcome:  # fmt: skip
    """`attempt` in `thread` until it is applied or dead-lettered: a transient failure is
    tried again after a pause (doubling to 30 s, one line per 30 s), never skipped (the
    caller takes the next record only after this returns), never a crash of the agent. A
    programming error parks the record (`park`, tried again as well while the broker is
    away); only a failure to park it propagates."""
    retries = _Retries(record, first_pause_s)
    failure: InternalError | None = None
    while True:
        try:
            if failure is None:
                outcome = await thread.run(attempt, step, record, clock())
            else:
                outcome = await thread.run(park, step, record, failure, clock())
        except Exception as exc:
            if is_transient(exc):
                await asyncio.sleep(retries.failed(exc))
                continue
            if failure is not None:
                raise
            failure = InternalError(exc)
            log.error("%s: %s; dead-lettered as %s. Traceback (message withheld):\n%s",
                      retries.where(), failure, INTERNAL_ERROR, failure.stack)  # fmt: skip
            continue
        retries.done()
        return outcome


def apply_now(
    step: InputStep, record: InputRecord, now: datetime, *, tries: int = 3,
    first_pause_s: float = 1.0,
) -> Outcome:  # fmt: skip
    """`attempt` in this thread (the catch-ups): a transient failure is tried again up to
    `tries` times in all, then raised, for the command to report."""
    retries = _Retries(record, first_pause_s)
    while True:
        try:
            outcome = attempt(step, record, now)
        except Exception as exc:
            if not is_transient(exc) or retries.tries + 1 >= tries:
                raise
            time.sleep(retries.failed(exc))
            continue
        retries.done()
        return outcome


class _Retries:
    """The pauses between tries of one record, and the few lines that say so."""

    def __init__(self, record: InputRecord, first_pause_s: float) -> None:
        self._record = record
        self._pause = first_pause_s
        self._said = float("-inf")
        self.tries = 0

    def failed(self, error: BaseException) -> float:
        """Count a transient failure; the pause before the next try."""
        self.tries += 1
        if time.monotonic() - self._said >= _RETRY_REPORT_S:
            self._said = time.monotonic()
            reason = error.reason_code if isinstance(error, OutboxRefused) else None
            log.warning("%s: not taken (%s, try %d); trying again", self.where(),
                        reason or type(error).__name__, self.tries)  # fmt: skip
        pause, self._pause = self._pause, min(self._pause * 2, _RETRY_PAUSE_MAX_S)
        return pause

    def done(self) -> None:
        if self.tries:
            log.warning("%s: taken after %d tries", self.where(), self.tries + 1)

    def where(self) -> str:
        record = self._record
        return f"{record.topic()}[{record.partition()}]@{record.offset()}"
