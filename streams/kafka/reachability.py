"""Is the broker there? A quick, quiet probe, and a patient wait for workers.

librdkafka retries a refused connection for as long as a call's timeout lasts and logs
each attempt; a person or a script needs one answer within seconds, and a worker started
before the broker needs to wait for it with one line now and then.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.errors import ContactflowError
from streams.settings import Settings

log = logging.getLogger(__name__)


def broker_answers(settings: Settings, timeout_s: float) -> str | None:
    """None when the broker answers a metadata request within `timeout_s`, else why not.

    Every bootstrap address refusing a TCP connection is an answer at once: librdkafka
    would retry it until the timeout."""
    if _all_refuse(settings.bootstrap, min(timeout_s, 2.0)):
        return "connection refused"
    config = {
        key: value for key, value in settings.kafka_client_config().items() if key != "logger"
    }
    config["log_level"] = 0  # the probe's failed attempts are the answer, not log lines
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout_s)
        return None
    except KafkaException as exc:
        return str(exc.args[0].name())


class BrokerUnreachable(ContactflowError):
    """The broker did not answer within CONTACTFLOW_CONNECT_TIMEOUT_S."""


def require_broker(settings: Settings) -> None:
    """Raise `BrokerUnreachable` (one line: where, why, what to do) unless the broker
    answers within `settings.connect_timeout_s`."""
    problem = broker_answers(settings, settings.connect_timeout_s)
    if problem is not None:
        raise BrokerUnreachable(
            f"cannot reach Kafka at {settings.bootstrap} within "
            f"{settings.connect_timeout_s:g} s ({problem}); start it with "
            "`contactflow broker up`, or set CONTACTFLOW_BOOTSTRAP_SERVERS"
        )


def _all_refuse(bootstrap: str, timeout_s: float) -> bool:
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout_s):
                return False
        except ConnectionRefusedError:
            continue
        except (OSError, ValueError):  # unresolved, unreachable, timed out: let Kafka say
            return False
    return True


def wait_for_broker(
    settings: Settings,
    what: str,
    *,
    stop: threading.Event | None = None,
    report_every_s: float = 30.0,
    probe_timeout_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Block until the broker answers (True) or `stop` is set (False); one warning line
    when the wait begins and one every `report_every_s` after, one when it ends."""
    started = time.monotonic()
    reported = None
    while stop is None or not stop.is_set():
        problem = broker_answers(settings, probe_timeout_s)
        if problem is None:
            if reported is not None:
                log.warning("%s: broker %s reachable after %.0f s; starting", what,
                            settings.bootstrap, time.monotonic() - started)  # fmt: skip
            return True
        now = time.monotonic()
        if reported is None or now - reported >= report_every_s:
            log.warning(
                "%s: waiting for the broker at %s (%s, %.0f s so far); start it with "
                "`contactflow broker up` or set CONTACTFLOW_BOOTSTRAP_SERVERS",
                what, settings.bootstrap, problem, now - started,
            )  # fmt: skip
            reported = now
        sleep(1.0)
    return False


class OutageMonitor:
    """Says, in its own words, when the broker goes away and comes back: for a worker whose
    client (aiokafka) logs every retry. One line when the outage is noticed, one every
    `report_every_s` while it lasts, one when the broker answers again."""

    def __init__(
        self,
        settings: Settings,
        what: str,
        *,
        interval_s: float = 5.0,
        report_every_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._what = what
        self._interval_s = interval_s
        self._report_every_s = report_every_s
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="outage-monitor", daemon=True)
        self.down_since: float | None = None

    def start(self) -> OutageMonitor:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        reported = 0.0
        while not self._closed.wait(self._interval_s):
            problem = broker_answers(self._settings, min(self._interval_s, 3.0))
            now = time.monotonic()
            if problem is None:
                if self.down_since is not None:
                    log.warning("%s: broker %s back after %.0f s", self._what,
                                self._settings.bootstrap, now - self.down_since)  # fmt: skip
                    self.down_since = None
                continue
            if self.down_since is None:
                self.down_since = now
                reported = 0.0
            if now - reported >= self._report_every_s:
                log.warning(
                    "%s: broker %s unreachable (%s, %.0f s so far); waiting for it",
                    self._what, self._settings.bootstrap, problem, now - self.down_since,
                )  # fmt: skip
                reported = now
