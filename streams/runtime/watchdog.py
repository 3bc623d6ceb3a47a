"""A watchdog for calls into the Kafka client that may not return when they should.

librdkafka does not always honour the timeout of a transactional call when the broker goes
away mid-transaction (seen: `send_offsets_to_transaction` blocked for minutes past its
30 s; librdkafka #5456, #5511). A blocked C call cannot be interrupted from Python, and a
signal handler does not run while the main thread is inside one, so the worker neither
progresses nor stops.

The worker wraps each such call in `guard(name, timeout_s)`, in whichever thread makes it
(the router commits in a thread of its own). A daemon thread checks the
running calls once a second; a call past its timeout plus `grace_s` is reported to
`on_stuck`, which restarts the worker (see `restart_in_place`): nothing is lost, since
the open transaction was not committed and the broker aborts it when the new incarnation
fences the old one. The thread also watches for SIGTERM/SIGINT (through the interpreter's
wakeup fd, which the C-level handler writes even while the main thread is blocked): a
stop requested while a call is blocked ends the process after `grace_s`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

Stuck = Callable[[str, float], None]


def restart_in_place(what: str) -> Stuck:
    """`on_stuck` for a CLI worker: one line, then exec the same command again (same pid,
    so a supervisor sees no exit; the blocked client dies with the old process image)."""

    def restart(call: str, blocked_s: float) -> None:
        log.error(
            "%s: Kafka call %s blocked for %.0f s past its timeout (broker lost?); "
            "restarting in place, nothing committed is lost",
            what,
            call,
            blocked_s,
        )
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606

    return restart


class CallWatchdog:
    def __init__(self, on_stuck: Stuck, *, grace_s: float = 5.0, interval_s: float = 1.0):
        self._on_stuck = on_stuck
        self._grace_s = grace_s
        self._interval_s = interval_s
        # per thread guarding a call: (name, deadline on the monotonic clock)
        self._calls: dict[int, tuple[str, float]] = {}
        self._stop_requested_at: float | None = None
        self._closed = threading.Event()
        self._wakeup: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._watch, name="kafka-watchdog", daemon=True)

    def start(self) -> CallWatchdog:
        """Start watching; from the main thread, it also watches for stop signals."""
        if threading.current_thread() is threading.main_thread():
            read, write = os.pipe()
            os.set_blocking(write, False)
            signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            self._wakeup = (read, write)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        if self._wakeup is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(-1)
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None

    @contextlib.contextmanager
    def guard(self, name: str, timeout_s: float) -> Iterator[None]:
        """Watch the call made inside: it must return within `timeout_s` (+ grace). Each
        thread's call is watched apart (the router commits in a thread of its own)."""
        thread = threading.get_ident()
        self._calls[thread] = (name, time.monotonic() + timeout_s)
        try:
            yield
        finally:
            self._calls.pop(thread, None)

    def _watch(self) -> None:
        while not self._closed.is_set():
            if self._wakeup is not None:
                ready, _, _ = select.select([self._wakeup[0]], [], [], self._interval_s)
                if ready and _stop_signal(os.read(self._wakeup[0], 64)):
                    self._stop_requested_at = self._stop_requested_at or time.monotonic()
            else:
                self._closed.wait(self._interval_s)
            self._check(time.monotonic())

    def _check(self, now: float) -> None:
        for thread, (name, deadline) in list(self._calls.items()):
            asked = self._stop_requested_at
            if asked is not None and now - asked > self._grace_s:
                log.error(
                    "stop requested %.0f s ago, but Kafka call %s is blocked; exiting now "
                    "(the open transaction is aborted by the broker)",
                    now - asked,
                    name,
                )
                logging.shutdown()
                os._exit(128 + signal.SIGTERM)
            if now > deadline + self._grace_s:
                if self._calls.get(thread) == (name, deadline):  # not a newer call's guard
                    del self._calls[thread]
                self._on_stuck(name, now - deadline)


def _stop_signal(received: bytes) -> bool:
    return any(b in (signal.SIGTERM, signal.SIGINT) for b in received)
