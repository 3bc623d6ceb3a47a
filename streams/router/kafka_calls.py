"""Kafka calls the router makes until they are done: retried while librdkafka says they may
be, through a broker outage, with one line per `OUTAGE_REPORT_S` instead of one per retry.

A call that may block past its own timeout runs under the watchdog's guard (the CLI's
watchdog restarts the router in place). A stop asked for meanwhile gives up, and so does a
call's own `give_up_s`, as `GaveUp`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException

from streams.runtime.health import Heartbeat
from streams.runtime.watchdog import CallWatchdog

log = logging.getLogger(__name__)
OUTAGE_REPORT_S = 30.0  # one line per this while the broker is away
# Errors that mean "the broker is away", not "this call is wrong": wait and call again.
OUTAGE_ERRORS = frozenset(
    {KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
     KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
     KafkaError.COORDINATOR_LOAD_IN_PROGRESS}
)  # fmt: skip


class GaveUp(Exception):
    """A Kafka call still failing, as retriable, after its give-up time."""

    def __init__(self, name: str, waited_s: float, error: KafkaError) -> None:
        super().__init__(f"{name} not done in {waited_s:.0f} s ({error.name()})")
        self.error = error


class KafkaCalls:
    """Runs the router's blocking Kafka calls until done (`until_done`)."""

    def __init__(
        self, stop: threading.Event, heartbeat: Heartbeat, watchdog: CallWatchdog | None
    ) -> None:
        self._stop, self._heartbeat, self._watchdog = stop, heartbeat, watchdog
        self.monotonic: Callable[[], float] = time.monotonic  # tests move it

    def guard(self, name: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """The watchdog's guard over a call that should end within `timeout_s`."""
        if self._watchdog is None:
            return contextlib.nullcontext()
        return self._watchdog.guard(name, timeout_s)

    def until_done(
        self,
        name: str,
        timeout_s: float,
        call: Callable[[], object],
        *,
        give_up_s: float | None = None,
    ) -> None:
        """Repeat a Kafka call while librdkafka says it is retriable (a timed-out commit goes
        on in the background and must be called again to finish). While the broker is away
        this waits for it, with one line every `OUTAGE_REPORT_S`, not one per retry; a stop
        asked for meanwhile gives up (the open transaction is aborted by the broker), and so
        does `give_up_s` of retries (`GaveUp`)."""
        monotonic = self.monotonic
        started = reported = monotonic()
        while True:
            try:
                with self.guard(name, timeout_s):
                    call()
                if reported > started:
                    log.warning("broker back: %s done after %.0f s", name,
                                monotonic() - started)  # fmt: skip
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                retriable = error.retriable() or error.code() in OUTAGE_ERRORS
                if not retriable or self._stop.is_set():
                    raise
                now = monotonic()
                if give_up_s is not None and now - started >= give_up_s:
                    raise GaveUp(name, now - started, error) from None
                if now - reported >= OUTAGE_REPORT_S or reported == started:
                    log.warning("broker unreachable? %s not done for %.0f s (%s); retrying",
                                name, now - started, error.name())  # fmt: skip
                    reported = now + 1e-6
                self._heartbeat.sleep(0.5)  # waiting for the broker is the loop's work
